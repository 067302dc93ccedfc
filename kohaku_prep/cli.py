"""The `kohaku-prep` command: the only module that talks to the user.

Exit codes: 0 done; 1 a problem with the input or the environment (one `error:` line, or failed preflight
checks); 2 a mistake in the command line itself; 3 an unexpected error (a bug: `--debug` shows the
traceback); 130 interrupted. `train` without --check or --dry-run ends as the trainer ends.
"""
from __future__ import annotations

import json
import os
import signal
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


def _let_pyarrow_import_pandas() -> None:
    """Let pyarrow make its one lazy import of pandas now, with Ctrl-C held back until it is over.

    pyarrow imports pandas (most of a second) the first time it turns an array into numpy, inside a function
    that swallows exceptions: a Ctrl-C landing there is lost and leaves Python's import lock held, so the
    next import on another thread (PIL's plugins, in the image workers) waits forever and the build hangs.
    Held back, the Ctrl-C is raised once the import is over, where it stops the command as any other."""
    import pyarrow as pa

    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        pa.array([True]).to_numpy(zero_copy_only=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


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
            sys.exit(exc.exit_code)
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
@click.option("--metadata", help="Parquet metadata: a file, a folder of shards, or post/tag/posttagrelation "
                                 "(other dumps: kohaku-prep convert).")
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
    _let_pyarrow_import_pandas()
    from kohaku_prep.dataset import build
    from kohaku_prep.dataset.selection import stage_lines

    resolved = _resolve(preset, config, overrides, **{
        "input.metadata": metadata, "input.images": images, "output.dir": out})
    p = resolved.preset
    missing = [flag for flag, value in (("--metadata", p.input.metadata), ("--images", p.input.images),
                                        ("--out", p.output.dir)) if not value]
    if missing:
        raise PrepError(f"set {', '.join(missing)} (see kohaku-prep dataset --help)")
    summary = build.build_dataset(resolved, force, _echo)
    _echo("\n".join(stage_lines(summary.stages)))
    _echo(f"dataset: {summary.images.written:,} images with captions in {summary.images.subset_folders:,} "
          f"folder(s) under {p.output.dir}")
    _echo(f"report: {Path(p.output.dir) / 'report.html'} (and report.md with its charts)")


@main.command()
@click.argument("dataset_dir", metavar="DATASET", type=click.Path(file_okay=False))
def report(dataset_dir) -> None:
    """Draw a built dataset's report again (report.md, report-*.png, report.html) from its manifest.parquet
    and summary.json alone."""
    _let_pyarrow_import_pandas()
    from kohaku_prep.dataset import report as report_module

    for name in report_module.redraw(Path(dataset_dir)):
        _echo(f"report: {Path(dataset_dir) / name}")


@main.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path())
@click.option("--bad-lines", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="A line that is not a post: stop with an error naming it, or leave it out and count it.")
def convert(src, out, bad_lines) -> None:
    """Convert a dump that is not Parquet into the tables `dataset --metadata` reads.

    SRC is danbooru's JSON Lines post dump (posts.json; OUT: a .parquet file) or HakuBooru's SQLite
    danbooru2023.db (OUT: a folder for post, tag and posttagrelation .parquet).
    """
    _let_pyarrow_import_pandas()
    src, out = Path(src), Path(out)
    try:
        _convert(src, out, bad_lines == "skip")
    except OSError as exc:  # a full disk or an unreadable input: nothing was left behind
        raise PrepError(f"{exc.filename or out}: {exc.strerror or exc}") from None


def _convert(src: Path, out: Path, skip_bad: bool) -> None:
    from tqdm import tqdm  # a progress bar on a terminal only

    from kohaku_prep.dataset import convert as convert_module

    if convert_module.kind_of(src) == "sqlite":
        with tqdm(desc="rows", unit=" rows", unit_scale=True, disable=not sys.stderr.isatty()) as bar:
            counts = convert_module.convert_sqlite(src, out, bar.update)
        _echo("convert: " + ", ".join(f"{n:,} {table} rows" for table, n in counts.items()) + f" in {out}/")
        _echo(f"next: kohaku-prep dataset --metadata {out} ...")
        return
    with tqdm(total=src.stat().st_size, desc="posts.json", unit="B", unit_scale=True,
              disable=not sys.stderr.isatty()) as bar:
        n_posts, bad = convert_module.convert_json_lines(src, out, skip_bad, bar.update)
    if bad.count:
        _echo(f"bad lines: {bad.count:,} left out, first {bad.first}")
    _echo(f"convert: {n_posts:,} posts in {out}")
    _echo(f"next: kohaku-prep dataset --metadata {out} ...")


@main.command("plan")
@_preset_option
@_config_option
@_dataset_option
@click.option("--seconds-per-step", type=click.FloatRange(min=0, min_open=True),
              help="Measured seconds per optimizer step, for an ETA.")
@click.argument("overrides", nargs=-1)
def plan_command(preset, config, dataset_dir, seconds_per_step, overrides) -> None:
    """Print the run before it runs: buckets, batches, steps, warmup, parts, ETA and LoKr size.

    Needs the built dataset: --dataset DIR (or run.dataset=DIR). With run.dir set, also draw the bucket
    chart and the run's timeline there (plan-*.png).
    """
    _let_pyarrow_import_pandas()
    from kohaku_prep.train import run

    resolved = _resolve(preset, config, overrides, **{"run.dataset": dataset_dir})
    rp = run.make_plan(resolved.preset)
    click.echo(run.plan_text(rp, resolved.preset, seconds_per_step), nl=False)
    if resolved.preset.run.dir:
        for path in run.write_plan_charts(Path(resolved.preset.run.dir), rp, resolved.preset, seconds_per_step):
            _echo(f"chart: {path}")


@main.command()
@_preset_option
@_config_option
@_dataset_option
@click.option("--run-dir", metavar="DIR", help="The run folder to write (run.dir).")
@click.option("--model", metavar="FILE", help="The SDXL base checkpoint, .safetensors (model.pretrained).")
@click.option("--check", is_flag=True, help="Run the preflight checks only.")
@click.option("--dry-run", is_flag=True, help="Write the run folder and the next part's folder, print its command; "
                                              "launch nothing.")
@click.option("--resume", is_flag=True, help="Continue the run in run.dir (running the same command again does "
                                             "too); refused where run.dir holds no run.")
@click.option("--force-resume", is_flag=True, help="Continue even though the preset, the dataset's manifest, the "
                                                   "sd-scripts commit or bitsandbytes changed since the run started.")
@click.option("--sd-scripts", "sd_scripts", help="An sd-scripts checkout (default: KOHAKU_SD_SCRIPTS, "
                                                  "then third_party/sd-scripts).")
@click.argument("overrides", nargs=-1)
def train(preset, config, dataset_dir, run_dir, model, check, dry_run, resume, force_resume, sd_scripts,
          overrides) -> None:
    """Preflight, write the run folder, then run its parts, one `accelerate launch` each.

    Needs --dataset DIR, --run-dir DIR and --model FILE (or run.dataset=, run.dir=, model.pretrained=).
    A stopped or crashed run continues at its first unfinished part when the same command runs again.
    Exits 1 when a preflight check fails (--check and --dry-run included), launching nothing.
    """
    _let_pyarrow_import_pandas()
    from kohaku_prep.train import chain, run
    from kohaku_prep.train.resume import check_continuation

    resolved = _resolve(preset, config, overrides, **{"run.dataset": dataset_dir, "run.dir": run_dir,
                                                       "model.pretrained": model})
    p = resolved.preset
    if not check and not p.run.dir:  # said before the preflight's minutes, not after
        raise PrepError("set run.dir (the run folder: --run-dir DIR or run.dir=DIR)")
    folder = Path(p.run.dir).resolve() if p.run.dir else None
    existing = folder is not None and run.check_run_folder(folder)
    if resume and not existing:
        raise PrepError(f"{folder}: no run to continue (--resume continues a run folder holding run.json)")
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
    if failed and not dry_run:
        raise PrepError(f"{verdict}; nothing was launched")
    assert folder is not None  # run.dir is required past --check (said above)
    count = len(rp.parts.parts)
    paths = run.training.RunPaths(folder)
    if existing:
        # before the run folder is rewritten: its run.json says what the run was started from
        for problem in check_continuation(run.read_run_record(folder), run.run_record(p, checkout), force_resume):
            _echo(f"warning: continuing anyway: {problem}")
        _echo(f"continuing the run at part {chain.first_unfinished(paths, count) + 1} of {count}")
    given = {"--config": config, "--dataset": dataset_dir, "--run-dir": run_dir, "--model": model,
             "--sd-scripts": sd_scripts}
    command = [sys.executable, "-m", "kohaku_prep", "train", "--preset", preset,
               *(word for flag, value in given.items() if value for word in (flag, value)), *overrides]
    run.write_run_folder(resolved, rp, checkout, command, os.getcwd())
    run.write_plan_charts(folder, rp, p)
    if dry_run:
        index = min(chain.first_unfinished(paths, count), count - 1)
        argv = run.write_part_folder(p, rp, paths, index, checkout, preset)
        _echo(f"run folder: {folder} (command.sh, preset.toml, plan.txt, plan-buckets.png, plan-timeline.png, "
              "parts.json, versions.json, run.json"
              + (", lycoris_preset.toml" if p.network.preset else "") + (", prompts.txt" if p.samples.prompts else "")
              + f"); part {index + 1} of {count} in {paths.part(index).root} (command.sh, train.toml, dataset.toml, "
              "images/)")
        click.echo(" ".join(argv))
        _echo(f"dry run: {verdict}; nothing was launched")
        sys.exit(EXIT_PROBLEM if failed else 0)
    chain.run_parts(p, rp, paths, checkout, preset, _echo)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--losses", default=5, show_default=True, help="How many of the last logged losses to show.")
@click.option("--plot", is_flag=True, help="Also draw dashboard.png and dashboard.html in the run folder: loss, "
                                           "learning rate, seconds per step and images per second over all parts.")
def status(run_dir, losses, plot) -> None:
    """Where a run stands: its part, cumulative step, elapsed time, speed, ETA and last losses."""
    _let_pyarrow_import_pandas()
    from kohaku_prep.train import status as status_module

    click.echo("\n".join(status_module.status_lines(Path(run_dir), losses)))
    if plot:
        for path in status_module.write_dashboard(Path(run_dir)):
            _echo(f"chart: {path}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--posts", default=2400, show_default=True, type=click.IntRange(1, 7350),
              help="How many posts to generate (1 to 7,350).")
@click.option("--seed", default=20240421, show_default=True)
def sample(folder, posts, seed) -> None:
    """Generate the embedded sample: metadata in both shapes and tiny images in tar shards.

    FOLDER is new, or a sample this command wrote before (replaced); files of anyone else are never touched.
    """
    from kohaku_prep.dataset import sample as sample_module

    counts = sample_module.generate(Path(folder), posts, seed)
    _echo(f"sample: {counts['posts']:,} posts, {counts['shards']} tar shards, "
          f"{counts['images_missing']} image(s) left out of the archive, in {folder}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--bpe", type=click.Path(dir_okay=False, exists=True),
              help="CLIP's bpe_simple_vocab_16e6.txt.gz (default: the one inside open-clip-torch).")
def tokenizers(folder, bpe) -> None:
    """Build the offline CLIP tokenizer cache for model.tokenizer_cache_dir (sd-scripts --tokenizer_cache_dir)."""
    from kohaku_prep.train import tokenizers as tokenizer_module

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
