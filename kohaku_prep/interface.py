"""What the pinned trainer accepts: every option of sdxl_train_network.py and the dataset-TOML keys per
level (data/sd_scripts_interface.json, extracted from sd-scripts v0.10.1). Both emitted TOMLs are
checked against it, because sd-scripts silently ignores unknown training-TOML keys.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

FACTS_FILE = Path(__file__).resolve().parent / "data" / "sd_scripts_interface.json"
# nargs="*" options whose value the trainer also takes as one number from a TOML (train_network.py)
SCALAR_LIST_OPTIONS = {"text_encoder_lr"}
DATASET_LEVELS = {
    "general": "general",
    "dataset": "datasets (dreambooth-style subsets)",
    "subset": "subsets (dreambooth-style: caption files beside images)",
}


@lru_cache(maxsize=1)
def facts() -> dict:
    return json.loads(FACTS_FILE.read_text())


def options() -> dict[str, dict]:
    return {o["dest"]: o for o in facts()["sdxl_train_network_options"]}


def _is(value, kind: str) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return {
        "str": isinstance(value, str),
        "Path": isinstance(value, str),
        "int": is_int,
        "float": isinstance(value, float),
        "int_or_float": is_int,  # a float means "a fraction of the run": the tool always counts steps
        "bool(store_true)": value is True,
    }[kind]


def check_training_config(config: dict) -> list[str]:
    """Problems with a --config_file dict: unknown keys, values in a type the trainer would misuse."""
    known = options()
    problems = []
    for key, value in sorted(config.items()):
        option = known.get(key)
        if option is None:
            problems.append(f"'{key}' is not an option of sdxl_train_network.py (sd-scripts would ignore it)")
            continue
        if option["nargs"] == "*" and not (key in SCALAR_LIST_OPTIONS and isinstance(value, float)):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            expected = "an array of strings"
        else:
            ok = _is(value, option["type"])
            expected = option["type"].replace("bool(store_true)", "true (leave out when off)")
        if not ok:
            problems.append(f"'{key}' = {value!r}: the trainer needs {expected}")
        elif option["choices"] and value not in option["choices"]:
            problems.append(f"'{key}' = {value!r}: not one of {option['choices']}")
    return problems


def _dataset_type_ok(value, kind: str) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    kind = kind.replace(" (required)", "")
    return {
        "int": is_int, "float": isinstance(value, float), "float|int": is_int or isinstance(value, float),
        "bool": isinstance(value, bool), "str": isinstance(value, str), "dict": isinstance(value, dict),
        "list": isinstance(value, list), "int|[int,int]": is_int or (isinstance(value, list) and len(value) == 2),
        "[float,float]": isinstance(value, list) and all(isinstance(v, float) for v in value),
    }[kind]


def check_dataset_config(config: dict) -> list[str]:
    """Problems with a --dataset_config dict, by sd-scripts' validator rules (unknown keys are fatal there)."""
    keys = facts()["dataset_config_keys"]
    problems = []

    def check(table: dict, level: str, where: str) -> None:
        allowed = keys[DATASET_LEVELS[level]]
        for key, value in sorted(table.items()):
            if key in ("datasets", "subsets") and level != "subset":
                continue
            if key not in allowed:
                problems.append(f"{where}: '{key}' is not allowed in a {level} table")
            elif not _dataset_type_ok(value, allowed[key]):
                problems.append(f"{where}: '{key}' = {value!r} must be {allowed[key]}")

    check(config.get("general", {}), "general", "[general]")
    for i, dataset in enumerate(config.get("datasets", [])):
        check(dataset, "dataset", f"datasets[{i}]")
        for j, subset in enumerate(dataset.get("subsets", [])):
            check(subset, "subset", f"datasets[{i}].subsets[{j}]")
            if "image_dir" not in subset:
                problems.append(f"datasets[{i}].subsets[{j}]: image_dir is required")
    return problems
