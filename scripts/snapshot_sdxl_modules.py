#!/usr/bin/env python
"""Snapshot the module trees of sd-scripts' SDXL models (UNet + both text encoders).

Run with the trainer venv (torch, transformers, accelerate, the sd-scripts requirements):

    /work/trainer-venv/bin/python scripts/snapshot_sdxl_modules.py \
        --sd-scripts third_party/sd-scripts --out kohaku_prep/data/sdxl_modules.json

The models are built exactly as sd-scripts' library/sdxl_model_util.load_models_from_sdxl_checkpoint
builds them (SdxlUNet2DConditionModel(); CLIPTextModel._from_config(cfg1);
CLIPTextModelWithProjection(cfg2)), under accelerate.init_empty_weights(), so every parameter lives on
the meta device and no weights are read or allocated.

The output lists, per model, every module in `named_modules()` order (the pre-order walk that LyCORIS
itself does), one JSON object per line, with sorted keys:

    name   full dotted module path ("" is the model itself)
    cls    the exact class name (what LyCORIS compares against *_target_module / module_algo_map)
    base   the torch.nn class it is an instance of, when that differs from cls (e.g. GroupNorm32 -> GroupNorm)
    Linear:     in, out, bias
    Conv1d/2d/3d: in, out, k, stride, padding, dilation, groups, bias
    LayerNorm:  shape, affine, bias
    GroupNorm:  groups, ch, affine
    Embedding:  num, dim

Parent classes are not repeated per line: a module's ancestors are the modules whose names are proper
dotted prefixes of its name, each listed with its class.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SCHEMA = 1


def _describe(name, module, nn):
    rec = {"name": name, "cls": type(module).__name__}
    base = None
    if isinstance(module, nn.Linear):
        base = "Linear"
        rec.update(
            {"in": module.in_features, "out": module.out_features, "bias": module.bias is not None}
        )
    elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        base = next(c.__name__ for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d) if isinstance(module, c))
        rec.update(
            {
                "in": module.in_channels,
                "out": module.out_channels,
                "k": list(module.kernel_size),
                "stride": list(module.stride),
                "padding": list(module.padding) if not isinstance(module.padding, str) else module.padding,
                "dilation": list(module.dilation),
                "groups": module.groups,
                "bias": module.bias is not None,
            }
        )
    elif isinstance(module, nn.LayerNorm):
        base = "LayerNorm"
        rec.update(
            {
                "shape": list(module.normalized_shape),
                "affine": bool(module.elementwise_affine),
                "bias": module.bias is not None,
            }
        )
    elif isinstance(module, nn.GroupNorm):
        base = "GroupNorm"
        rec.update({"groups": module.num_groups, "ch": module.num_channels, "affine": bool(module.affine)})
    elif isinstance(module, nn.Embedding):
        base = "Embedding"
        rec.update({"num": module.num_embeddings, "dim": module.embedding_dim})
    if base is not None and base != rec["cls"]:
        rec["base"] = base
    return rec


def clip_config(hidden: int, intermediate: int, layers: int, heads: int, act: str):
    """The CLIP text encoder config sd-scripts builds for SDXL (library/sdxl_model_util.py)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-05,
        dropout=0.0, attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, model_type="clip_text_model", projection_dim=hidden,
    )


def build_models(sd_scripts: str):
    sys.path.insert(0, os.path.abspath(sd_scripts))
    import torch  # noqa: F401
    from accelerate import init_empty_weights
    from library import sdxl_original_unet
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    # Same constructors and configs as library/sdxl_model_util.py (v0.10.1) load_models_from_sdxl_checkpoint.
    with init_empty_weights():
        unet = sdxl_original_unet.SdxlUNet2DConditionModel()

    with init_empty_weights():
        te1 = CLIPTextModel._from_config(clip_config(768, 3072, 12, 12, "quick_gelu"))
        te2 = CLIPTextModelWithProjection(clip_config(1280, 5120, 32, 20, "gelu"))

    for m in (unet, te1, te2):
        for p in m.parameters():
            assert p.device.type == "meta", "a parameter was materialized"
    return unet, te1, te2


def snapshot(sd_scripts: str) -> dict:
    unet, te1, te2 = build_models(sd_scripts)
    import torch
    import torch.nn as nn
    import transformers

    try:
        commit = subprocess.run(
            ["git", "-C", sd_scripts, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # not a git checkout
        commit = None

    models = {}
    for key, model, lora_prefix in (("unet", unet, "lora_unet"), ("te1", te1, "lora_te1"), ("te2", te2, "lora_te2")):
        mods = [_describe(n, m, nn) for n, m in model.named_modules()]
        models[key] = {
            "class": type(model).__name__,
            "lora_prefix": lora_prefix,
            "num_params": sum(p.numel() for p in model.parameters()),
            "modules": mods,
        }
        if key != "unet":
            attn = model.text_model.encoder.layers[0].self_attn
            models[key]["attn_class"] = type(attn).__name__
            models[key]["attn_implementation"] = getattr(model.config, "_attn_implementation", None)

    return {
        "schema": SCHEMA,
        "source": {
            "sd_scripts_commit": commit,
            "unet": "library/sdxl_original_unet.SdxlUNet2DConditionModel()",
            "te1": "transformers.CLIPTextModel._from_config(cfg1)",
            "te2": "transformers.CLIPTextModelWithProjection(cfg2)",
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
        },
        "order": "named_modules() pre-order, as LyCORIS walks it",
        "models": models,
    }


def dumps(data: dict) -> str:
    """Compact, deterministic JSON with one module record per line."""

    def c(obj) -> str:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def block(opening: str, lines: list[str], closing: str) -> str:
        return opening + "\n" + ",\n".join(lines) + "\n" + closing

    def field(name: str, value) -> str:
        return block(f"{c(name)}:[", [c(r) for r in value], "]") if name == "modules" else f"{c(name)}:{c(value)}"

    def model(name: str, fields: dict) -> str:
        return block(f"{c(name)}:{{", [field(f, fields[f]) for f in sorted(fields)], "}")

    top = [block(f"{c(k)}:{{", [model(m, data[k][m]) for m in sorted(data[k])], "}") if k == "models"
           else f"{c(k)}:{c(data[k])}" for k in sorted(data)]
    return block("{", top, "}") + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sd-scripts", required=True, help="path to the sd-scripts checkout (v0.10.1)")
    ap.add_argument("--out", required=True, help="output JSON path")
    args = ap.parse_args(argv)

    text = dumps(snapshot(args.sd_scripts))
    json.loads(text)  # self-check
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(text.encode())} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
