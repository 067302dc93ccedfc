"""Helpers shared by the tests: the sample build, metadata writers for both shapes, and saved states."""
import filecmp
import importlib.util
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kohaku_prep.dataset import build, captions, metadata
from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.preset import PRESET_DIR, resolve

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
# One folder of golden files per shipped preset, named by its stem: adding a preset fails the tests until its
# goldens are written, and removing one fails them until its goldens go too.
PRESET_GOLDEN = GOLDEN / "presets"
PRESET_GOLDEN_FILES = ["launch.argv", "listing.txt", "resolved.toml", "train.toml"]
CATEGORIES = ["general", "character", "copyright", "artist", "meta"]
# CLIP's BPE file ships inside open-clip-torch, which `make setup` installs without its dependencies (torch):
# a plain `pip install -e '.[test]'` lacks it
needs_clip_bpe = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None,
                                    reason="open-clip-torch is not installed (make setup adds it): CLIP's BPE file")
SAMPLE_OVERRIDES = ["selection.pools.0.take=320", "selection.pools.1.take=650", "output.ids_per_folder=1000000"]


def resolve_sample(sample_root: Path, out: Path, shape: str = "flat", extra: Sequence[str] = ()):
    return resolve(PRESET_DIR / "epsilon.toml", None, [
        f'input.metadata="{sample_root / "metadata" / shape}"', f'input.images="{sample_root / "images"}"',
        f'output.dir="{out}"', *SAMPLE_OVERRIDES, *extra])


def build_sample(sample_root: Path, out: Path, shape: str = "flat", extra: Sequence[str] = (), force=False):
    resolved = resolve_sample(sample_root, out, shape, extra)
    return build.build_dataset(resolved, force, lambda line: None)


def flat_post(id, created_at, rating, fav, general="", character="", copyright="", artist="", meta=""):
    return {"id": id, "created_at": created_at, "rating": rating, "fav_count": fav,
            "tag_string_general": general, "tag_string_character": character,
            "tag_string_copyright": copyright, "tag_string_artist": artist, "tag_string_meta": meta,
            "file_ext": "jpg", "is_deleted": False, "is_banned": False, "md5": "0" * 32,
            "file_url": "https://example.invalid/x.jpg", "image_width": 100, "image_height": 100}


def write_flat(posts: list[dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(posts)
    # a column of nulls only is typed string, as in a real dump, not inferred as type null
    table = table.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]))
    pq.write_table(table, folder / "posts.parquet")
    return folder / "posts.parquet"


def write_normalized(posts: list[dict], folder: Path, seed: int = 0) -> Path:
    """HakuBooru's three tables; relation rows written shuffled, their ids keeping each post's tag order."""
    folder.mkdir(parents=True, exist_ok=True)
    types = {"general": 0, "artist": 1, "character": 2, "copyright": 3, "meta": 4}
    vocab: dict[tuple[str, str], int] = {}
    relation: list[tuple[int, int, int]] = []
    for post in posts:
        per_category = [[(t, c) for t in (post[f"tag_string_{c}"] or "").split(" ") if t] for c in CATEGORIES]
        # categories interleaved, as danbooru's alphabetical tag_string mixes them; each keeps its order
        for k in range(max(map(len, per_category))):
            for tags in per_category:
                if k < len(tags):
                    tag_id = vocab.setdefault(tags[k], len(vocab) + 1)
                    relation.append((len(relation) + 1, post["id"], tag_id))
    random.Random(seed).shuffle(relation)
    ints = pa.int64()  # typed: posts without a single tag still give integer columns
    pq.write_table(pa.table({"id": pa.array(list(vocab.values()), ints),
                             "name": pa.array([k[0] for k in vocab], pa.string()),
                             "type": pa.array([types[k[1]] for k in vocab], ints)}), folder / "tag.parquet")
    pq.write_table(pa.table({name: pa.array([r[i] for r in relation], ints) for i, name in
                             enumerate(("id", "post_id", "tag_id"))}), folder / "posttagrelation.parquet")
    columns = ["id", "created_at", "fav_count", "file_ext", "md5"]
    pq.write_table(pa.table({**{c: [p[c] for p in posts] for c in columns},
                             "rating": ["gsqe".index(p["rating"]) for p in posts],
                             "is_deleted": [int(p["is_deleted"]) for p in posts],
                             "is_banned": [int(p["is_banned"]) for p in posts]}), folder / "post.parquet")
    return folder


def run_captions(path: Path, quality="epsilon", quality_max_id=7_100_000, year_quirks=True,
                 bad_tags: BadRows | None = None, columns: dict | None = None):
    """id -> caption; posts with bad tags are reported to `bad_tags` (default: an error)."""
    meta = metadata.locate(path, columns=columns)
    posts = metadata.read_posts(meta, "danbooru", BadRows("fail"))
    ids = posts["id"].to_numpy()
    rating, fav = posts["rating"].to_numpy(), posts["fav_count"].to_numpy()
    thresholds = {"epsilon": captions.EPSILON_THRESHOLDS, "none": None,
                  "percentiles": captions.percentile_thresholds(rating, fav)}[quality]
    rule = captions.CaptionRule(thresholds, quality_max_id, year_quirks)
    caps = captions.caption_posts(metadata.iter_tags(meta, ids), ids, posts["created_at"], rating, fav, rule,
                                  bad_tags or BadRows("fail"))
    return dict(zip(caps.ids.tolist(), caps.text.to_pylist(), strict=True))


def make_state(output: Path, name: str, step: int, complete: bool = True) -> Path:
    """A state folder as the trainer saves it; not complete: cut off before accelerate's last file."""
    folder = output / name
    folder.mkdir(parents=True)
    (folder / "train_state.json").write_text(json.dumps({"current_epoch": 0, "current_step": step}))
    (folder / "model.safetensors").write_bytes(b"")
    if complete:
        (folder / "random_states_0.pkl").write_bytes(b"")
    return folder


def preset_golden(preset: Path, name: str) -> str:
    """The golden file `name` of the shipped preset `preset`."""
    return (PRESET_GOLDEN / preset.stem / name).read_text(encoding="utf-8")


def assert_same_tree(a: Path, b: Path):
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files_a], shallow=False)
    assert not mismatch and not errors
