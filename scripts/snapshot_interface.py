#!/usr/bin/env python
"""Snapshot the interface of sd-scripts' sdxl_train_network.py: its command-line options and the keys
its dataset config (--dataset_config TOML) accepts at each level.

Run with the trainer venv (it imports sd-scripts, so it needs the sd-scripts requirements):

    /work/trainer-venv/bin/python scripts/snapshot_interface.py \
        --sd-scripts third_party/sd-scripts --out kohaku_prep/data/sd_scripts_interface.json

On the pinned checkout this reproduces kohaku_prep/data/sd_scripts_interface.json byte for byte
(tests/integration/test_interface_snapshot.py checks that). What it writes:

    about                       fixed prose (ABOUT below), with the tag and commit filled in
    sd_scripts_tag              `git describe --tags --exact-match HEAD` of the checkout
    sd_scripts_commit           `git rev-parse HEAD` of the checkout
    sdxl_train_network_options  one object per option of sdxl_train_network.setup_parser(), in the
                                parser's order (-h/--help left out):
        flag     the option string ("--name")
        dest     the argparse dest
        type     the name of the argparse type callable ("str", "int", "float", "Path",
                 "int_or_float"); "bool(store_true)" / "bool(store_false)" for flag-only options
        default, choices, nargs   as argparse holds them (choices as a list, or null)
        action   the argparse Action class name
    dataset_config_keys         per level, {key: type} sorted by key, read from the voluptuous schemas
                                that library/config_util.py's ConfigSanitizer builds, with the
                                ConfigSanitizer arguments that train_network.py passes (read from its
                                source; `args.X` there is evaluated as the parser's default for X).
        Type strings: a class is its name ("int", "bool", "dict", ...); Any(a, b) is "a|b"; a list
        schema is "list"; sd-scripts' two-element validator is "[k,k]" and its scalar-or-two-element one
        "k|[k,k]"; a voluptuous Required key gets " (required)" appended.
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

# Not derivable from the source: the prose is ours. {tag} and {commit} are filled in from the checkout.
ABOUT = (
    "Interface facts of kohya-ss/sd-scripts tag {tag} (commit {commit}), extracted from its source: every "
    "command-line option that sdxl_train_network.py accepts, and the keys its dataset config "
    "(--dataset_config TOML) accepts at each level. Types are voluptuous isinstance checks: a key typed float "
    "rejects a TOML integer. Unknown keys in the dataset TOML are fatal; unknown keys in a --config_file "
    "training TOML are silently ignored by sd-scripts."
)

# Our names for the levels of a dataset config, in output order, and the ConfigSanitizer attribute
# holding each level's schema. A [[datasets]] table is checked against the dreambooth-style or the
# fine-tuning-style dataset schema depending on whether its subsets carry metadata_file.
LEVELS = (
    ("general", "general_schema"),
    ("datasets (dreambooth-style subsets)", "db_dataset_schema"),
    ("datasets (fine-tuning-style subsets)", "ft_dataset_schema"),
    ("subsets (dreambooth-style: caption files beside images)", "db_subset_schema"),
    ("subsets (fine-tuning-style: metadata_file)", "ft_subset_schema"),
)

# The trainer module whose source holds the ConfigSanitizer(...) call that sdxl_train_network uses
# (SdxlNetworkTrainer inherits train() from train_network.NetworkTrainer).
SANITIZER_CALLER = "train_network.py"

# The whole file is json.dumps(..., indent=1) with no trailing newline.
JSON_INDENT = 1


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- command-line options ------------------------------------------------------------------------

def _type_name(action: argparse.Action) -> str:
    kind = type(action).__name__
    if kind in ("_StoreTrueAction", "_StoreFalseAction"):
        return "bool(store_%s)" % ("true" if kind == "_StoreTrueAction" else "false")
    if action.type is None:
        if action.nargs == 0:  # store_const, count, ...: no value is read from the command line
            return "none(%s)" % kind
        return "str"  # argparse hands the raw string over
    return getattr(action.type, "__name__", repr(action.type))


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) into the snapshot")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        raise ValueError(f"positional argument {action.dest!r}: the snapshot only describes options")
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings)[0]


def describe_options(parser: argparse.ArgumentParser) -> list[dict]:
    options = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        options.append({
            "flag": _flag(action),
            "dest": action.dest,
            "type": _type_name(action),
            "default": _jsonable(action.default),
            "choices": None if action.choices is None else _jsonable(list(action.choices)),
            "nargs": action.nargs,
            "action": type(action).__name__,
        })
    return options


# --- dataset config keys -------------------------------------------------------------------------

def sanitizer_arguments(sd_scripts: Path, parser: argparse.ArgumentParser) -> tuple:
    """The positional arguments of the ConfigSanitizer(...) call in train_network.py's source."""
    source = (sd_scripts / SANITIZER_CALLER).read_text(encoding="utf-8")
    defaults = {a.dest: a.default for a in parser._actions}

    def evaluate(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args":
            return defaults[node.attr]
        raise ValueError(f"{SANITIZER_CALLER}: cannot evaluate ConfigSanitizer argument {ast.unparse(node)}")

    calls = {
        tuple(evaluate(arg) for arg in node.args)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "ConfigSanitizer"
    }
    if len(calls) != 1:
        raise ValueError(f"{SANITIZER_CALLER}: expected one ConfigSanitizer(...) form, found {sorted(calls)}")
    return calls.pop()


def _key_name(key, voluptuous) -> str:
    if isinstance(key, voluptuous.Marker):
        return key.schema
    return key


def describe_validator(validator, voluptuous) -> str:
    if validator is None:
        return "None"
    if isinstance(validator, type):
        return validator.__name__
    if isinstance(validator, list):
        return "list"
    if isinstance(validator, voluptuous.Any):
        return "|".join(describe_validator(v, voluptuous) for v in validator.validators)
    if isinstance(validator, functools.partial) and len(validator.args) == 1 and not validator.keywords:
        # config_util's private converters, bound to the element class by functools.partial
        element = describe_validator(validator.args[0], voluptuous)
        name = validator.func.__name__
        if name.endswith("scalar_or_twodim"):
            return f"{element}|[{element},{element}]"
        if name.endswith("twodim"):
            return f"[{element},{element}]"
    raise ValueError(f"no type name for the schema validator {validator!r}")


def describe_schema(schema: dict, voluptuous) -> dict:
    keys = {}
    for key, validator in schema.items():
        name = _key_name(key, voluptuous)
        text = describe_validator(validator, voluptuous)
        if isinstance(key, voluptuous.Required):
            text += " (required)"
        keys[name] = text
    return dict(sorted(keys.items()))


# --- the whole snapshot --------------------------------------------------------------------------

def snapshot(sd_scripts: Path) -> dict:
    sd_scripts = sd_scripts.resolve()
    sys.dont_write_bytecode = True  # leave no __pycache__ in the (read-only) checkout
    sys.path.insert(0, str(sd_scripts))
    import sdxl_train_network
    import voluptuous
    from library import config_util

    parser = sdxl_train_network.setup_parser()
    sanitizer = config_util.ConfigSanitizer(*sanitizer_arguments(sd_scripts, parser))
    commit = _git(sd_scripts, "rev-parse", "HEAD")
    tag = _git(sd_scripts, "describe", "--tags", "--exact-match", "HEAD")
    return {
        "about": ABOUT.format(tag=tag, commit=commit),
        "sd_scripts_tag": tag,
        "sd_scripts_commit": commit,
        "sdxl_train_network_options": describe_options(parser),
        "dataset_config_keys": {
            level: describe_schema(getattr(sanitizer, attribute), voluptuous) for level, attribute in LEVELS
        },
    }


def render(facts: dict) -> str:
    return json.dumps(facts, indent=JSON_INDENT)


def main(argv=None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--sd-scripts", type=Path, required=True, help="the sd-scripts checkout")
    cli.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    args = cli.parse_args(argv)
    text = render(snapshot(args.sd_scripts))
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
