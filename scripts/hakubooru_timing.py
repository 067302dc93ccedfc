#!/usr/bin/env python3
"""Time the predecessor, HakuBooru's own captioner (hakubooru 0.0.3 with peewee 3.17), on chosen posts.

Runs in its own environment (make bench creates build/hakubooru-venv): HakuBooru pins an older peewee.
The posts are written into a fresh SQLite database through HakuBooru's own peewee models (its schema and
indexes), then captioned by its Exporter with its KohakuCaptioner and no images, as an export runs: one
query for the posts, then one query per post for its tags. Prints a JSON line of figures; the captions
go to --captions (Parquet: id, caption) for the benchmark to compare with kohaku-prep's.

    build/hakubooru-venv/bin/python scripts/hakubooru_timing.py --metadata DIR --ids IDS.npy \
        --captions OUT.parquet --workdir TMP
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# post columns HakuBooru declares NOT NULL that the Parquet export lacks; none of them reaches a caption
POST_DEFAULTS = {"uploader_id": 0, "source": "", "has_children": False, "has_active_children": False,
                 "bit_flags": 0, "has_large": False, "has_visible_children": False, "file_size": 0,
                 "up_score": 0, "down_score": 0, "updated_at": ""}
POST_COLUMNS = ["id", "created_at", "rating", "fav_count", "score", "file_ext", "is_deleted", "is_banned", "md5",
                "file_url", "image_width", "image_height"]


@contextlib.contextmanager
def working_directory(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def insert_rows(db, model, columns: dict) -> None:
    """Bulk insert into a HakuBooru table, each value through its model field (peewee's insert_many builds
    the SQL in Python, 4x slower)."""
    fields = [model._meta.fields[name] for name in columns]
    names = ", ".join(f'"{f.column_name}"' for f in fields)
    sql = f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES ({", ".join(["?"] * len(fields))})'
    convert = [f.db_value for f in fields]
    rows = zip(*columns.values(), strict=True)
    db.cursor().executemany(sql, ([c(v) for c, v in zip(convert, row, strict=True)] for row in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metadata", type=Path, required=True, help="normalized Parquet: post, tag, posttagrelation")
    ap.add_argument("--ids", type=Path, required=True, help="a .npy of the post ids to caption")
    ap.add_argument("--captions", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    args = ap.parse_args()
    os.environ["TQDM_DISABLE"] = "1"  # its FakeSource wraps the posts in a progress bar
    args.workdir.mkdir(parents=True, exist_ok=True)
    with working_directory(args.workdir):  # importing hakubooru.export creates ./out
        from hakubooru.caption import KohakuCaptioner
        from hakubooru.dataset.db import Post, PostTagRelation, Tag, load_db
        from hakubooru.export import BaseSaver, Exporter
        from hakubooru.source import FakeSource

    ids = np.load(args.ids)
    posts = pq.read_table(args.metadata / "post.parquet", columns=POST_COLUMNS,
                          filters=pc.field("id").isin(ids))
    relation = pq.read_table(args.metadata / "posttagrelation.parquet", filters=pc.field("post_id").isin(ids))
    relation = relation.take(pc.sort_indices(relation["id"]))
    tags = pq.read_table(args.metadata / "tag.parquet",
                         filters=pc.field("id").isin(np.unique(relation["tag_id"].to_numpy())))

    start = time.perf_counter()
    db = load_db(str(args.workdir / "hakubooru.db"))  # a new file: HakuBooru creates its tables
    with db.atomic():
        insert_rows(db, Tag, {c: tags[c].to_pylist() for c in ("id", "name", "type", "popularity")})
        insert_rows(db, Post, {**{c: posts[c].to_pylist() for c in POST_COLUMNS},
                               **{c: [v] * len(posts) for c, v in POST_DEFAULTS.items()}})
        insert_rows(db, PostTagRelation, {"id": relation["id"].to_pylist(), "post": relation["post_id"].to_pylist(),
                                          "tag": relation["tag_id"].to_pylist()})
    build_seconds = time.perf_counter() - start

    class Collect(BaseSaver):
        def __init__(self):
            self.captions = {}

        def __call__(self, img_id, img_data, img_ext, caption):
            self.captions[img_id] = caption

    saver = Collect()
    start = time.perf_counter()
    chosen = list(Post.select())  # the database holds only the chosen posts
    Exporter(FakeSource(""), saver=saver, captioner=KohakuCaptioner()).export_posts(chosen)
    seconds = time.perf_counter() - start
    db.close()
    order = sorted(saver.captions)
    pq.write_table(pa.table({"id": pa.array(order, pa.int64()), "caption": [saver.captions[i] for i in order]}),
                   args.captions)
    print(json.dumps({"posts": len(order), "seconds": seconds, "build_db_seconds": build_seconds,
                      "hakubooru": importlib.metadata.version("hakubooru"),
                      "peewee": importlib.metadata.version("peewee")}))


if __name__ == "__main__":
    main()
