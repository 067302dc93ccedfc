"""What a built dataset holds besides images and captions: layout, dataset TOML, manifest, stage table.

Pure builders: each returns text or a table; the build runner writes them.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.captions import KEEP_SEPARATOR
from kohaku_prep.preset import DatasetSection
from kohaku_prep.selection import Stage
from kohaku_prep.tomlout import dumps

CAPTION_EXTENSION = ".txt"  # sd-scripts' default is ".caption": left implicit it would train uncaptioned
IMAGES_DIR = "images"


def folder_of(post_id: int, ids_per_folder: int) -> str:
    """Subset folder of a post: its id range, so a post's place never depends on what else is selected."""
    return f"{IMAGES_DIR}/{post_id // ids_per_folder:05d}"


def image_paths(ids: np.ndarray, ext_codes: np.ndarray, extensions: list[str], ids_per_folder: int) -> pa.Array:
    """`folder_of(id)/<id>.<ext>` of every id, column-wise (millions of them)."""
    folders = pc.utf8_lpad(pa.array(ids // ids_per_folder).cast(pa.string()), 5, "0")
    ext = pa.array(extensions, pa.string()).take(pa.array(ext_codes))
    return pc.binary_join_element_wise(f"{IMAGES_DIR}/", folders, "/", pa.array(ids).cast(pa.string()), ".", ext,
                                       "")


def dataset_toml(ds: DatasetSection, image_dirs: list[Path], header: str = "") -> str:
    """The --dataset_config TOML: shared caption settings in [general], one subset per folder.

    Types follow sd-scripts' validator: float keys get floats, resolution an integer.
    """
    general = {
        "caption_extension": CAPTION_EXTENSION,
        "keep_tokens_separator": KEEP_SEPARATOR,
        "shuffle_caption": ds.shuffle_caption,
        "caption_tag_dropout_rate": float(ds.caption_tag_dropout_rate),
        "num_repeats": ds.num_repeats,
    }
    dataset = {
        "resolution": ds.resolution,
        "enable_bucket": ds.enable_bucket,
        "min_bucket_reso": ds.min_bucket_reso,
        "max_bucket_reso": ds.max_bucket_reso,
        "bucket_reso_steps": ds.bucket_reso_steps,
        "batch_size": ds.batch_size,
        "subsets": [{"image_dir": str(d)} for d in image_dirs],
    }
    return dumps({"general": general, "datasets": [dataset]}, header)


MANIFEST_SCHEMA = pa.schema([
    ("id", pa.int64()), ("image", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("caption", pa.large_string()),
])


def stage_lines(stages: list[Stage]) -> list[str]:
    width = max(len(s.name) for s in stages)
    lines = [f"{'stage':<{width}}  {'kept':>11}  {'dropped':>11}  note"]
    for s in stages:
        lines.append(f"{s.name:<{width}}  {s.kept:>11,}  {s.dropped:>11,}  {s.note}".rstrip())
    return lines


def value_counts(values: pa.Array) -> Counter:
    """Counts of each value, nulls under None."""
    return Counter({row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()})
