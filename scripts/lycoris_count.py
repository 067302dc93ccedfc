#!/usr/bin/env python
"""Build the real LyCORIS LoKr network of the Kohaku XL Delta/Epsilon preset on sd-scripts' SDXL modules
and print its parameter counts as JSON.

Run with the trainer venv (torch, transformers, lycoris-lora, the sd-scripts requirements):

    /work/trainer-venv/bin/python scripts/lycoris_count.py --sd-scripts third_party/sd-scripts

The UNet and both text encoders are built on the meta device exactly as sd-scripts builds them (see
snapshot_sdxl_modules.py). The network is created with `lycoris.kohya.create_network` with the same
arguments sd-scripts v0.10.1's train_network.py passes for

    --network_module lycoris.kohya --network_dim 10000 --network_alpha 10000
    --network_args algo=lokr factor=8 conv_dim=10000 conv_alpha=10000 dropout=0 train_norm=True preset=<file>

(network_args values arrive as strings; network_dim is an int and network_alpha a float, as argparse
makes them), then `apply_to(text_encoders, unet, train_text_encoder, True)` as the trainer does. The
preset file and the arguments can be changed with --preset, --network-args, --dim, --alpha, --unet-only. By default the
LyCORIS parameters are created on the meta device too (nothing is allocated); `--materialize` creates
them on the CPU (~1.5 GB fp32), and `--save FILE` additionally writes the real fp16 safetensors file with
the network's own save_weights (training metadata of sd-scripts is not included) and reports its size.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.metadata
import json
import os
import sys

NETWORK_ARGS = "algo=lokr factor=8 conv_dim=10000 conv_alpha=10000 dropout=0 train_norm=True"
SAFETENSORS_DTYPE_BYTES = 2  # --save_precision fp16


def _safetensors_header_len(shapes: dict[str, list[int]], dtype: str = "F16", nbytes: int = 2, metadata=None) -> int:
    """Length of the safetensors header (8-byte length prefix + JSON padded to 8) for these tensors."""
    # safetensors sorts by dtype alignment, then name; offsets follow that order.
    off = 0
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(shapes):
        n = nbytes
        for d in shapes[name]:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shapes[name]), "data_offsets": [off, off + n]}
        off += n
    js = json.dumps(header, separators=(",", ":"))
    ln = len(js.encode())
    ln += (-ln) % 8
    return 8 + ln


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sd-scripts", default="third_party/sd-scripts")
    ap.add_argument("--preset", default="presets/lycoris/delta_lokr.toml",
                    help="the LyCORIS preset file; '' for none (LyCORIS's default)")
    ap.add_argument("--network-args", default=NETWORK_ARGS, help="--network_args, space-separated, without preset")
    ap.add_argument("--dim", type=int, default=10000, help="--network_dim (argparse makes it an int)")
    ap.add_argument("--alpha", type=float, default=10000.0, help="--network_alpha (argparse makes it a float)")
    ap.add_argument("--unet-only", action="store_true", help="as --network_train_unet_only")
    ap.add_argument("--materialize", action="store_true", help="create LyCORIS params on CPU, not meta")
    ap.add_argument("--save", metavar="FILE", help="write the real fp16 .safetensors (implies --materialize)")
    ap.add_argument("--no-modules", action="store_true", help="omit the per-module list from the output")
    args = ap.parse_args(argv)
    if args.save:
        args.materialize = True

    # LyCORIS logs to stdout; keep stdout for the JSON result only.
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import logging

    import torch
    from snapshot_sdxl_modules import build_models

    unet, te1, te2 = build_models(args.sd_scripts)

    import lycoris.kohya as lk
    from lycoris import wrapper as lw
    from lycoris.modules.lokr import LokrModule
    from lycoris.modules.norms import NormModule

    for name in ("LyCORIS", "lycoris"):
        logging.getLogger(name).setLevel(logging.WARNING)

    # Record the kwargs each LoKr module is constructed with (factor is not stored on the module).
    seen_factor = {}
    orig_cls = lw.network_module_dict["lokr"]

    def recording_lokr(lora_name, *a, **kw):
        seen_factor[lora_name] = int(kw.get("factor", -1))
        return orig_cls(lora_name, *a, **kw)

    lw.network_module_dict["lokr"] = recording_lokr

    net_kwargs = {}
    for net_arg in args.network_args.split() + ([f"preset={args.preset}"] if args.preset else []):
        k, v = net_arg.split("=", 1)
        net_kwargs[k] = v

    ctx = contextlib.nullcontext() if args.materialize else torch.device("meta")
    text_encoders = [te1, te2]
    with ctx:
        # the call train_network.py (v0.10.1) makes: create_network(1.0, dim, alpha, vae, text_encoder, unet,
        # neuron_dropout=args.network_dropout, **net_kwargs)
        network = lk.create_network(
            1.0, args.dim, args.alpha, None, text_encoders, unet, neuron_dropout=None, **net_kwargs
        )
        network.apply_to(text_encoders, unet, not args.unet_only, True)
    lw.network_module_dict["lokr"] = orig_cls

    where = {}
    for key, model in (("unet", unet), ("te1", te1), ("te2", te2)):
        for n, m in model.named_modules():
            where[id(m)] = (key, n, type(m).__name__)

    totals: collections.Counter[str] = collections.Counter()
    tensors_by_model: collections.Counter[str] = collections.Counter()
    modules_by: collections.defaultdict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    full_matrix_all = True
    module_list = []
    shapes = {}
    sd = network.state_dict()
    for lora in network.loras:
        key, oname, ocls = where[id(lora.org_module[0])]
        nparams = sum(p.numel() for p in lora.parameters())
        totals[key] += nparams
        if isinstance(lora, LokrModule):
            fac = seen_factor[lora.lora_name]
            kind = f"lokr/factor={fac}"
            full = bool(lora.use_w1 and lora.use_w2)
            full_matrix_all &= full
        elif isinstance(lora, NormModule):
            fac, full = None, None
            kind = "norm"
        else:
            fac, full = None, None
            kind = type(lora).__name__
        modules_by[key][kind] += 1
        own = {k: list(v.shape) for k, v in sd.items() if k.startswith(lora.lora_name + ".")}
        tensors_by_model[key] += len(own)
        shapes.update(own)
        module_list.append(
            {
                "lora_name": lora.lora_name,
                "module": f"{key}:{oname}",
                "cls": ocls,
                "shape": list(lora.shape),
                "algo": kind,
                "params": nparams,
                "tensors": {k.split(".", 1)[1]: v for k, v in own.items()},
            }
        )

    assert set(shapes) == set(sd), "state_dict has tensors outside the LyCORIS modules"
    n_elems = 0
    for s in shapes.values():
        n = 1
        for d in s:
            n *= d
        n_elems += n
    total_params = sum(totals.values())
    assert total_params == sum(p.numel() for p in network.parameters())
    header = _safetensors_header_len(shapes)
    out = {
        "lycoris_version": importlib.metadata.version("lycoris-lora"),
        "torch": torch.__version__,
        "device": "cpu" if args.materialize else "meta",
        "total_params": total_params,
        "params_by_model": dict(totals),
        "modules_by_model": {k: dict(v) for k, v in modules_by.items()},
        "num_modules": len(network.loras),
        "all_lokr_full_matrix": full_matrix_all,
        "state_dict": {
            "num_tensors": len(sd),
            "tensors_by_model": dict(tensors_by_model),
            "num_elements": n_elems,  # = params + one 0-dim `alpha` buffer per LoKr module
            "fp16_tensor_bytes": 2 * n_elems,
            "header_bytes_without_metadata": header,
            "fp16_file_bytes_without_metadata": 2 * n_elems + header,
        },
    }
    if args.save:
        network.save_weights(args.save, torch.float16, {})
        from safetensors import safe_open

        with open(args.save, "rb") as f:
            hlen = int.from_bytes(f.read(8), "little")
        with safe_open(args.save, "pt") as f:
            meta = f.metadata()
        out["saved"] = {
            "path": args.save,
            "bytes": os.path.getsize(args.save),
            "header_json_bytes": hlen,
            "metadata_keys": sorted(meta or {}),
            "predicted_header_with_this_metadata": _safetensors_header_len(shapes, metadata=meta),
        }
    if not args.no_modules:
        out["modules"] = module_list
    sys.stdout.flush()
    with os.fdopen(result_fd, "w") as result:
        result.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
