"""LoKr parameter count and file size of a LyCORIS preset over SDXL, without torch or weights.

Mirrors how lycoris-lora 4.x (`lycoris.kohya`) picks modules and shapes LoKr weights, walking the
module table of sd-scripts' SDXL UNet and text encoders in `data/sdxl_modules.json` (made by
scripts/snapshot_sdxl_modules.py from the pinned sd-scripts). Integration tests compare the result
with LyCORIS itself building the network.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kohaku_prep.errors import PrepError

MODULES_FILE = Path(__file__).resolve().parents[1] / "data" / "sdxl_modules.json"
SUPPORTED_PRESET_KEYS = {"enable_conv", "unet_target_module", "unet_target_name", "text_encoder_target_module",
                         "text_encoder_target_name", "module_algo_map"}
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "float": 4}


@dataclass
class NetworkArgs:
    """What sd-scripts hands LyCORIS: --network_dim/--network_alpha and the --network_args."""

    dim: int
    factor: int
    conv_dim: int
    train_norm: bool
    train_text_encoder: bool


@dataclass
class Module:
    model: str  # unet, te1, te2
    name: str  # the original module's name
    kind: str  # "lokr" or "norm"
    factor: int | None
    tensors: dict[str, tuple[int, ...]]  # saved tensor suffix -> shape
    rule: str = "network"  # whose values it takes: "module_algo_map.<class>" of the LyCORIS preset, or "network"

    @property
    def params(self) -> int:
        """Trainable elements (the 0-dim alpha buffer is saved but not trained)."""
        return sum(math.prod(s) for k, s in self.tensors.items() if k != "alpha")


@dataclass
class NetworkPlan:
    modules: list[Module] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(m.params for m in self.modules)

    def params_by_model(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.modules:
            out[m.model] = out.get(m.model, 0) + m.params
        return out

    def by_rule(self) -> list[tuple[str, int, int, list[int]]]:
        """(rule, modules, parameters, factors used) per rule, preset rules first."""
        groups: dict[str, tuple[int, int, set]] = {}
        for m in self.modules:
            rule = "network.train_norm" if m.kind == "norm" else m.rule
            count, params, factors = groups.get(rule, (0, 0, set()))
            groups[rule] = (count + 1, params + m.params, factors | ({m.factor} if m.factor else set()))
        order = sorted(groups, key=lambda r: (not r.startswith("module_algo_map"), r))
        return [(r, groups[r][0], groups[r][1], sorted(groups[r][2])) for r in order]

    def file_bytes(self, precision: str = "fp16") -> int:
        """Size of the saved safetensors file, before sd-scripts' training metadata."""
        nbytes = DTYPE_BYTES[precision]
        dtype = {"fp16": "F16", "bf16": "BF16", "float": "F32"}[precision]
        shapes = {f"{lora_name(m)}.{suffix}": shape for m in self.modules for suffix, shape in m.tensors.items()}
        header, offset = {}, 0
        for name in sorted(shapes):
            size = nbytes * math.prod(shapes[name])
            header[name] = {"dtype": dtype, "shape": list(shapes[name]), "data_offsets": [offset, offset + size]}
            offset += size
        text = len(json.dumps(header, separators=(",", ":")).encode())
        return 8 + text + (-text) % 8 + offset


PREFIXES = {"unet": "lora_unet", "te1": "lora_te1", "te2": "lora_te2"}


def lora_name(m: Module) -> str:
    return f"{PREFIXES[m.model]}_{m.name.replace('.', '_')}"


@lru_cache(maxsize=1)
def sdxl_modules() -> dict:
    return json.loads(MODULES_FILE.read_text())


def factorization(dim: int, factor: int) -> tuple[int, int]:
    """LyCORIS's split of a dimension into (small, large) for the Kronecker product."""
    if factor > 0 and dim % factor == 0:
        small, large = sorted((factor, dim // factor))
        return small, large
    if factor < 0:
        factor = dim
    m, n = 1, dim
    while m < n:
        m2 = m + 1
        while dim % m2:
            m2 += 1
        if m2 > factor:
            break
        m, n = m2, dim // m2
    small, large = sorted((m, n))
    return small, large


def lokr_tensors(out_dim: int, in_dim: int, kernel: tuple[int, ...], dim: int, factor: int) -> dict:
    """Saved tensors of one LoKr module (no decompose_both, no Tucker: the preset's setting)."""
    in_m, in_n = factorization(in_dim, factor)
    out_l, out_k = factorization(out_dim, factor)
    tensors = {"alpha": (), "lokr_w1": (out_l, in_m)}
    if dim >= max(out_k, in_n) / 2:  # "full matrix": w2 is not decomposed and alpha has no effect
        tensors["lokr_w2"] = (out_k, in_n, *kernel)
    else:
        tensors["lokr_w2_a"] = (out_k, dim)
        tensors["lokr_w2_b"] = (dim, in_n * math.prod(kernel))
    return tensors


# LyCORIS's own default when no preset is given (lycoris-lora 4.1.3, config.py "full"), the classes and names
# that matter for SDXL; its names are diffusers', so none of them matches sd-scripts' SDXL modules
LYCORIS_DEFAULT_PRESET = {
    "enable_conv": True,
    "unet_target_module": ["Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"],
    "unet_target_name": ["conv_in", "conv_out", "time_embedding.linear_1", "time_embedding.linear_2"],
    "text_encoder_target_module": ["CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"],
    "text_encoder_target_name": [],
}


def read_lycoris_preset(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            preset = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PrepError(f"{path}: cannot read the LyCORIS preset ({exc})") from None
    unknown = set(preset) - SUPPORTED_PRESET_KEYS - {"text_encoder_target_name", "name_algo_map"}
    if unknown or preset.get("name_algo_map"):
        raise PrepError(f"{path}: the plan cannot size presets using {sorted(unknown) or ['name_algo_map']}")
    for cfg in preset.get("module_algo_map", {}).values():
        if cfg.get("algo", "lokr") != "lokr":
            raise PrepError(f"{path}: the plan sizes LoKr only, not algo '{cfg['algo']}'")
    return preset


def plan_network(preset: dict, args: NetworkArgs) -> NetworkPlan:
    plan = NetworkPlan()
    for model in ["te1", "te2", "unet"] if args.train_text_encoder else ["unet"]:
        plan.modules.extend(plan_model(preset, args, model))
    return plan


def plan_model(preset: dict, args: NetworkArgs, model: str) -> list[Module]:
    """The modules LyCORIS creates in one of the three models, in its order."""
    algo_map = preset.get("module_algo_map", {})
    conv_dim = args.conv_dim if preset.get("enable_conv", True) else 0
    prefix = "text_encoder" if model.startswith("te") else "unet"
    targets = set(preset.get(f"{prefix}_target_module", []))
    patterns = [re.compile(p) for p in preset.get(f"{prefix}_target_name", [])]
    mods = sdxl_modules()["models"][model]["modules"]
    created: set[str] = set()
    planned: list[Module] = []

    def single(m: dict, cls: str | None) -> None:
        cfg = algo_map.get(cls, {})
        rule = f"module_algo_map.{cls}" if cfg else "network"
        if m["name"] in created:
            return
        cls, base = m["cls"], m.get("base", m["cls"])
        factor = cfg.get("factor", args.factor)
        if args.train_norm and "Norm" in cls:
            width = m["shape"][0] if "shape" in m else m["ch"]
            planned.append(Module(model, m["name"], "norm", None, {"w_norm": (width,), "b_norm": (width,)}))
        elif base == "Linear" and args.dim > 0:
            planned.append(Module(model, m["name"], "lokr", factor, lokr_tensors(
                m["out"], m["in"], (), cfg.get("dim", args.dim), factor), rule))
        elif base == "Conv2d":
            kernel = tuple(m["k"])
            if kernel[0] == 1 and args.dim > 0:
                dim = cfg.get("dim", args.dim)
            elif conv_dim > 0 or "dim" in cfg:
                dim = cfg.get("dim", conv_dim)
            else:
                return
            planned.append(Module(model, m["name"], "lokr", factor, lokr_tensors(
                m["out"], m["in"] // m.get("groups", 1), kernel, dim, factor), rule))
        else:
            return
        created.add(m["name"])

    def subtree_end(i: int) -> int:
        root, j = mods[i]["name"], i + 1
        while j < len(mods) and (root == "" or mods[j]["name"].startswith(root + ".")):
            j += 1
        return j

    def block(i: int, cls: str) -> None:
        j, end = i + 1, subtree_end(i)
        while j < end:
            if mods[j]["cls"] in algo_map:
                block(j, mods[j]["cls"])
                j = subtree_end(j)
            else:
                single(mods[j], cls)
                j += 1

    for i, m in enumerate(mods):
        matched = any(p.match(m["name"]) for p in patterns)
        if m["cls"] in targets and not matched:
            block(i, m["cls"])
        elif matched:
            single(m, m["cls"])
    return planned
