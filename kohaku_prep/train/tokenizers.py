"""An offline cache of SDXL's two CLIP tokenizers for sd-scripts' --tokenizer_cache_dir.

Both SDXL text encoders use CLIP's byte-level BPE (49,408 tokens). Its merges ship inside the
open-clip-torch wheel (bpe_simple_vocab_16e6.txt.gz); the vocabulary follows from them: the 256 byte
symbols, the same with the end-of-word mark, one token per merge, then the two special tokens.
sd-scripts loads each folder with transformers' CLIPTokenizer.from_pretrained.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from kohaku_prep.errors import PrepError
from kohaku_prep.fsutil import OwnedFiles

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # CLIP keeps the first merges so that the vocabulary has 49,408 tokens
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# folder names sd-scripts derives from the hub ids (the "/" replaced by "_"), and each one's pad token
FOLDERS = {"openai_clip-vit-large-patch14": EOS, "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k": "!"}


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the rest
    are moved past 255, in that order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(moved))]


def find_bpe() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it (and torch)
    if spec is None or not spec.submodule_search_locations:
        raise PrepError("open-clip-torch is not installed: pip install --no-deps open-clip-torch, or pass --bpe FILE")
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    if not path.is_file():
        raise PrepError(f"{path}: not found in the installed open-clip-torch")
    return path


def vocabulary(bpe: Path) -> tuple[dict[str, int], list[str]]:
    try:
        lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    except (OSError, EOFError) as exc:
        raise PrepError(f"{bpe}: not a gzipped CLIP BPE file ({exc})") from None
    merges = lines[1:1 + MERGES]  # the first line is a version header
    if len(merges) != MERGES or any(len(m.split()) != 2 for m in merges):
        raise PrepError(f"{bpe}: expected {MERGES:,} merges of two symbols")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise PrepError(f"{bpe}: its merges repeat tokens; not CLIP's BPE")
    return vocab, merges


def write_cache(folder: Path, bpe: Path) -> list[Path]:
    vocab, merges = vocabulary(bpe)
    files = {}
    for name, pad in FOLDERS.items():
        special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad}
        config = {**special, "model_max_length": 77, "do_lower_case": True, "errors": "replace",
                  "add_prefix_space": False, "tokenizer_class": "CLIPTokenizer"}
        files[f"{name}/vocab.json"] = json.dumps(vocab, ensure_ascii=False)
        files[f"{name}/merges.txt"] = "#version: 0.2\n" + "\n".join(merges) + "\n"
        files[f"{name}/special_tokens_map.json"] = json.dumps(special, indent=2, sort_keys=True) + "\n"
        files[f"{name}/tokenizer_config.json"] = json.dumps(config, indent=2, sort_keys=True) + "\n"
    OwnedFiles(folder, "tokenizer folder").write_all(files)
    return [folder / name for name in FOLDERS]
