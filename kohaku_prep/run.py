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

import pyarrow.parquet as pq

from kohaku_prep import (SD_SCRIPTS_COMMIT, __version__, dataset_files, interface, lokr, plan, preflight, resume,
                         training)
from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import OwnedFiles
from kohaku_prep.preset import Preset, Resolved, find_file, to_dict
from kohaku_prep.tomlout import dumps

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_COMMIT = "unknown (not a git checkout of its own)"
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


def make_plan(p: Preset) -> RunPlan:
    manifest_path = Path(p.run.dataset) / "manifest.parquet"
    if not p.run.dataset or not manifest_path.is_file():
        raise PrepError(f"{p.run.dataset or 'run.dataset'}: not a built dataset (--dataset DIR, or run.dataset=DIR)")
    try:
        sizes = pq.read_table(manifest_path, columns=["width", "height"])
    except (OSError, ValueError) as exc:  # pyarrow's errors for a damaged file or a missing column
        raise PrepError(f"{manifest_path}: not a readable manifest ({str(exc).splitlines()[0]}); "
                        "build the dataset again") from None
    buckets = plan.bucket_counts(sizes["width"].to_numpy(), sizes["height"].to_numpy(), p.dataset)
    n = p.network
    args = lokr.NetworkArgs(n.dim, n.factor, n.conv_dim, n.train_norm, n.train_text_encoder)
    preset = lokr.read_lycoris_preset(preset_file(n.preset)) if n.preset else lokr.LYCORIS_DEFAULT_PRESET
    network = lokr.plan_network(preset, args)
    return RunPlan(plan.step_plan(buckets, p), network)


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
    return "\n".join(lines) + "\n"


def installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(sd_scripts: Path) -> dict[str, str]:
    out = {"kohaku-prep": __version__, "python": platform.python_version(),
           "sd-scripts": preflight.sd_scripts_commit(sd_scripts) or UNKNOWN_COMMIT,
           "sd-scripts pinned": SD_SCRIPTS_COMMIT}
    return out | {dist: installed_version(dist) for dist in VERSIONED}


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


def run_dataset_toml(p: Preset, preset_name: str) -> str:
    """The dataset TOML of the run: the built dataset's subset folders with the preset's [dataset] values,
    so that what trains is what the plan computed, even when the preset changed after the build."""
    built = tomllib.loads((Path(p.run.dataset) / "dataset.toml").read_text())
    image_dirs = [Path(s["image_dir"]) for d in built.get("datasets", []) for s in d.get("subsets", [])]
    header = f"sd-scripts --dataset_config, written by kohaku-prep {__version__} from {preset_name}"
    return dataset_files.dataset_toml(p.dataset, image_dirs, header)


def write_run_folder(resolved: Resolved, rp: RunPlan, sd_scripts: Path, preset_name: str,
                     extra_args: list[str] = ()) -> tuple[list[str], list[Path]]:
    """Write the run folder; returns the launch argv and the files written. Refuses anything the pinned
    trainer would not take, and any file in the way that this tool did not write."""
    p = resolved.preset
    if not p.run.dir:
        raise PrepError("set run.dir (the run folder: --run-dir DIR or run.dir=DIR)")
    paths = training.RunPaths(Path(p.run.dir).resolve())
    config = training.training_config(p, paths)
    dataset_toml = run_dataset_toml(p, preset_name)
    problems = interface.check_training_config(config) + interface.check_dataset_config(tomllib.loads(dataset_toml))
    if problems:
        raise PrepError("the trainer would not take this run:\n  " + "\n  ".join(problems))
    rank_text = os.environ.get("MACHINE_RANK", str(p.launch.machine_rank))
    if not rank_text.isdigit() or int(rank_text) >= p.launch.num_machines:
        raise PrepError(f"MACHINE_RANK={rank_text}: must be a machine number from 0 to {p.launch.num_machines - 1}")
    rank = int(rank_text)
    argv = training.launch_argv(p, paths, sd_scripts, rank, extra=list(extra_args))
    files = {
        paths.train_toml.name: training.training_toml(p, paths, preset_name),
        paths.dataset_toml.name: dataset_toml,
        paths.command.name: training.command_script(argv, p.launch.machine_rank),
        "preset.toml": resolved.to_toml(),
        "plan.txt": plan_text(rp, p),
        "versions.json": json.dumps(versions(sd_scripts), indent=2, sort_keys=True) + "\n",
        resume.RUN_RECORD: json.dumps(run_record(p, sd_scripts), indent=2, sort_keys=True) + "\n",
    }
    if p.network.preset:
        files[paths.lycoris_preset.name] = preset_file(p.network.preset).read_bytes()
    if p.samples.prompts:
        files[paths.prompts.name] = preset_file(p.samples.prompts).read_bytes()
    written = OwnedFiles(paths.root, "run.dir").write_all(files)
    paths.command.chmod(0o755)
    return argv, written


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
