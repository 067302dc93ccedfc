"""Preset -> the sd-scripts training TOML and the `accelerate launch` command. Pure builders.

The training TOML is read by sd-scripts' `--config_file`, which bypasses argparse: every value is
written in the Python type the trainer uses after parsing (see `kohaku_prep.interface`).
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from kohaku_prep import __version__
from kohaku_prep.preset import Preset
from kohaku_prep.tomlout import dumps

TRAIN_SCRIPT = "sdxl_train_network.py"
SWITCHES = {"--cpu", "--multi_gpu"}  # flags that take no value


@dataclass(frozen=True)
class PartPaths:
    """One launch's folder in the run folder: what the trainer reads for this part and what it writes."""

    root: Path

    @property
    def train_toml(self) -> Path:
        return self.root / "train.toml"

    @property
    def dataset_toml(self) -> Path:
        return self.root / "dataset.toml"

    @property
    def command(self) -> Path:
        return self.root / "command.sh"

    @property
    def images(self) -> Path:
        return self.root / "images"  # links to the dataset's images and captions, never copies

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def logging_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def done(self) -> Path:
        return self.root / "done.json"

    @property
    def attempt(self) -> Path:
        return self.root / "attempt.json"

    def end_state(self, output_name: str) -> Path:
        return self.output_dir / f"{output_name}-state"  # sd-scripts' --save_state_on_train_end

    def lokr(self, output_name: str) -> Path:
        return self.output_dir / f"{output_name}.safetensors"


@dataclass(frozen=True)
class RunPaths:
    """Where a run's files live; everything the trainer reads is copied or linked into the run folder."""

    root: Path

    @property
    def lycoris_preset(self) -> Path:
        return self.root / "lycoris_preset.toml"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.txt"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"  # the LoKr files under cumulative step names, and the final one

    @property
    def samples_dir(self) -> Path:
        return self.output_dir / "samples"  # every part's sample images, named by cumulative step

    @property
    def parts_table(self) -> Path:
        return self.root / "parts.json"

    def part(self, index: int) -> PartPaths:
        return PartPaths(self.root / "parts" / f"{index + 1:03d}")

    def lokr_at(self, output_name: str, step: int) -> Path:
        return self.output_dir / f"{output_name}-step{step:08d}.safetensors"

    def final_lokr(self, output_name: str) -> Path:
        return self.output_dir / f"{output_name}.safetensors"


@dataclass(frozen=True)
class PartLaunch:
    """What differs between the launches of a run."""

    paths: PartPaths
    seed: int
    resume: Path | None  # the previous part's end state; None for the first part
    sample: bool  # draw the sample images at this part's end


def _number(value: float) -> str:
    """10000.0 -> "10000", 0.5 -> "0.5": network_args values are strings to LyCORIS."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def network_args(p: Preset, paths: RunPaths) -> list[str]:
    """Only what is needed, and never a boolean false: LyCORIS reads any value but "false" as true."""
    n = p.network
    args = [f"algo={n.algo}", f"factor={n.factor}", f"conv_dim={n.conv_dim}", f"conv_alpha={_number(n.conv_alpha)}"]
    if n.dropout > 0:
        args.append(f"dropout={_number(n.dropout)}")
    if n.train_norm:
        args.append("train_norm=True")
    if n.preset:  # else LyCORIS's own default module selection
        args.append(f"preset={paths.lycoris_preset}")
    return args


def optimizer_args(p: Preset) -> list[str]:
    """Each value goes through ast.literal_eval in sd-scripts."""
    o = p.optimizer
    return [f"weight_decay={o.weight_decay!r}", f"betas=({', '.join(repr(b) for b in o.betas)})"]


def warmup_scheduler_steps(p: Preset) -> int:
    """sd-scripts steps its scheduler once per process per optimizer step (accelerate, no split_batches),
    and an integer --lr_warmup_steps counts scheduler steps: W optimizer steps need W x processes."""
    return p.schedule.warmup_optimizer_steps * p.launch.num_processes


def training_config(p: Preset, paths: RunPaths, part: PartLaunch) -> dict:
    """One part's --config_file: one epoch over the part's images, continuing the previous part's state.
    Its steps are counted from 0 (`initial_step = 0`: the state's own count would make the trainer skip or
    refuse), and its end state and LoKr are saved for the next part and the run's output."""
    t, n, o, s = p.training, p.network, p.optimizer, p.schedule
    config = {
        "pretrained_model_name_or_path": str(Path(p.model.pretrained).resolve()) if p.model.pretrained else "",
        "dataset_config": str(part.paths.dataset_toml),
        "output_dir": str(part.paths.output_dir),
        "output_name": p.saving.output_name,
        "save_model_as": "safetensors",
        "save_precision": t.save_precision,
        "network_module": n.module,
        "network_dim": n.dim,
        "network_alpha": float(n.alpha),
        "network_args": network_args(p, paths),
        "learning_rate": float(o.unet_lr),
        "unet_lr": float(o.unet_lr),
        "optimizer_type": o.type,
        "optimizer_args": optimizer_args(p),
        "max_grad_norm": float(o.max_grad_norm),
        "lr_scheduler": s.lr_scheduler,
        "lr_warmup_steps": warmup_scheduler_steps(p),  # an int: a float would mean a fraction of the run
        "gradient_accumulation_steps": s.gradient_accumulation_steps,
        "seed": part.seed,  # under DDP every rank must shuffle buckets alike
        "max_train_epochs": 1,  # the part's own epoch: exactly its batches, whatever they number
        "save_state_on_train_end": True,
        "mixed_precision": t.mixed_precision,  # the script's own: it overrides accelerate launch's
        "max_data_loader_n_workers": t.max_data_loader_n_workers,
        "logging_dir": str(part.paths.logging_dir),
        "log_with": p.logging.log_with,
        "log_tracker_name": p.saving.output_name,
    }
    if part.resume is not None:
        config.update({"resume": str(part.resume), "initial_step": 0})
    if n.train_text_encoder:
        config["text_encoder_lr"] = float(o.text_encoder_lr)  # one lr for both encoders in LyCORIS
    else:
        config["network_train_unet_only"] = True
    flags = {
        "full_fp16": t.full_fp16,
        "gradient_checkpointing": t.gradient_checkpointing,
        "ddp_gradient_as_bucket_view": p.launch.ddp_gradient_as_bucket_view,
        "xformers": t.attention == "xformers",
        "sdpa": t.attention == "sdpa",
        "mem_eff_attn": t.attention == "mem_eff_attn",
    }
    config.update({flag: True for flag, on in flags.items() if on})
    optional = {
        "vae": str(Path(p.model.vae).resolve()) if p.model.vae else None,
        "tokenizer_cache_dir": (str(Path(p.model.tokenizer_cache_dir).resolve())
                                if p.model.tokenizer_cache_dir else None),
        "min_snr_gamma": float(t.min_snr_gamma) if t.min_snr_gamma > 0 else None,
        "noise_offset": float(t.noise_offset) if t.noise_offset > 0 else None,
        "max_token_length": t.max_token_length if t.max_token_length != 75 else None,
        "ddp_timeout": p.launch.ddp_timeout_minutes or None,
        "wandb_run_name": p.logging.wandb_run_name or None,
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    if p.samples.prompts and part.sample:  # at the end of the part's one epoch
        config.update({"sample_prompts": str(paths.prompts), "sample_every_n_epochs": 1,
                       "sample_sampler": p.samples.sampler})
    return config


def training_toml(config: dict, preset_name: str, part: int, parts: int) -> str:
    header = (f"sd-scripts --config_file for {TRAIN_SCRIPT}, part {part} of {parts}, written by kohaku-prep "
              f"{__version__} from {preset_name}.\nValues bypass the trainer's argparse, so each is in the type the "
              "trainer uses.")
    return dumps(config, header)


def launch_argv(p: Preset, part: PartPaths, sd_scripts: Path, machine_rank: int | str,
                python: str = sys.executable) -> list[str]:
    """`accelerate launch` with every setting explicit, so no host default config can change the run."""
    la = p.launch
    argv = [python, "-m", "accelerate.commands.launch",
            "--num_processes", str(la.num_processes), "--num_machines", str(la.num_machines),
            "--machine_rank", str(machine_rank), "--main_process_ip", la.main_process_ip,
            "--main_process_port", str(la.main_process_port), "--mixed_precision", p.training.mixed_precision,
            "--dynamo_backend", "no", "--num_cpu_threads_per_process", "2"]
    if la.device == "cpu":
        argv.append("--cpu")
    elif la.num_processes > 1:
        argv.append("--multi_gpu")
    return argv + [str(sd_scripts / TRAIN_SCRIPT), "--config_file", str(part.train_toml)]


def command_script(argv: list[str], default_rank: int) -> str:
    """command.sh: the exact launch line; on each node of a multi-node run, set MACHINE_RANK."""
    words = [shlex.quote(a) for a in argv]
    words[argv.index("--machine_rank") + 1] = f'"${{MACHINE_RANK:-{default_rank}}}"'
    lines, i = [" ".join(words[:3])], 3  # python -m accelerate.commands.launch
    while i < len(words):
        pair = i + 1 < len(words) and argv[i].startswith("--") and argv[i] not in SWITCHES
        lines.append(" ".join(words[i:i + 2]) if pair else words[i])
        i += 2 if pair else 1
    return ("#!/usr/bin/env bash\n# written by kohaku-prep; the same command on every node, with its MACHINE_RANK\n"
            "set -euo pipefail\nexec " + " \\\n    ".join(lines) + "\n")
