"""The `kohaku-prep` command: the only module that talks to the user."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kohaku_prep.errors import PrepError
from kohaku_prep.preset import find_preset, resolve, shipped_presets


def _echo(text: str) -> None:
    click.echo(text, err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrepError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="kohaku-prep")
def main() -> None:
    """Danbooru2023 metadata to a Kohaku XL Epsilon training run of sd-scripts."""


def _resolve(preset: str, config: str | None, overrides: tuple[str, ...], **paths: str | None):
    flags = [f"{key}={json.dumps(value)}" for key, value in paths.items() if value is not None]
    resolved = resolve(find_preset(preset), Path(config) if config else None, [*flags, *overrides])
    for line in resolved.overrides:
        _echo(line)
    return resolved


_preset_option = click.option("--preset", default="epsilon", show_default=True,
                              help="A shipped preset's name or a preset file.")
_config_option = click.option("--config", type=click.Path(dir_okay=False),
                              help="Your own TOML file, layered over the preset.")


@main.command()
@_preset_option
@_config_option
@click.option("--metadata", help="Parquet metadata: a file, a folder of shards, or post/tag/posttagrelation "
                                 "(other dumps: kohaku-prep convert).")
@click.option("--images", help="danbooru2023 tar shards, or a folder of <id>.<ext> files.")
@click.option("--out", help="The dataset folder to create.")
@click.option("--force", is_flag=True, help="Replace an existing dataset or discard an unfinished other build.")
@click.argument("overrides", nargs=-1)
def dataset(preset, config, metadata, images, out, force, overrides) -> None:
    """Build a captioned dataset and its sd-scripts dataset TOML.

    OVERRIDES are key=value settings over the preset, e.g. selection.seed=7 or selection.pools.0.take=500.
    """
    from kohaku_prep import build, dataset_files
    from kohaku_prep.selection import Stage

    resolved = _resolve(preset, config, overrides, **{
        "input.metadata": metadata, "input.images": images, "output.dir": out})
    if not resolved.preset.output.dir:
        raise PrepError("set output.dir (--out DIR)")
    build.check_output(Path(resolved.preset.output.dir), force)
    plan = build.plan_dataset(resolved.preset, _echo)
    summary = build.write_dataset(plan, resolved, force, _echo)
    _echo("\n".join(dataset_files.stage_lines([Stage(**s) for s in summary["stages"]])))
    _echo(f"dataset: {summary['images']['written']:,} images with captions in "
          f"{summary['images']['subset_folders']:,} folder(s) under {resolved.preset.output.dir}")
    _echo(f"report: {Path(resolved.preset.output.dir) / 'report.html'} (and report.md with its charts)")


@main.command()
@click.argument("dataset_dir", metavar="DATASET", type=click.Path(file_okay=False))
def report(dataset_dir) -> None:
    """Draw a built dataset's report again (report.md, report-*.png, report.html) from its manifest.parquet
    and summary.json alone."""
    from kohaku_prep import report as report_module

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
    src, out = Path(src), Path(out)
    try:
        _convert(src, out, bad_lines == "skip")
    except OSError as exc:  # a full disk or an unreadable input: nothing was left behind
        raise PrepError(f"{exc.filename or out}: {exc.strerror or exc}") from None


def _convert(src: Path, out: Path, skip_bad: bool) -> None:
    from tqdm import tqdm  # a progress bar on a terminal only

    from kohaku_prep import convert as convert_module

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
@click.option("--seconds-per-step", type=float, help="Measured seconds per optimizer step, for an ETA.")
@click.argument("overrides", nargs=-1)
def plan_command(preset, config, seconds_per_step, overrides) -> None:
    """Print the run before it runs: buckets, batches, steps, warmup, saves, ETA and LoKr size.

    With run.dir set, also draw the bucket chart and the run's timeline there (plan-*.png).
    """
    from kohaku_prep import run

    resolved = _resolve(preset, config, overrides)
    rp = run.make_plan(resolved.preset)
    click.echo(run.plan_text(rp, resolved.preset, seconds_per_step), nl=False)
    if resolved.preset.run.dir:
        run.check_run_folder(Path(resolved.preset.run.dir))  # never drawn among the user's own files
        for path in run.write_plan_charts(Path(resolved.preset.run.dir), rp, resolved.preset, seconds_per_step):
            _echo(f"chart: {path}")


@main.command()
@_preset_option
@_config_option
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
def train(preset, config, check, dry_run, resume, force_resume, sd_scripts, overrides) -> None:
    """Preflight, write the run folder, then run its parts, one `accelerate launch` each.

    A stopped or crashed run continues at its first unfinished part when the same command runs again.
    """
    import os

    from kohaku_prep import chain, run
    from kohaku_prep.resume import check_continuation

    resolved = _resolve(preset, config, overrides)
    p = resolved.preset
    if not p.run.dir:
        raise PrepError("set run.dir=DIR (the run folder)")
    run_dir = Path(p.run.dir).resolve()
    existing = run.check_run_folder(run_dir)
    if resume and not existing:
        raise PrepError(f"{run_dir}: no run to continue (--resume continues a run folder holding run.json)")
    checkout = run.sd_scripts_dir(sd_scripts)
    rp = run.make_plan(p)
    checks = run.run_preflight(p, rp, checkout)
    for c in checks:
        _echo(c.line())
    failed = [c for c in checks if not c.ok]
    if check:
        sys.exit(1 if failed else 0)
    if failed and not dry_run:
        raise PrepError(f"{len(failed)} preflight check(s) failed; nothing was launched")
    count = len(rp.parts.parts)
    paths = run.training.RunPaths(run_dir)
    if existing:
        # before the run folder is rewritten: its run.json says what the run was started from
        for problem in check_continuation(run.read_run_record(run_dir), run.run_record(p, checkout), force_resume):
            _echo(f"warning: continuing anyway: {problem}")
        _echo(f"continuing the run at part {chain.first_unfinished(paths, count) + 1} of {count}")
    command = [sys.executable, "-m", "kohaku_prep", "train", "--preset", preset,
               *(["--config", config] if config else []), *(["--sd-scripts", sd_scripts] if sd_scripts else []),
               *overrides]
    run.write_run_folder(resolved, rp, checkout, command, os.getcwd())
    run.write_plan_charts(run_dir, rp, p)
    if dry_run:
        index = min(chain.first_unfinished(paths, count), count - 1)
        argv = run.write_part_folder(p, rp, paths, index, checkout, preset)
        _echo(f"run folder: {run_dir} (command.sh, preset.toml, plan.txt, plan-buckets.png, plan-timeline.png, "
              "parts.json, versions.json, run.json, "
              f"lycoris_preset.toml{', prompts.txt' if p.samples.prompts else ''}); part {index + 1} of {count} in "
              f"{paths.part(index).root} (command.sh, train.toml, dataset.toml, images/)")
        click.echo(" ".join(argv))
        if failed:
            raise PrepError(f"dry run: {len(failed)} preflight check(s) failed; nothing was launched")
        return
    chain.run_parts(p, rp, paths, checkout, preset, _echo)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--losses", default=5, show_default=True, help="How many of the last logged losses to show.")
@click.option("--plot", is_flag=True, help="Also draw dashboard.png and dashboard.html in the run folder: loss, "
                                           "learning rate, seconds per step and images per second over all parts.")
def status(run_dir, losses, plot) -> None:
    """Where a run stands: its part, cumulative step, elapsed time, speed, ETA and last losses."""
    from kohaku_prep import status as status_module

    click.echo("\n".join(status_module.status_lines(Path(run_dir), losses)))
    if plot:
        for path in status_module.write_dashboard(Path(run_dir)):
            _echo(f"chart: {path}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--posts", default=2400, show_default=True, help="How many posts to generate.")
@click.option("--seed", default=20240421, show_default=True)
def sample(folder, posts, seed) -> None:
    """Generate the embedded sample: metadata in both shapes and tiny images in tar shards."""
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
    """List the shipped presets."""
    for path in shipped_presets():
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        click.echo(f"{path.stem:<16} {first}")


@main.command()
@click.argument("preset_file")
@_config_option
@click.argument("overrides", nargs=-1)
def validate(preset_file, config, overrides) -> None:
    """Check a preset (with optional layers and overrides) and print it resolved."""
    resolved = _resolve(preset_file, config, overrides)
    click.echo(resolved.to_toml(), nl=False)
