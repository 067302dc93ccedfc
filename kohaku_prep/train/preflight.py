"""Checks before an expensive launch. Each check gives one line; a run starts only when none fails.

Checks read the world (files, installed packages, GPUs, disk) but change nothing.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import random
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from kohaku_prep import SD_SCRIPTS_COMMIT, SD_SCRIPTS_TAG, trainer_values
from kohaku_prep.dataset_format import KEEP_SEPARATOR
from kohaku_prep.preset import Preset

BNB_BROKEN = ((0, 36, 0), (0, 41, 0))  # 8-bit optimizer bugs, fixed in 0.41.1
BNB_LION_MIN = (0, 38, 0)  # first release with Lion8bit
TOKENIZERS = ("openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts + [0] * (3 - len(parts)))


def sd_scripts_commit(checkout: Path) -> str | None:
    """The checkout's own commit; None when the folder is not the top of a git checkout itself (an empty
    submodule folder or a copied tree would otherwise report the enclosing repository's commit)."""
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True)
    except OSError:
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or not checkout.is_dir():
        return None
    top, commit = lines
    return commit if Path(top).resolve() == checkout.resolve() else None


def check_sd_scripts(checkout: Path) -> Check:
    if not (checkout / "sdxl_train_network.py").is_file():
        return Check("sd-scripts", False, f"no checkout at {checkout} (make setup-train, or KOHAKU_SD_SCRIPTS=PATH)")
    commit = sd_scripts_commit(checkout)
    if commit != SD_SCRIPTS_COMMIT:
        at = commit or "an unknown commit (not a git checkout of its own)"
        return Check("sd-scripts", False, f"{checkout} is at {at}, "
                                          f"not {SD_SCRIPTS_TAG} ({SD_SCRIPTS_COMMIT[:8]}) that this tool emits for")
    return Check("sd-scripts", True, f"{checkout} at {SD_SCRIPTS_TAG} ({commit[:8]})")


def check_packages(optimizer_type: str) -> list[Check]:
    checks = []
    for module, dist in (("torch", "torch"), ("accelerate", "accelerate"), ("lycoris", "lycoris-lora")):
        if importlib.util.find_spec(module) is None:
            checks.append(Check(dist, False, "not installed (make setup-train)"))
        else:
            checks.append(Check(dist, True, importlib.metadata.version(dist)))
    if trainer_values.uses_bitsandbytes(optimizer_type):
        checks.append(check_bitsandbytes(optimizer_type))
    return checks


def check_bitsandbytes(optimizer_type: str, installed: str | None = None) -> Check:
    if installed is None:
        try:
            installed = importlib.metadata.version("bitsandbytes")
        except importlib.metadata.PackageNotFoundError:
            return Check("bitsandbytes", False, f"not installed; {optimizer_type} needs it (make setup-train)")
    v = _version(installed)
    if BNB_BROKEN[0] <= v <= BNB_BROKEN[1]:
        return Check("bitsandbytes", False, f"{installed} has the 8-bit optimizer bugs of 0.36.0-0.41.0 "
                                            "(fixed in 0.41.1): upgrade")
    if "lion" in optimizer_type.lower() and v < BNB_LION_MIN:
        return Check("bitsandbytes", False, f"{installed} has no Lion8bit (added in 0.38.0): upgrade")
    return Check("bitsandbytes", True, installed)


def check_gpus(p: Preset, count: int | None = None) -> Check:
    if p.launch.device == "cpu":
        return Check("GPUs", True, "none needed: launch.device = cpu")
    per_machine = -(-p.launch.num_processes // p.launch.num_machines)
    if count is None:
        try:
            import torch
            count = torch.cuda.device_count()
        except ImportError:
            count = 0
    if count < per_machine:
        return Check("GPUs", False, f"{count} visible, {per_machine} process(es) per machine asked "
                                    "(launch.num_processes / launch.num_machines)")
    return Check("GPUs", True, f"{count} visible for {per_machine} process(es) on this machine")


def safetensors_tensor_count(path: Path) -> int:
    """Tensors in a safetensors file, from its header alone; ValueError when it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError("too short")
        (length,) = struct.unpack("<Q", head)
        if length > 100_000_000 or length > path.stat().st_size:
            raise ValueError("header length out of range")
        header = json.loads(fh.read(length))
    return sum(1 for key in header if key != "__metadata__")


def check_base_model(p: Preset) -> Check:
    if not p.model.pretrained:
        return Check("base model", False, "model.pretrained is not set (model.pretrained=PATH.safetensors)")
    path = Path(p.model.pretrained)
    if not path.is_file():
        return Check("base model", False, f"{path}: no such file")
    try:
        tensors = safetensors_tensor_count(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return Check("base model", False, f"{path}: not a readable safetensors file ({exc})")
    return Check("base model", True, f"{path} ({tensors:,} tensors, {path.stat().st_size / 1e9:.2f} GB)")


def check_dataset(p: Preset, sample: int = 1000) -> Check:
    root = Path(p.run.dataset)
    if not p.run.dataset or not (root / "manifest.parquet").is_file() or not (root / "dataset.toml").is_file():
        return Check("dataset", False, f"{root}: not a built dataset (kohaku-prep dataset ... --out DIR)")
    manifest = pq.read_table(root / "manifest.parquet", columns=["image", "caption"])
    separators = pc.min_max(pc.count_substring(manifest["caption"], KEEP_SEPARATOR)).as_py()
    if separators != {"min": 1, "max": 1}:
        # with shuffle or tag dropout on (the preset insists on one), sd-scripts keeps what precedes it
        return Check("dataset", False, f"{root}: every caption must carry exactly one '{KEEP_SEPARATOR}'")
    images = manifest["image"].to_pylist()
    on_disk: set[str] = set()
    for folder in {Path(i).parent for i in images}:
        with os.scandir(root / folder) as entries:
            on_disk.update(f"{folder}/{e.name}" for e in entries)
    missing = [i for i in images if i not in on_disk or f"{i.rsplit('.', 1)[0]}.txt" not in on_disk]
    if missing:
        return Check("dataset", False, f"{root}: {len(missing):,} image(s) or caption(s) of the manifest are "
                                       f"missing, first {missing[0]}")
    rows = random.Random(0).sample(range(len(images)), min(sample, len(images)))
    for row in rows:
        caption_file = root / f"{images[row].rsplit('.', 1)[0]}.txt"
        if caption_file.read_text(encoding="utf-8") != manifest["caption"][row].as_py():
            return Check("dataset", False, f"{caption_file} differs from the manifest")
    return Check("dataset", True, f"{root}: {len(images):,} images with captions as the manifest says")


def check_tokenizers(p: Preset, hub_cache: Path | None = None, probe=None) -> Check:
    cache = p.model.tokenizer_cache_dir
    if cache:
        for repo in TOKENIZERS:
            config = Path(cache) / repo.replace("/", "_") / "tokenizer_config.json"
            try:
                max_length = json.loads(config.read_text()).get("model_max_length")
            except (OSError, ValueError):
                return Check("tokenizers", False, f"{config} missing or unreadable (kohaku-prep tokenizers {cache})")
            if max_length != 77:
                return Check("tokenizers", False, f"{config}: model_max_length is {max_length}, CLIP needs 77")
        return Check("tokenizers", True, f"offline cache {cache}")
    hub = hub_cache or Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache"
                                                                               / "huggingface")) / "hub"))
    if all((hub / f"models--{repo.replace('/', '--')}").is_dir() for repo in TOKENIZERS):
        return Check("tokenizers", True, f"in the hub cache {hub}")
    reachable = (probe or _hub_reachable)()
    if reachable:
        return Check("tokenizers", True, "will be downloaded from the hub")
    return Check("tokenizers", False, "not cached and the hub is unreachable: kohaku-prep tokenizers DIR, "
                                      "then model.tokenizer_cache_dir=DIR")


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def check_logging(p: Preset) -> Check:
    """TensorBoard needs nothing more; W&B needs its package and a key from the environment, never the command."""
    if p.logging.log_with == "tensorboard":
        return Check("logging", True, "TensorBoard in run.dir/logs")
    if importlib.util.find_spec("wandb") is None:
        return Check("logging", False, f"log_with = {p.logging.log_with} needs wandb: pip install wandb")
    netrc = Path.home() / ".netrc"
    if not os.environ.get("WANDB_API_KEY") and not (netrc.is_file() and "api.wandb.ai" in netrc.read_text()):
        return Check("logging", False, "W&B has no key: export WANDB_API_KEY (it is never written to the command)")
    return Check("logging", True, f"{p.logging.log_with}, key from the environment")


def state_bytes(lokr_params: int, p: Preset) -> int:
    """One saved state: the network (fp16 under full_fp16, else fp32) and the optimizer's state
    (about 1 byte a parameter for 8-bit optimizers, 4 for 32-bit Lion, 8 for AdamW)."""
    weights = 2 if p.training.full_fp16 else 4
    optimizer = 1 if trainer_values.is_8bit(p.optimizer.type) else (4 if "lion" in p.optimizer.type.lower() else 8)
    return lokr_params * (weights + optimizer)


def check_disk(p: Preset, run_dir: Path, saves: int, states: int, lokr_params: int, lokr_file: int,
               free: int | None = None) -> Check:
    needed = saves * lokr_file + states * state_bytes(lokr_params, p)
    where = run_dir if run_dir.exists() else run_dir.resolve().parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free if free is None else free
    detail = f"{needed / 1e9:.1f} GB for {saves} LoKr file(s) and {states} state(s), {free / 1e9:.1f} GB free"
    return Check("disk", free >= needed, detail)
