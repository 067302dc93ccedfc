"""A training run: its plan, its run folder (what the run was started from, the resolved preset, the
versions, the part table) and each part's folder (links to its images, the trainer's TOML files, the exact
command), and its preflight. Writes files; launching is the chain's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from kohaku_prep import SD_SCRIPTS_COMMIT, __version__, bucketing, dataset_format, interface
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import OwnedFiles, write_atomic
from kohaku_prep.preset import Preset, Resolved, find_file, to_dict
from kohaku_prep.tomlout import dumps
from kohaku_prep.train import lokr, plan, preflight, resume, training
from kohaku_prep.train import parts as parts_module
from kohaku_prep.versions import installed_version, versions

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_COMMIT = "unknown (not a git checkout of its own)"
SEED_MAX = 2**32 - 1  # the trainer seeds numpy, whose seeds end here
VERSIONED = ("torch", "accelerate", "lycoris-lora", "bitsandbytes", "transformers", "diffusers", "numpy", "pyarrow")


def sd_scripts_dir(flag: str | None = None) -> Path:
    """--sd-scripts, else KOHAKU_SD_SCRIPTS, else the submodule."""
    return Path(flag or os.environ.get("KOHAKU_SD_SCRIPTS") or ROOT / "third_party" / "sd-scripts").resolve()


def preset_file(name: str) -> Path:
    """A file named in a preset, by the rule of preset.find_file (the user's file wins, else the shipped one)."""
    found = find_file(name)
    if found is None:
        raise PrepError(f"{name}: no such file, here or among the shipped presets")
    return found


@dataclass
class RunPlan:
    steps: plan.StepPlan
    network: lokr.NetworkPlan
    parts: parts_module.PartsPlan
    images: pa.Array  # the manifest's image paths, relative to the dataset folder, by manifest row


# schedulers whose curve depends only on the steps done, so that a chain of launches continues it;
# the others are built from each launch's own length (train_util.get_scheduler_fix)
CHAINABLE_SCHEDULERS = ("constant", "constant_with_warmup", "inverse_sqrt")


def make_plan(p: Preset) -> RunPlan:
    manifest_path = Path(p.run.dataset) / "manifest.parquet"
    if not p.run.dataset or not manifest_path.is_file():
        raise PrepError(f"{p.run.dataset or 'run.dataset'}: not a built dataset (--dataset DIR, or run.dataset=DIR)")
    try:
        manifest = pq.read_table(manifest_path, columns=["id", "image", "width", "height"])
    except (OSError, ValueError) as exc:  # pyarrow's errors for a damaged file or a missing column
        raise PrepError(f"{manifest_path}: not a readable manifest ({str(exc).splitlines()[0]}); "
                        "build the dataset again") from None
    resos, bucket_of = bucketing.bucket_index(manifest["width"].to_numpy(), manifest["height"].to_numpy(), p.dataset)
    s, ds = p.schedule, p.dataset
    parts = parts_module.plan_parts(
        manifest["id"].to_numpy(), bucket_of, batch_size=ds.batch_size, repeats=ds.num_repeats,
        processes=p.launch.num_processes, accumulation=s.gradient_accumulation_steps, epochs=s.epochs,
        max_steps=s.max_steps, steps_per_part=s.steps_per_part, seed=s.seed)
    if len(parts.parts) > 1 and s.lr_scheduler not in CHAINABLE_SCHEDULERS:
        raise PrepError(f"schedule.lr_scheduler = {s.lr_scheduler} cannot run in {len(parts.parts)} parts: sd-scripts "
                        "builds its curve from each launch's own length; use one of "
                        f"{', '.join(CHAINABLE_SCHEDULERS)}, or one part (schedule.steps_per_part = 0)")
    if s.seed + len(parts.parts) - 1 > SEED_MAX:
        raise PrepError(f"schedule.seed = {s.seed}: part {len(parts.parts)} would launch with a seed past "
                        f"{SEED_MAX:,}; choose a smaller seed")
    if len(parts.parts) > 1 and p.launch.num_machines > 1:
        raise PrepError("a run on several machines runs as one part: set schedule.steps_per_part = 0")
    n = p.network
    args = lokr.NetworkArgs(n.dim, n.factor, n.conv_dim, n.train_norm, n.train_text_encoder)
    preset = lokr.read_lycoris_preset(preset_file(n.preset)) if n.preset else lokr.LYCORIS_DEFAULT_PRESET
    network = lokr.plan_network(preset, args)
    buckets = bucketing.bucket_totals(resos, bucket_of, ds.num_repeats)
    return RunPlan(plan.step_plan(buckets, p), network, parts, manifest["image"].combine_chunks())


def network_lines(network: lokr.NetworkPlan, p: Preset) -> list[str]:
    """Which modules take the LyCORIS preset's values and which the [network] section's."""
    source = (f"LyCORIS preset {p.network.preset}" if p.network.preset
              else "no LyCORIS preset (LyCORIS's default modules)")
    lines = [f"network           {source}; whose factor and dim each module takes:"]
    for rule, count, params, factors in network.by_rule():
        shown = ", ".join(map(str, factors))
        if rule.startswith("module_algo_map"):
            whose = f"factor {shown}, dim: the preset's {rule} (network.factor/dim do not apply)"
        elif rule == "network":
            whose = f"factor {shown}, dim: the [network] section (network.factor, network.dim/conv_dim)"
        else:
            whose = "norm weights (network.train_norm)"
        lines.append(f"  {count:>5,} modules {params:>13,} parameters  {whose}")
    return lines


def plan_text(rp: RunPlan, p: Preset, seconds_per_step: float | None = None) -> str:
    size = rp.network.file_bytes(p.training.save_precision)
    lines = plan.plan_lines(rp.steps, seconds_per_step, rp.network.params, size) + network_lines(rp.network, p)
    lines += plan.parts_lines(rp.parts, p, seconds_per_step)
    return "\n".join(lines) + "\n"


PLAN_CHARTS = ("plan-buckets.png", "plan-timeline.png")


def plan_charts(steps: plan.StepPlan, seconds_per_step: float | None = None, part_ends: Sequence[int] = (),
                saves: Sequence[int] = ()) -> dict[str, bytes]:
    """The bucket chart and the run's timeline (warmup, parts ending at `part_ends`, kept LoKr files at
    `saves`, ETA), by file name."""
    from kohaku_prep import charts

    rows = bucketing.bucket_rows(steps.buckets, steps.batch_size)
    marks = plan.timeline(steps, seconds_per_step, part_ends, saves)
    end = marks[-1].seconds  # None without seconds per step
    eta = f"ETA {plan.duration(end)}" if end is not None else ""
    return {PLAN_CHARTS[0]: charts.png(lambda f: charts.bucket_chart(f, rows, steps.batch_size),
                                       charts.bucket_chart_size(len(rows))),
            PLAN_CHARTS[1]: charts.png(lambda f: charts.timeline_chart(f, marks, eta), charts.timeline_chart_size())}


def write_plan_charts(run_dir: Path, rp: RunPlan, p: Preset, seconds_per_step: float | None = None) -> list[Path]:
    """The plan's charts in the run folder, with the run's parts and kept LoKr files."""
    parts = rp.parts.parts
    saves = parts_module.cadence_ends(parts, p.saving.every_n_steps)
    charts = plan_charts(rp.steps, seconds_per_step, [q.end_step for q in parts], saves)
    return OwnedFiles(run_dir, "run.dir").write_all(charts)


def run_versions(sd_scripts: Path) -> dict[str, str]:
    return versions(VERSIONED) | {"sd-scripts": preflight.sd_scripts_commit(sd_scripts) or UNKNOWN_COMMIT,
                                  "sd-scripts pinned": SD_SCRIPTS_COMMIT}


def run_record(p: Preset, sd_scripts: Path) -> dict[str, str]:
    """What a run is started from, compared when it is resumed. The preset is hashed by its values, not
    by the layers and override lines that reached them: the same run given another way is the same run."""
    with open(Path(p.run.dataset) / "manifest.parquet", "rb") as fh:
        manifest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"preset_sha256": hashlib.sha256(dumps(to_dict(p)).encode()).hexdigest(),
            "dataset_manifest_sha256": manifest,
            "sd_scripts_commit": preflight.sd_scripts_commit(sd_scripts) or UNKNOWN_COMMIT,
            "bitsandbytes": installed_version("bitsandbytes")}


def read_run_record(run_dir: Path) -> dict[str, str] | None:
    try:
        return json.loads((run_dir / resume.RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


RUN_SUBFOLDERS = ("parts", "output")  # where the chain launches, moves and deletes


def check_run_folder(run_dir: Path) -> bool:
    """True when `run_dir` holds a run of this tool (its run.json); False when it holds none yet. A folder
    with a `parts/` or `output/` of someone else's is refused: the chain moves and deletes files there.
    Other files of the user's may stay beside the run's (the run-level files are written as OwnedFiles)."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise PrepError(f"{run_dir}: is {'a link' if run_dir.is_symlink() else 'a file'}, not a folder (run.dir)")
    if (run_dir / resume.RUN_RECORD).is_file():
        return True
    taken = [name for name in RUN_SUBFOLDERS if (run_dir / name).exists()]
    if taken:
        raise PrepError(f"{run_dir / taken[0]}: run.dir holds a {taken[0]}/ of its own but no run of kohaku-prep "
                        f"({resume.RUN_RECORD}); choose another run.dir")
    return False


def parts_table(rp: RunPlan) -> list[dict]:
    return [{"part": part.index + 1, "epoch": part.epoch + 1, "images": len(part.rows), "batches": part.batches,
             "start_step": part.start_step, "steps": part.steps, "end_step": part.end_step, "seed": part.seed}
            for part in rp.parts.parts]


def write_run_folder(resolved: Resolved, rp: RunPlan, sd_scripts: Path, command: list[str],
                     cwd: str) -> training.RunPaths:
    """The run's own files: what every part shares, and what the run was started from. Refuses any file in
    the way that this tool did not write."""
    p = resolved.preset
    if not p.run.dir:
        raise PrepError("set run.dir (the run folder: --run-dir DIR or run.dir=DIR)")
    paths = training.RunPaths(Path(p.run.dir).resolve())
    files: dict[str, str | bytes] = {
        "command.sh": "#!/usr/bin/env bash\n# written by kohaku-prep: runs or continues this run (each part's own "
                      f"launch is parts/NNN/command.sh)\nset -euo pipefail\ncd {shlex.quote(cwd)}\nexec "
                      + " ".join(shlex.quote(a) for a in command) + "\n",
        "preset.toml": resolved.to_toml(),
        "plan.txt": plan_text(rp, p),
        paths.parts_table.name: json.dumps(parts_table(rp), indent=1) + "\n",
        "versions.json": json.dumps(run_versions(sd_scripts), indent=2, sort_keys=True) + "\n",
        resume.RUN_RECORD: json.dumps(run_record(p, sd_scripts), indent=2, sort_keys=True) + "\n",
    }
    if p.network.preset:
        files[paths.lycoris_preset.name] = preset_file(p.network.preset).read_bytes()
    if p.samples.prompts:
        files[paths.prompts.name] = preset_file(p.samples.prompts).read_bytes()
    OwnedFiles(paths.root, "run.dir").write_all(files)
    (paths.root / "command.sh").chmod(0o755)
    return paths


LINKS_PER_FOLDER = 10_000  # sd-scripts does not recurse: one subset per folder of links


def _write_links(part: parts_module.Part, images: pa.Array, dataset: Path, repeats: int, folder: Path) -> list[Path]:
    """A folder of symbolic links to the part's images and captions (never copies), in subset folders;
    a repeated image gets one link name per repeat."""
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    subsets = []
    paths = images.take(pa.array(part.rows)).to_pylist()
    for start in range(0, len(paths), LINKS_PER_FOLDER):
        subset = staging / f"{start // LINKS_PER_FOLDER:04d}"
        subset.mkdir(parents=True)
        subsets.append(folder / subset.name)
        for image, rep in zip(paths[start:start + LINKS_PER_FOLDER], part.repeats[start:start + LINKS_PER_FOLDER],
                              strict=True):
            target = dataset / image
            stem = target.stem if repeats == 1 else f"{target.stem}-r{rep}"
            os.symlink(target, subset / f"{stem}{target.suffix}")
            os.symlink(target.with_suffix(dataset_format.CAPTION_EXTENSION),
                       subset / f"{stem}{dataset_format.CAPTION_EXTENSION}")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return subsets


def samples_at_end(part: parts_module.Part, every: int) -> bool:
    """Samples are drawn at the end of the first part at or past each multiple of `every` steps."""
    return bool(parts_module.cadence_ends([part], every))


def write_part_folder(p: Preset, rp: RunPlan, paths: training.RunPaths, index: int, sd_scripts: Path,
                      preset_name: str) -> list[str]:
    """Part `index`'s folder: its links, dataset TOML, training TOML and command; returns its launch argv.
    Refuses anything the pinned trainer would not take."""
    part = rp.parts.parts[index]
    part_paths = paths.part(index)
    previous = paths.part(index - 1).end_state(p.saving.output_name) if index else None
    launch = training.PartLaunch(part_paths, part.seed, previous, samples_at_end(part, p.samples.every_n_steps))
    config = training.training_config(p, paths, launch)
    part_paths.root.mkdir(parents=True, exist_ok=True)
    subsets = _write_links(part, rp.images, Path(p.run.dataset).resolve(), p.dataset.num_repeats, part_paths.images)
    header = (f"sd-scripts --dataset_config, part {index + 1} of {len(rp.parts.parts)}, written by kohaku-prep "
              f"{__version__} from {preset_name}")
    dataset_toml = dataset_format.dataset_toml(dataclasses.replace(p.dataset, num_repeats=1), subsets, header)
    problems = interface.check_training_config(config) + interface.check_dataset_config(tomllib.loads(dataset_toml))
    if problems:
        raise PrepError("the trainer would not take this run:\n  " + "\n  ".join(problems))
    write_atomic(part_paths.dataset_toml, dataset_toml)
    write_atomic(part_paths.train_toml, training.training_toml(config, preset_name, index + 1, len(rp.parts.parts)))
    rank_text = os.environ.get("MACHINE_RANK", str(p.launch.machine_rank))
    if not rank_text.isdigit() or int(rank_text) >= p.launch.num_machines:
        raise PrepError(f"MACHINE_RANK={rank_text}: must be a machine number from 0 to {p.launch.num_machines - 1}")
    argv = training.launch_argv(p, part_paths, sd_scripts, int(rank_text))
    write_atomic(part_paths.command, training.command_script(argv, p.launch.machine_rank))
    part_paths.command.chmod(0o755)
    return argv


def run_preflight(p: Preset, rp: RunPlan, sd_scripts: Path) -> list[preflight.Check]:
    size = rp.network.file_bytes(p.training.save_precision)
    saves = len(parts_module.cadence_ends(rp.parts.parts, p.saving.every_n_steps)) + 1  # and the final one
    return [
        preflight.check_sd_scripts(sd_scripts),
        *preflight.check_packages(p.optimizer.type),
        preflight.check_gpus(p),
        preflight.check_base_model(p),
        preflight.check_dataset(p),
        preflight.check_tokenizers(p),
        preflight.check_logging(p),
        # a part's new state is written before the oldest kept one is removed
        preflight.check_disk(p, Path(p.run.dir or "."), saves, p.saving.keep_states + 1, rp.network.params, size),
    ]

