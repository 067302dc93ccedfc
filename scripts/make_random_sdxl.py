#!/usr/bin/env python
"""Write a randomly initialised SDXL checkpoint with sd-scripts' own model code (no download exists here).

The architecture, and so the cost of a training step, is the real one; only the weights are random.
Run with the trainer's Python (make setup-train):

    python scripts/make_random_sdxl.py --sd-scripts third_party/sd-scripts --out build/smoke/random_sdxl.safetensors

Each model is cast to fp16 right after it is built, and saved without a save dtype (which would make
a second full copy): about 14 GB peak, 2 minutes on 2 cores, a 6.9 GB file.
"""
from __future__ import annotations

import argparse
import math
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sd-scripts", default="third_party/sd-scripts")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.sd_scripts))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    import torch
    from diffusers import AutoencoderKL
    from library import model_util, sdxl_model_util, sdxl_original_unet
    from snapshot_sdxl_modules import clip_config
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(args.seed)
    unet = sdxl_original_unet.SdxlUNet2DConditionModel().half()
    te1 = CLIPTextModel(clip_config(768, 3072, 12, 12, "quick_gelu")).half()
    te2 = CLIPTextModelWithProjection(clip_config(1280, 5120, 32, 20, "gelu")).half()
    vae = AutoencoderKL(**model_util.create_vae_diffusers_config()).half()
    logit_scale = torch.tensor(math.log(100.0), dtype=torch.float16)  # CLIP's trained value, as the real one has

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out.removesuffix(".safetensors") + ".partial.safetensors"  # sd-scripts picks the format by suffix
    sdxl_model_util.save_stable_diffusion_checkpoint(tmp, te1, te2, unet, 0, 0, None, vae, logit_scale, {})
    os.replace(tmp, args.out)
    print(f"{args.out}: {os.path.getsize(args.out) / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
