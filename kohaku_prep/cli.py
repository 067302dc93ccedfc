"""The `kohaku-prep` command: the only module that talks to the user.

Exit codes: 0 done; 1 a problem with the input or the environment (one `error:` line, or failed preflight
checks); 2 a mistake in the command line itself; 3 an unexpected error (a bug: `--debug` shows the
traceback); 130 interrupted. `train` without --check or --dry-run ends as the trainer ends.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from kohaku_prep.errors import PrepError
from kohaku_prep.preset import find_preset, resolve, shipped_presets

EXIT_PROBLEM, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 130
DEBUG_VARIABLE = "KOHAKU_PREP_DEBUG"


def _echo(text: str) -> None:
    click.echo(text, err=True)


def _interrupted_line(command: str | None) -> str:
    if command == "dataset":
        return "interrupted; run the same command again to resume the build where it stopped"
    return "interrupted; nothing is left half-written: run the same command again"


class _Group(click.Group):
    """Every failure is one line on stderr and an exit code; --debug (or KOHAKU_PREP_DEBUG=1) re-raises."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # no command given: the help, as --help shows it
            click.echo(exc.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path} --help" if exc.ctx else "kohaku-prep --help"
            _echo(f"error: {exc.format_message()} (see {where})")
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            _echo(f"error: {exc.format_message()}")
            sys.exit(exc.exit_code)
        except click.Abort:
            _echo(_interrupted_line(None))
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
        try:
            return super().invoke(ctx)
        except (SystemExit, click.exceptions.Exit, click.ClickException):
            raise
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("", err=True)
            _echo(_interrupted_line(ctx.invoked_subcommand))
            sys.exit(EXIT_INTERRUPTED)
        except PrepError as exc:
            if debug:
                raise
            _echo(f"error: {exc}")
            sys.exit(EXIT_PROBLEM)
        except OSError as exc:  # the disk, permissions, a path that is not what it must be
            if debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _echo(f"error: {where}{exc.strerror or exc}")
            sys.exit(EXIT_PROBLEM)
        except Exception as exc:
            if debug:
                raise
            text = str(exc).splitlines()[0] if str(exc) else ""
            _echo(f"error: unexpected {type(exc).__name__}{': ' + text if text else ''}; this is a bug: "
                  f"rerun with --debug (or {DEBUG_VARIABLE}=1) for the traceback and report it")
            sys.exit(EXIT_BUG)


@click.group(cls=_Group, epilog="Exit codes: 0 done, 1 a problem with the input or environment, 2 a command "
                                "line mistake, 3 a bug, 130 interrupted.")
@click.version_option(package_name="kohaku-prep")
@click.option("--debug", is_flag=True, help=f"Show the traceback of an error (also {DEBUG_VARIABLE}=1).")
def main(debug) -> None:
    """Danbooru2023 metadata to a Kohaku XL Epsilon training run of sd-scripts.

    \b
    1. kohaku-prep dataset --metadata M --images I --out DATASET
    2. kohaku-prep plan --dataset DATASET [--seconds-per-step S]
    3. kohaku-prep train --dataset DATASET --run-dir RUN --model SDXL.safetensors
    """


def _resolve(preset: str, config: str | None, overrides: tuple[str, ...], **paths: str | None):
    flags = [f"{key}={json.dumps(value)}" for key, value in paths.items() if value is not None]
    resolved = resolve(find_preset(preset), Path(config) if config else None, [*flags, *overrides])
    for line in resolved.overrides:
        _echo(line)
    return resolved


_preset_option = click.option("--preset", default="epsilon", show_default=True,
                              help="A shipped preset's name or a preset file (a file that exists wins).")
_config_option = click.option("--config", type=click.Path(dir_okay=False),
                              help="Your own TOML file, layered over the preset.")
_dataset_option = click.option("--dataset", "dataset_dir", metavar="DIR",
                               help="The dataset folder `kohaku-prep dataset` built (run.dataset).")
OVERRIDES_HELP = "OVERRIDES are key=value settings over the preset, e.g. selection.seed=7 or schedule.epochs=2."


@main.command()
@_preset_option
@_config_option
@click.option("--metadata", help="Parquet metadata: a file, a folder of shards, or post/tag/posttagrelation.")
@click.option("--images", help="danbooru2023 tar shards, or a folder of <id>.<ext> files.")
@click.option("--out", help="The dataset folder to create.")
@click.option("--force", is_flag=True, help="Replace a dataset this tool built there, or discard its unfinished "
                                            "build of another preset or input (never anything else).")
@click.argument("overrides", nargs=-1)
def dataset(preset, config, metadata, images, out, force, overrides) -> None:
    """Build a captioned dataset and its sd-scripts dataset TOML.

    Needs --metadata, --images and --out (or input.metadata=, input.images=, output.dir=). An interrupted
    build resumes when the same command is run again.

    OVERRIDES are key=value settings over the preset, e.g. selection.seed=7 or selection.pools.0.take=500.
    """
    from kohaku_prep import build, dataset_files
    from kohaku_prep.selection import Stage

    resolved = _resolve(preset, config, overrides, **{
        "input.metadata": metadata, "input.images": images, "output.dir": out})
    p = resolved.preset
    missing = [flag for flag, value in (("--metadata", p.input.metadata), ("--images", p.input.images),
                                        ("--out", p.output.dir)) if not value]
    if missing:
        raise PrepError(f"set {', '.join(missing)} (see kohaku-prep dataset --help)")
    build.check_output(Path(p.output.dir), force)
    plan = build.plan_dataset(p, _echo)
    summary = build.write_dataset(plan, resolved, force, _echo)
    _echo("\n".join(dataset_files.stage_lines([Stage(**s) for s in summary["stages"]])))
    _echo(f"dataset: {summary['images']['written']:,} images with captions in "
          f"{summary['images']['subset_folders']:,} folder(s) under {p.output.dir}")


@main.command("plan")
@_preset_option
@_config_option
@_dataset_option
@click.option("--seconds-per-step", type=click.FloatRange(min=0, min_open=True),
              help="Measured seconds per optimizer step, for an ETA.")
@click.argument("overrides", nargs=-1)
def plan_command(preset, config, dataset_dir, seconds_per_step, overrides) -> None:
    """Print the run before it runs: buckets, batches, steps, warmup, saves, ETA and LoKr size.

    Needs the built dataset: --dataset DIR (or run.dataset=DIR).
    """
    from kohaku_prep import run

    resolved = _resolve(preset, config, overrides, **{"run.dataset": dataset_dir})
    rp = run.make_plan(resolved.preset)
    click.echo(run.plan_text(rp, resolved.preset, seconds_per_step), nl=False)


@main.command()
@_preset_option
@_config_option
@_dataset_option
@click.option("--run-dir", metavar="DIR", help="The run folder to write (run.dir).")
@click.option("--model", metavar="FILE", help="The SDXL base checkpoint, .safetensors (model.pretrained).")
@click.option("--check", is_flag=True, help="Run the preflight checks only.")
@click.option("--dry-run", is_flag=True, help="Write the run folder and print the command; launch nothing.")
@click.option("--resume", metavar="latest|STATE", help="Continue from a saved state of this run.")
@click.option("--force-resume", is_flag=True, help="Resume even though the preset, the dataset's manifest, the "
                                                   "sd-scripts commit or bitsandbytes changed since the run started, "
                                                   "or a single process redraws the epoch's order.")
@click.option("--sd-scripts", "sd_scripts", help="An sd-scripts checkout (default: KOHAKU_SD_SCRIPTS, "
                                                  "then third_party/sd-scripts).")
@click.argument("overrides", nargs=-1)
def train(preset, config, dataset_dir, run_dir, model, check, dry_run, resume, force_resume, sd_scripts,
          overrides) -> None:
    """Preflight, write the run folder, then hand the process to `accelerate launch`.

    Needs --dataset DIR, --run-dir DIR and --model FILE (or run.dataset=, run.dir=, model.pretrained=).
    Exits 1 when a preflight check fails (--check and --dry-run included), launching nothing.
    """
    from kohaku_prep import resume as resume_module
    from kohaku_prep import run

    if force_resume and not resume:
        raise PrepError("--force-resume goes with --resume")
    resolved = _resolve(preset, config, overrides, **{"run.dataset": dataset_dir, "run.dir": run_dir,
                                                       "model.pretrained": model})
    p = resolved.preset
    if not check and not p.run.dir:  # said before the preflight's minutes, not after
        raise PrepError("set run.dir (the run folder: --run-dir DIR or run.dir=DIR)")
    checkout = run.sd_scripts_dir(sd_scripts)
    rp = run.make_plan(p)
    checks = run.run_preflight(p, rp, checkout)
    for c in checks:
        _echo(c.line())
    failed = [c for c in checks if not c.ok]
    verdict = (f"{len(failed)} of {len(checks)} preflight checks failed" if failed
               else f"all {len(checks)} preflight checks passed")
    if check:
        _echo(f"{verdict}; nothing was launched")
        sys.exit(EXIT_PROBLEM if failed else 0)
    extra = []
    if resume:
        state = resume_module.find_state(resume, Path(p.run.dir) / "output", p.saving.output_name)
        extra, warnings = resume_module.resume_args(
            state, p.schedule.gradient_accumulation_steps, p.launch.num_processes,
            resume_module.epoch_steps(rp.steps.optimizer_steps, p.schedule.epochs), force_resume)
        # before the run folder is rewritten: its run.json says what the run was started from
        recorded = run.read_run_record(Path(p.run.dir))
        warnings += resume_module.check_continuation(recorded, run.run_record(p, checkout), force_resume)
        for problem in warnings:
            _echo(f"warning: resuming anyway: {problem}")
        _echo(f"resuming from {state.path} at optimizer step {state.step:,}")
    argv, written = run.write_run_folder(resolved, rp, checkout, preset, extra)
    root = Path(p.run.dir).resolve()
    _echo(f"run folder: {root} ({', '.join(str(f.relative_to(root)) for f in written)})")
    click.echo(" ".join(argv))
    if dry_run:
        _echo(f"dry run: {verdict}; nothing was launched")
        sys.exit(EXIT_PROBLEM if failed else 0)
    if failed:
        raise PrepError(f"{verdict}; nothing was launched")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, os.environ)  # the trainer owns Ctrl-C and the exit code from here


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--posts", default=2400, show_default=True, type=click.IntRange(1, 7350),
              help="How many posts to generate (1 to 7,350).")
@click.option("--seed", default=20240421, show_default=True)
def sample(folder, posts, seed) -> None:
    """Generate the embedded sample: metadata in both shapes and tiny images in tar shards.

    FOLDER is new, or a sample this command wrote before (replaced); files of anyone else are never touched.
    """
    from kohaku_prep import sample as sample_module

    counts = sample_module.generate(Path(folder), posts, seed)
    _echo(f"sample: {counts['posts']:,} posts, {counts['shards']} tar shards, "
          f"{counts['images_missing']} image(s) left out of the archive, in {folder}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--bpe", type=click.Path(dir_okay=False, exists=True),
              help="CLIP's bpe_simple_vocab_16e6.txt.gz (default: the one inside open-clip-torch).")
def tokenizers(folder, bpe) -> None:
    """Build the offline CLIP tokenizer cache for model.tokenizer_cache_dir (sd-scripts --tokenizer_cache_dir)."""
    from kohaku_prep import tokenizers as tokenizer_module

    source = Path(bpe) if bpe else tokenizer_module.find_bpe()
    for target in tokenizer_module.write_cache(Path(folder), source):
        _echo(f"tokenizer: {target}")
    _echo(f"set model.tokenizer_cache_dir={folder}")


@main.command()
def presets() -> None:
    """List the shipped presets (a preset file of your own is named by its path)."""
    for path in shipped_presets():
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        click.echo(f"{path.stem:<16} {first}")


@main.command()
@click.option("--preset", help="A shipped preset's name or a preset file (default: epsilon).")
@_config_option
@click.argument("args", nargs=-1, metavar="[PRESET] [OVERRIDES]...")
def validate(preset, config, args) -> None:
    """Check a preset (with optional layers and overrides) and print it resolved.

    The preset is --preset NAME, or the first argument when it is not a key=value override.
    """
    overrides = list(args)
    if overrides and "=" not in overrides[0]:
        if preset:
            raise PrepError(f"two presets given: --preset {preset} and {overrides[0]}; give one")
        preset = overrides.pop(0)
    resolved = _resolve(preset or "epsilon", config, tuple(overrides))
    click.echo(resolved.to_toml(), nl=False)
