"""`kohaku-prep convert`: the dumps that are not Parquet, as the tables the dataset stage reads.

- danbooru's JSON Lines post dump (nyanko7/danbooru2023 `metadata/posts.json`: danbooru's field names,
  nested objects) -> the flat post table, one Parquet file. Read a block of lines at a time by Arrow's
  JSON reader, so memory stays bounded whatever the input size; only a block with a bad line is read
  again line by line, to find it.
- HakuBooru's SQLite database (danbooru2023.db) -> its post, tag and posttagrelation tables, as the
  Parquet export of the same database would hold them (the normalized shape).

Either result is written under a temporary name beside the target and renamed when complete; an
existing target is never replaced.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from kohaku_prep.dataset import layouts
from kohaku_prep.errors import PrepError

# told how many more bytes (JSON) or rows (SQLite) were read; what it returns is ignored (tqdm's update says
# whether it redrew)
Progress = Callable[[int], object]

# The flat table's columns: what the dataset stage reads and a few more that users filter on.
POST_FIELDS = pa.schema([
    ("id", pa.int64()), ("created_at", pa.string()), ("rating", pa.string()), ("fav_count", pa.int64()),
    ("score", pa.int64()), ("file_ext", pa.string()), ("is_deleted", pa.bool_()), ("is_banned", pa.bool_()),
    ("md5", pa.string()), ("file_url", pa.string()), ("image_width", pa.int64()), ("image_height", pa.int64()),
    *((f"tag_string_{c}", pa.string()) for c in layouts.TAG_CATEGORIES),
])
_JSON_TYPES = {pa.int64(): (int,), pa.string(): (str,), pa.bool_(): (bool,)}
_INT64 = (-(1 << 63), (1 << 63) - 1)
BLOCK_BYTES = 32 << 20
LENIENT_HINT = "--bad-lines skip leaves such lines out"


@dataclass
class BadLines:
    count: int = 0
    first: str = ""  # "line N: why"


def kind_of(src: Path) -> str:
    with open(src, "rb") as fh:
        head = fh.read(len(layouts.SQLITE_MAGIC))
    return "sqlite" if head == layouts.SQLITE_MAGIC else "json"


def check_target(out: Path) -> None:
    if out.exists():
        raise PrepError(f"{out}: already exists; convert writes a new file or folder only (choose another name)")
    if not out.resolve().parent.is_dir():
        raise PrepError(f"{out.resolve().parent}: no such folder")


# ---------------------------------------------------------------- JSON Lines

def _blocks(src: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(number of the block's first line, whole lines of about block_bytes)."""
    line = 1
    with open(src, "rb") as fh:
        rest = b""
        while True:
            data = fh.read(block_bytes)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on
                rest = data
                continue
            yield line, data[:cut]
            line += data.count(b"\n", 0, cut)
            rest = data[cut:]
        if rest.strip():
            yield line, rest + b"\n"


def _line_problem(raw: bytes) -> tuple[dict | None, str]:
    """(the post's fields, "") or (None, why the line is not a post)."""
    try:
        post = json.loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(post, dict):
        return None, f"a JSON {type(post).__name__}, not an object"
    for field in POST_FIELDS:
        value = post.get(field.name)
        allowed = _JSON_TYPES[field.type]
        if value is None:
            continue
        out_of_range = isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]
        if not isinstance(value, allowed) or (allowed == (int,) and (isinstance(value, bool) or out_of_range)):
            return None, f"field '{field.name}' holds {json.dumps(value)[:40]}, not {_kind(field.type)}"
    return {f.name: post.get(f.name) for f in POST_FIELDS}, ""


def _kind(tp: pa.DataType) -> str:
    return {pa.int64(): "an integer", pa.string(): "a string", pa.bool_(): "true or false"}[tp]


def _parse_block(src: Path, first_line: int, block: bytes, bad: BadLines, skip_bad: bool) -> pa.Table:
    options = pajson.ParseOptions(explicit_schema=POST_FIELDS, unexpected_field_behavior="ignore")
    try:
        table = pajson.read_json(io.BytesIO(block), read_options=pajson.ReadOptions(block_size=len(block) + 1),
                                 parse_options=options)
        table.validate(full=True)  # the JSON reader does not check UTF-8
        return table
    except ValueError:  # a bad line somewhere in the block: find it, line by line
        pass
    rows = []
    for number, raw in enumerate(block.split(b"\n")[:-1], first_line):
        if not raw.strip():
            continue
        post, problem = _line_problem(raw)
        if post is not None:
            rows.append(post)
            continue
        if not skip_bad:
            raise PrepError(f"{src}: line {number:,} is not a post ({problem}); {LENIENT_HINT}")
        bad.count += 1
        bad.first = bad.first or f"line {number:,}: {problem}"
    return pa.Table.from_pylist(rows, schema=POST_FIELDS)


def convert_json_lines(src: Path, out: Path, skip_bad: bool, progress: Progress,
                       block_bytes: int = BLOCK_BYTES) -> tuple[int, BadLines]:
    """danbooru's JSON Lines post dump -> the flat post table at `out`. Returns (posts written, bad lines)."""
    with open(src, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"PAR1"):
        raise PrepError(f"{src}: already Parquet; pass it to `kohaku-prep dataset --metadata` as it is")
    if head.startswith(b"\x1f\x8b") or head.startswith(b"\xfd7zXZ"):
        raise PrepError(f"{src}: compressed; extract posts.json from it first (e.g. tar -xf), then convert that")
    if head.startswith(b"["):
        raise PrepError(f"{src}: a JSON array, not JSON Lines (one post object a line, danbooru's dump format)")
    check_target(out)
    bad, n_posts, tags_seen = BadLines(), 0, False
    partial = out.with_name(f".{out.name}.partial")
    schema = POST_FIELDS.with_metadata({layouts.CONVERTED_KEY: src.name.encode()})
    try:
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            for first_line, block in _blocks(src, block_bytes):
                table = _parse_block(src, first_line, block, bad, skip_bad)
                if not tags_seen and table.num_rows:
                    tags_seen = table["tag_string_general"].null_count < table.num_rows
                    if not tags_seen:
                        raise PrepError(f"{src}: its posts have no tag_string_general (nor the other "
                                        "tag_string_<category> fields); a dump with only tag_string needs "
                                        "danbooru's tag table for categories, which convert does not read")
                writer.write_table(table.replace_schema_metadata(schema.metadata))
                n_posts += table.num_rows
                progress(len(block))
        if n_posts == 0:
            raise PrepError(f"{src}: no posts found")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return n_posts, bad


# ---------------------------------------------------------------- HakuBooru's SQLite database

# HakuBooru's peewee models (hakubooru/dataset/db.py): table -> the columns the dataset stage reads.
SQLITE_TABLES = {
    "post": pa.schema([("id", pa.int64()), ("created_at", pa.string()), ("rating", pa.int64()),
                       ("fav_count", pa.int64()), ("score", pa.int64()), ("file_ext", pa.string()),
                       ("is_deleted", pa.int64()), ("is_banned", pa.int64()), ("md5", pa.string()),
                       ("file_url", pa.string()), ("image_width", pa.int64()), ("image_height", pa.int64())]),
    "tag": pa.schema([("id", pa.int64()), ("name", pa.string()), ("type", pa.int64()),
                      ("popularity", pa.int64())]),
    "posttagrelation": pa.schema([("id", pa.int64()), ("post_id", pa.int64()), ("tag_id", pa.int64())]),
}
_SQLITE_OPTIONAL = {"score", "file_url", "image_width", "image_height", "popularity"}
_FETCH_ROWS = 200_000


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def check_hakubooru_db(src: Path, db: sqlite3.Connection) -> None:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "post" in tables and "tag_list" in _columns(db, "post"):
        raise PrepError(f"{src}: {layouts.OLD_HAKUBOORU}")
    missing = [t for t in SQLITE_TABLES if t not in tables]
    if missing:
        raise PrepError(f"{src}: not HakuBooru's danbooru2023.db (no table {', '.join(missing)}; "
                        f"tables: {', '.join(sorted(tables)) or 'none'})")
    for table, schema in SQLITE_TABLES.items():
        absent = [name for name in schema.names if name not in _columns(db, table) and name not in _SQLITE_OPTIONAL]
        if absent:
            raise PrepError(f"{src}: table {table} has no column {', '.join(absent)}")


def _order(db: sqlite3.Connection, table: str) -> str:
    """Relation rows in post order where an index allows it (the dataset stage then streams them);
    otherwise in the table's own order, which it sorts a chunk at a time."""
    if table == "posttagrelation":
        for index in db.execute("PRAGMA index_list(posttagrelation)").fetchall():
            first = db.execute(f"PRAGMA index_info({index[1]})").fetchone()
            if first and first[2] == "post_id":
                return " ORDER BY post_id, id"
    return " ORDER BY id"


def convert_sqlite(src: Path, out: Path, progress: Progress) -> dict[str, int]:
    """HakuBooru's database -> post.parquet, tag.parquet, posttagrelation.parquet in the new folder `out`."""
    check_target(out)
    db = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True)
    partial = out.with_name(f".{out.name}.partial")
    counts = {}
    try:
        try:
            check_hakubooru_db(src, db)
        except sqlite3.DatabaseError as exc:
            raise PrepError(f"{src}: not a readable SQLite database ({exc})") from None
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for table, schema in SQLITE_TABLES.items():
            present = set(_columns(db, table))
            schema = pa.schema([f for f in schema if f.name in present])
            counts[table] = _copy_table(src, db, table, schema, partial / f"{table}.parquet", progress)
        os.replace(partial, out)
    except sqlite3.DatabaseError as exc:
        raise PrepError(f"{src}: cannot read ({exc})") from None
    finally:
        db.close()
        shutil.rmtree(partial, ignore_errors=True)
    return counts


def _copy_table(src: Path, db: sqlite3.Connection, table: str, schema: pa.Schema, dest: Path,
                progress: Progress) -> int:
    cursor = db.execute(f"SELECT {', '.join(schema.names)} FROM {table}{_order(db, table)}")
    n = 0
    with pq.ParquetWriter(dest, schema, compression="zstd") as writer:
        while rows := cursor.fetchmany(_FETCH_ROWS):
            columns = list(zip(*rows, strict=True))
            arrays = []
            for field, values in zip(schema, columns, strict=True):
                try:
                    arrays.append(pa.array(values, field.type))
                except (pa.ArrowException, TypeError, ValueError, OverflowError):
                    bad = next((v for v in values if v is not None and not isinstance(v, _JSON_TYPES[field.type])),
                               "a value out of range")
                    raise PrepError(f"{src}: table {table}, column {field.name} holds {bad!r}, not "
                                    f"{_kind(field.type)}") from None
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            n += len(rows)
            progress(len(rows))
    return n
