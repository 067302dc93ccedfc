"""A training run: its plan, its run folder (everything the trainer reads, the exact command, the resolved
preset, the versions, what the run was started from) and its preflight. Writes files; the launch itself
is the CLI's.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from kohaku_prep import (SD_SCRIPTS_COMMIT, __version__, dataset_files, interface, lokr, plan, preflight, resume,
                         training)
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import write_atomic
from kohaku_prep.preset import PRESET_DIR, Preset, Resolved, to_dict
from kohaku_prep.tomlout import dumps

ROOT = Path(__file__).resolve().parent.parent
VERSIONED = ("torch", "accelerate", "lycoris-lora", "bitsandbytes", "transformers", "diffusers", "numpy", "pyarrow")


def sd_scripts_dir(flag: str | None = None) -> Path:
    """--sd-scripts, else KOHAKU_SD_SCRIPTS, else the submodule."""
    return Path(flag or os.environ.get("KOHAKU_SD_SCRIPTS") or ROOT / "third_party" / "sd-scripts").resolve()


def preset_file(name: str) -> Path:
    """A file named in a preset: relative to presets/ when it is there, else as given."""
    shipped = PRESET_DIR / name
    return shipped if shipped.is_file() else Path(name)


@dataclass
class RunPlan:
    steps: plan.StepPlan
    network: lokr.NetworkPlan


def make_plan(p: Preset) -> RunPlan:
    manifest_path = Path(p.run.dataset) / "manifest.parquet"
    if not p.run.dataset or not manifest_path.is_file():
        raise PrepError(f"{p.run.dataset or 'run.dataset'}: not a built dataset (set run.dataset=DIR)")
    sizes = pq.read_table(manifest_path, columns=["width", "height"])
    buckets = plan.bucket_counts(sizes["width"].to_numpy(), sizes["height"].to_numpy(), p.dataset)
    n = p.network
    args = lokr.NetworkArgs(n.dim, n.factor, n.conv_dim, n.train_norm, n.train_text_encoder)
    network = lokr.plan_network(lokr.read_lycoris_preset(preset_file(n.preset)), args)
    return RunPlan(plan.step_plan(buckets, p), network)


def plan_text(rp: RunPlan, p: Preset, seconds_per_step: float | None = None) -> str:
    size = rp.network.file_bytes(p.training.save_precision)
    return "\n".join(plan.plan_lines(rp.steps, seconds_per_step, rp.network.params, size)) + "\n"


PLAN_CHARTS = ("plan-buckets.png", "plan-timeline.png")


def plan_charts(rp: RunPlan, seconds_per_step: float | None = None, part_ends: Sequence[int] = ()) -> dict[str, bytes]:
    """The bucket chart and the run's timeline (warmup, parts ending at `part_ends`, saves, ETA), by file name."""
    from kohaku_prep import charts

    steps = rp.steps
    rows = plan.bucket_rows(steps.buckets, steps.batch_size)
    marks = plan.timeline(steps, seconds_per_step, part_ends)
    eta = f"ETA {plan.duration(marks[-1].seconds)}" if seconds_per_step else ""
    return {PLAN_CHARTS[0]: charts.png(lambda f: charts.bucket_chart(f, rows, steps.batch_size),
                                       charts.bucket_chart_size(len(rows))),
            PLAN_CHARTS[1]: charts.png(lambda f: charts.timeline_chart(f, marks, eta), charts.timeline_chart_size())}


def write_plan_charts(run_dir: Path, rp: RunPlan, seconds_per_step: float | None = None,
                      part_ends: Sequence[int] = ()) -> list[Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in plan_charts(rp, seconds_per_step, part_ends).items():
        write_atomic(run_dir / name, data)
        written.append(run_dir / name)
    return written


def installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(sd_scripts: Path) -> dict[str, str]:
    out = {"kohaku-prep": __version__, "python": platform.python_version(),
           "sd-scripts": preflight.sd_scripts_commit(sd_scripts) or "absent",
           "sd-scripts pinned": SD_SCRIPTS_COMMIT}
    return out | {dist: installed_version(dist) for dist in VERSIONED}


def run_record(p: Preset, sd_scripts: Path) -> dict[str, str]:
    """What a run is started from, compared when it is resumed. The preset is hashed by its values, not
    by the layers and override lines that reached them: the same run given another way is the same run."""
    with open(Path(p.run.dataset) / "manifest.parquet", "rb") as fh:
        manifest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"preset_sha256": hashlib.sha256(dumps(to_dict(p)).encode()).hexdigest(),
            "dataset_manifest_sha256": manifest,
            "sd_scripts_commit": preflight.sd_scripts_commit(sd_scripts) or "absent",
            "bitsandbytes": installed_version("bitsandbytes")}


def read_run_record(run_dir: Path) -> dict[str, str] | None:
    try:
        return json.loads((run_dir / resume.RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def run_dataset_toml(p: Preset, preset_name: str) -> str:
    """The dataset TOML of the run: the built dataset's subset folders with the preset's [dataset] values,
    so that what trains is what the plan computed, even when the preset changed after the build."""
    built = tomllib.loads((Path(p.run.dataset) / "dataset.toml").read_text())
    image_dirs = [Path(s["image_dir"]) for d in built.get("datasets", []) for s in d.get("subsets", [])]
    header = f"sd-scripts --dataset_config, written by kohaku-prep {__version__} from {preset_name}"
    return dataset_files.dataset_toml(p.dataset, image_dirs, header)


def write_run_folder(resolved: Resolved, rp: RunPlan, sd_scripts: Path, preset_name: str,
                     extra_args: list[str] = ()) -> list[str]:
    """Write the run folder; returns the launch argv. Refuses anything the pinned trainer would not take."""
    p = resolved.preset
    if not p.run.dir:
        raise PrepError("set run.dir (the run folder)")
    paths = training.RunPaths(Path(p.run.dir).resolve())
    config = training.training_config(p, paths)
    dataset_toml = run_dataset_toml(p, preset_name)
    problems = interface.check_training_config(config) + interface.check_dataset_config(tomllib.loads(dataset_toml))
    if problems:
        raise PrepError("the trainer would not take this run:\n  " + "\n  ".join(problems))
    paths.root.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.train_toml, training.training_toml(p, paths, preset_name))
    write_atomic(paths.dataset_toml, dataset_toml)
    write_atomic(paths.lycoris_preset, preset_file(p.network.preset).read_bytes())
    if p.samples.prompts:
        write_atomic(paths.prompts, preset_file(p.samples.prompts).read_bytes())
    rank = int(os.environ.get("MACHINE_RANK", p.launch.machine_rank))
    argv = training.launch_argv(p, paths, sd_scripts, rank, extra=list(extra_args))
    write_atomic(paths.command, training.command_script(argv, p.launch.machine_rank))
    paths.command.chmod(0o755)
    write_atomic(paths.root / "preset.toml", resolved.to_toml())
    write_atomic(paths.root / "plan.txt", plan_text(rp, p))
    write_atomic(paths.root / "versions.json", json.dumps(versions(sd_scripts), indent=2, sort_keys=True) + "\n")
    write_atomic(paths.root / resume.RUN_RECORD, json.dumps(run_record(p, sd_scripts), indent=2, sort_keys=True) + "\n")
    return argv


def run_preflight(p: Preset, rp: RunPlan, sd_scripts: Path) -> list[preflight.Check]:
    saves = len(rp.steps.save_points)
    size = rp.network.file_bytes(p.training.save_precision)
    return [
        preflight.check_sd_scripts(sd_scripts),
        *preflight.check_packages(p.optimizer.type),
        preflight.check_gpus(p),
        preflight.check_base_model(p),
        preflight.check_dataset(p),
        preflight.check_tokenizers(p),
        preflight.check_logging(p),
        preflight.check_disk(p, Path(p.run.dir or "."), saves, rp.network.params, size),
    ]
