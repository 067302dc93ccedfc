"""The dataset format: what the dataset half writes and the training half reads.

A built dataset is `images/NNNNN/<id>.<ext>` with `<id>.txt` beside each image, the dataset TOML for
sd-scripts, and `manifest.parquet` (one row per image written). Pure: names, rules and builders only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.preset import DatasetSection
from kohaku_prep.tomlout import dumps

CAPTION_EXTENSION = ".txt"  # sd-scripts' default is ".caption": left implicit it would train uncaptioned
KEEP_SEPARATOR = "|||"  # sd-scripts keeps the tags before it in place and shuffles and drops only those after
IMAGES_DIR = "images"
SUBSET_DIGITS = 5  # subset folders are the post id // ids_per_folder, zero-padded to this width


def subset_folder(folder: int) -> str:
    """The subset folder of index `folder` (= post id // ids_per_folder): a post's place never depends on
    what else is selected."""
    return f"{IMAGES_DIR}/{folder:0{SUBSET_DIGITS}d}"


def image_paths(ids: np.ndarray, ext_codes: np.ndarray, extensions: list[str], ids_per_folder: int) -> pa.Array:
    """`subset_folder(id // ids_per_folder)/<id>.<ext>` of every id, column-wise (millions of them)."""
    folders = pc.utf8_lpad(pa.array(ids // ids_per_folder).cast(pa.string()), SUBSET_DIGITS, "0")
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
