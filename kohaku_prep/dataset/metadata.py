"""Read danbooru2023 Parquet metadata, flat or normalized, column-wise.

Posts come back as one Arrow table with normalized columns; tags are read afterwards, only for the
posts that were selected, as flat rows (post, category, name) in each post's stored order. Columns are
found under the names the dump gives them (layouts.py) and read whatever type of their family the
writer chose (column_types.py).

A file that cannot be read, or a missing or mistyped column, is always an error; a bad row is an error
or a counted skip (bad_metadata.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kohaku_prep.dataset import column_types as ct
from kohaku_prep.dataset import layouts
from kohaku_prep.dataset.bad_metadata import (
    BAD_FAV_COUNT,
    DUPLICATE_ID,
    NO_YEAR,
    NOT_UTF8,
    NULL_FLAG,
    NULL_ID,
    TAG_PROBLEMS,
    UNKNOWN_RATING,
    BadRows,
    NameCheck,
    RowChecks,
    check_names,
    invalid_utf8,
)
from kohaku_prep.dataset.years import created_years
from kohaku_prep.errors import PrepError

# Internal tag categories, in the order a caption's head lists them after the SPECIAL tags.
GENERAL, CHARACTER, COPYRIGHT, ARTIST, META = range(5)
CATEGORY_NAMES = ("general", "character", "copyright", "artist", "meta")
FLAT_TAG_COLUMNS = {f"tag_string_{name}": code for code, name in enumerate(CATEGORY_NAMES)}
# HakuBooru's tag.type numbering, which is not danbooru's own.
NORMALIZED_TAG_TYPES = {0: GENERAL, 1: ARTIST, 2: CHARACTER, 3: COPYRIGHT, 4: META}

RATING_LETTERS = {
    "danbooru": {"g": 0, "s": 1, "q": 2, "e": 3},
    "danbooru-pre2022": {"s": 0, "q": 2, "e": 3},  # before May 2022 `s` meant safe
}
RATING_NAMES = ("general", "sensitive", "questionable", "explicit")

# column -> accepted type family (column_types)
POST_COLUMNS = {
    "id": ct.INTEGER, "created_at": ct.TIME, "rating": ct.RATING, "fav_count": ct.INTEGER,
    "file_ext": ct.STRING, "is_deleted": ct.BOOLEAN, "is_banned": ct.BOOLEAN, "md5": ct.STRING,
}
OPTIONAL_POST_COLUMNS = {"file_url": ct.STRING}
_TEXT_COLUMNS = ("created_at", "rating", "file_ext")  # string columns read as text: they must be UTF-8


def _check_columns(path: Path, schema: pa.Schema, required: dict, optional: dict | None = None,
                   names: dict[str, str] | None = None) -> None:
    """Every required column present under its name in this file (`names`: danbooru's name -> the file's),
    each of its type family."""
    optional, names = optional or {}, names or {}
    for name, kind in {**required, **optional}.items():
        stored = names.get(name, name)
        mapped = f" (for '{name}', input.columns.{name})" if stored != name else ""
        if stored not in schema.names:
            if name in required:
                hint = "" if mapped else f"; if this file names it otherwise, set input.columns.{name}"
                raise PrepError(f"{path}: missing column '{stored}' ({kind}){mapped}{hint}")
            continue
        tp = schema.field(stored).type
        if not ct.accepts(kind, tp):
            raise PrepError(f"{path}: column '{stored}'{mapped} has type {tp}, expected {kind}")


def _read_columns(path: Path, pf: pq.ParquetFile, kinds: dict[str, str], names: dict[str, str]) -> pa.Table:
    """The columns `kinds` (danbooru's names) of a file, read under the file's names and cast to their
    canonical types."""
    stored = [names.get(c, c) for c in kinds]
    with _reading(path):
        table = pf.read(columns=stored)
    return pa.table({c: ct.canonical(table[s], kind, f"{path}: column '{s}'")
                     for (c, kind), s in zip(kinds.items(), stored, strict=True)})


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise PrepError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


@contextmanager
def _reading(path: Path):
    """Turn a read error (a truncated or damaged file found while reading it) into a one-line error."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise PrepError(f"{path}: cannot read ({_one_line(exc)})") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if p.is_file())
    if not files:
        others = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".json", ".jsonl", ".db"))
        raise PrepError(f"{path}: no .parquet files found" + (
            f" ({', '.join(others[:3])}: see `kohaku-prep convert --help`)" if others else ""))
    return files


@dataclass
class TagRows:
    """One row per (post, tag); within each post and category, tags in their stored order."""

    post_index: np.ndarray  # int64, index into the selected ids
    category: np.ndarray  # int8, GENERAL..META
    names: pa.DictionaryArray  # raw tag names (underscores kept); a bad name (see problem) reads ""
    problem: np.ndarray | None = None  # int8 per dictionary entry: 0, or 1 + its index in TAG_PROBLEMS; None: all fine
    bad_names: dict[int, str] = field(default_factory=dict)  # dictionary entry -> the bad name as read, shown
    source: Path | None = None  # where the names come from, for errors


@dataclass
class Metadata:
    shape: str  # "flat" or "normalized"
    post_files: list[Path]
    tag_file: Path | None = None
    relation_files: list[Path] | None = None
    layout: str = ""  # the dump recognised by its columns, for the report
    columns: dict[str, str] = field(default_factory=dict)  # danbooru's column name -> the post files'

    @property
    def files(self) -> list[Path]:
        return self.post_files + ([self.tag_file] if self.tag_file else []) + (self.relation_files or [])


def _not_parquet_hint(path: Path) -> str | None:
    """What to do with a metadata file that is a dump of another kind (by its name or first bytes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None  # reading it as Parquet says why in one line
    if head.startswith(b"PAR1"):
        return None
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3") or head.startswith(layouts.SQLITE_MAGIC):
        return (f"{path}: a SQLite database (HakuBooru's danbooru2023.db), not Parquet; run "
                f"`kohaku-prep convert {path} METADATA_DIR`, then pass --metadata METADATA_DIR")
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson") or head.lstrip()[:1] in (b"{", b"["):
        return (f"{path}: a JSON post dump, not Parquet; run `kohaku-prep convert {path} posts.parquet`, "
                "then pass --metadata posts.parquet")
    return None


def locate(path: Path, shape: str = "auto", columns: dict[str, str] | None = None) -> Metadata:
    """Find the metadata files under `path`, decide their shape and recognise the dump by its columns;
    `columns` (the preset's input.columns) names columns the dump calls otherwise."""
    if not path.exists():
        raise PrepError(f"{path}: metadata not found")
    if path.is_file() and (hint := _not_parquet_hint(path)):
        raise PrepError(hint)
    parts = {}
    if path.is_dir():
        for name in ("post", "tag", "posttagrelation"):
            if (path / f"{name}.parquet").is_file():
                parts[name] = [path / f"{name}.parquet"]
            elif (path / name).is_dir():
                parts[name] = _parquet_files(path / name)
    normalized = len(parts) == 3
    if "post" in parts and not normalized and "tag_list" in _open(parts["post"][0]).schema_arrow.names:
        raise PrepError(f"{path}: {layouts.OLD_HAKUBOORU}")
    if shape == "normalized" and not normalized:
        raise PrepError(f"{path}: normalized metadata needs post, tag and posttagrelation .parquet files")
    if shape == "normalized" or (shape == "auto" and normalized):
        if len(parts["tag"]) != 1:
            raise PrepError(f"{path}: expected one tag.parquet, found {len(parts['tag'])} files")
        return Metadata("normalized", parts["post"], parts["tag"][0], parts["posttagrelation"],
                        "HakuBooru's post, tag, posttagrelation tables", layouts.column_names({}, columns or {}))
    files = _parquet_files(path)
    schema = _open(files[0]).schema_arrow
    if "tag_list" in schema.names:
        raise PrepError(f"{files[0]}: {layouts.OLD_HAKUBOORU}")
    layout = layouts.recognise_flat(schema.names, schema.metadata)
    return Metadata("flat", files, layout=layout.name, columns=layouts.column_names(layout.columns, columns or {}))


def read_posts(meta: Metadata, rating_scheme: str, bad_rows: BadRows, dated: bool = False) -> pa.Table:
    """id, created_at, rating (int8 0..3), fav_count, file_ext, is_deleted, is_hidden; sorted by id.

    Bad rows: a null id, a text column that is not UTF-8, an unknown or null rating, a null or negative
    fav_count, with `dated` a created_at without a year, a null is_deleted or is_banned, and an id
    on more than one row, each reported to `bad_rows`: an error, or such posts are left out (every copy of a
    duplicated id, whatever the file order).
    """
    tables, files, n_read = [], [], 0
    for k, path in enumerate(meta.post_files):
        pf = _open(path)
        schema = pf.schema_arrow
        required = POST_COLUMNS if meta.shape == "normalized" else {**POST_COLUMNS, **{
            c: ct.STRING for c in FLAT_TAG_COLUMNS}}
        _check_columns(path, schema, required, OPTIONAL_POST_COLUMNS, meta.columns)
        kinds = {c: kind for c, kind in {**POST_COLUMNS, **OPTIONAL_POST_COLUMNS}.items()
                 if meta.columns.get(c, c) in schema.names}
        table = _read_columns(path, pf, kinds, meta.columns)
        n_read += table.num_rows
        tables.append(_normalize_posts(path, table, rating_scheme, dated, bad_rows))
        files.append(np.full(tables[-1].num_rows, k, np.int32))
    if n_read == 0:
        raise PrepError(f"{meta.post_files[0]}: the metadata holds no posts")
    posts = pa.concat_tables(tables).combine_chunks()
    order = pc.sort_indices(posts["id"])
    posts, file_of = posts.take(order), np.concatenate(files)[order.to_numpy()]
    ids = posts["id"].to_numpy()
    same = ids[1:] == ids[:-1]
    if same.any():
        copies = np.zeros(len(ids), bool)
        copies[1:] |= same
        copies[:-1] |= same
        first = ids[np.argmax(same)]
        where = ", ".join(sorted({meta.post_files[f].name for f in file_of[ids == first].tolist()}))
        n_ids = int((same & ~np.concatenate([[False], same[:-1]])).sum())
        bad_rows.found(DUPLICATE_ID, int(copies.sum()),
                       f"every copy of {n_ids:,} id(s) left out; first: post {first} in {where}",
                       f"post id {first} appears more than once in the metadata (in {where}); {n_ids:,} id(s) on "
                       f"{int(copies.sum()):,} rows in all", 'input.bad_metadata = "skip" leaves out every copy')
        posts = posts.filter(pa.array(~copies))
    return posts


def _normalize_posts(path: Path, t: pa.Table, rating_scheme: str, dated: bool, bad_rows: BadRows) -> pa.Table:
    rows = RowChecks(path, t["id"], bad_rows)
    rows.check(NULL_ID, "id", t["id"], _is_null(t["id"]), "null value(s)")
    text = {}
    for name in _TEXT_COLUMNS:
        column = t[name]
        if pa.types.is_string(column.type):  # a rating may be an integer
            invalid = invalid_utf8(column)
            if invalid is not None:
                rows.check(NOT_UTF8, name, column, invalid, "value(s) that are not UTF-8")
                column = pa.chunked_array([pc.if_else(pa.array(invalid), pa.scalar(None, column.type),
                                                      column.combine_chunks())])
        text[name] = column
    rating, unknown = _ratings(text["rating"], rating_scheme)
    rows.check(UNKNOWN_RATING, "rating", t["rating"], unknown, "unknown value(s)",
               f" (rating scheme '{rating_scheme}')")
    fav = t["fav_count"]
    rows.check(BAD_FAV_COUNT, "fav_count", fav, _is_null(fav) | (pc.fill_null(fav, 0).to_numpy() < 0),
               "null or negative value(s)")
    if dated:
        rows.check(NO_YEAR, "created_at", t["created_at"], created_years(text["created_at"]) < 0,
                   "value(s) without a readable date",
                   "; caption.year_quirks = true tags them 'early' as HakuBooru did")
    for name in ("is_deleted", "is_banned"):
        rows.check(NULL_FLAG, name, t[name], _is_null(t[name]), "null value(s)")
    hidden = _as_bool(t["is_banned"])
    for name in ("md5", "file_url"):
        if name in t.column_names:
            missing = pc.fill_null(pc.equal(pc.utf8_length(t[name]), 0), True)
            hidden = pc.or_(hidden, missing)
    posts = pa.table({
        "id": pc.fill_null(t["id"], 0).cast(pa.int64()),
        "created_at": text["created_at"],
        "rating": rating,
        "fav_count": pc.fill_null(fav, 0).cast(pa.int64()),
        "file_ext": pc.utf8_lower(pc.fill_null(text["file_ext"], "")),
        "is_deleted": _as_bool(t["is_deleted"]),
        "is_hidden": hidden,
    })
    return posts.filter(pa.array(~rows.bad)) if rows.bad.any() else posts


def _is_null(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_null(column).to_numpy(zero_copy_only=False)


def _as_bool(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(col, False)


def _ratings(col: pa.ChunkedArray, scheme: str) -> tuple[pa.Array, np.ndarray]:
    """Ratings as int8 0..3 (0 where unknown), and which are unknown (or null)."""
    col = col.combine_chunks()
    if pa.types.is_integer(col.type):
        values = col.cast(pa.int64())
        known = pc.fill_null(pc.and_(pc.greater_equal(values, 0), pc.less_equal(values, 3)), False)
    else:
        letters = RATING_LETTERS[scheme]
        idx = pc.index_in(pc.utf8_lower(col.cast(pa.string())), value_set=pa.array(list(letters)))
        values = pa.array(list(letters.values()), pa.int64()).take(idx)
        known = pc.is_valid(idx)
    return pc.if_else(known, values, 0).cast(pa.int8()), ~known.to_numpy(zero_copy_only=False)


def iter_tags(meta: Metadata, ids: np.ndarray) -> Iterator[tuple[np.ndarray, TagRows]]:
    """Tag rows of the posts `ids` (sorted, unique), a bounded chunk of posts at a time.

    Yields (chunk ids, sorted; their tag rows, whose post_index points into the chunk ids).
    Together the chunks cover every post of `ids` that the metadata holds, each post once.
    """
    if meta.shape == "flat":
        return _flat_tags(meta, ids)
    return _normalized_tags(meta, ids)


_BATCH_ROWS = 1 << 18
_CHUNK_POSTS = 1 << 19
_DENSE_MAX_ID = 1 << 26  # ids up to this get a direct lookup table (4 bytes per id); danbooru's are < 1e7


class Positions:
    """Position of each value in `sorted_ids` (sorted, unique), -1 where absent: a direct lookup table
    for danbooru-sized ids (one gather per batch, no hash set, no binary search), a binary search beyond."""

    def __init__(self, sorted_ids: np.ndarray):
        self.ids = sorted_ids
        self.table = None
        if len(sorted_ids) and sorted_ids[0] >= 0 and sorted_ids[-1] <= _DENSE_MAX_ID:
            self.table = np.full(int(sorted_ids[-1]) + 1, -1, np.int32)
            self.table[sorted_ids] = np.arange(len(sorted_ids), dtype=np.int32)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.table is not None:
            inside = (values >= 0) & (values < len(self.table))
            return np.where(inside, self.table[np.where(inside, values, 0)], -1)
        if len(self.ids) == 0:
            return np.full(len(values), -1, np.int64)
        at = np.minimum(np.searchsorted(self.ids, values), len(self.ids) - 1)
        return np.where(self.ids[at] == values, at, -1)


def leave_out_bad_tags(chunk_ids: np.ndarray, tags: TagRows, bad_rows: BadRows) -> tuple[np.ndarray, TagRows]:
    """The posts of a chunk with a tag that cannot go into a caption (TAG_PROBLEMS), reported to `bad_rows`
    (an error naming the first post, its tag and the tag's category) and left out. Free when the chunk's
    names are all fine (tags.problem is None)."""
    if tags.problem is None:
        return chunk_ids, tags
    code = tags.problem[tags.names.indices.to_numpy(zero_copy_only=False)]
    rows = np.flatnonzero(code)
    if not len(rows):
        return chunk_ids, tags
    # each post once: under the first problem it has (TAG_PROBLEMS order), shown by its first such tag
    rows = rows[np.lexsort((rows, code[rows], tags.post_index[rows]))]
    post = tags.post_index[rows]
    first = np.concatenate([[True], post[1:] != post[:-1]])
    rows, post = rows[first], post[first]

    def shown(row: int) -> str:
        entry = int(tags.names.indices[row].as_py())
        return (f"post {chunk_ids[tags.post_index[row]]}, {CATEGORY_NAMES[tags.category[row]]} tag "
                f"{tags.bad_names[entry]}")

    error = f"{tags.source}: {shown(rows[0])} {TAG_PROBLEMS[code[rows[0]] - 1][1]}"  # the chunk's first bad post
    for c in np.unique(code[rows]).tolist():
        of_code = rows[code[rows] == c]
        bad_rows.found(TAG_PROBLEMS[c - 1][0], len(of_code),
                       f"first: {tags.source.name if tags.source else ''}, {shown(of_code[0])}", error)
    keep = np.ones(len(chunk_ids), bool)
    keep[post] = False
    row_kept = keep[tags.post_index]
    renumber = np.cumsum(keep) - 1
    return chunk_ids[keep], TagRows(renumber[tags.post_index[row_kept]], tags.category[row_kept],
                                    tags.names.filter(pa.array(row_kept)), None, {}, tags.source)


def _flat_tags(meta: Metadata, ids: np.ndarray) -> Iterator[tuple[np.ndarray, TagRows]]:
    positions = Positions(ids)
    stored = {c: meta.columns.get(c, c) for c in ["id", *FLAT_TAG_COLUMNS]}
    for path in meta.post_files:
        pf = _open(path)
        batches = pf.iter_batches(batch_size=_BATCH_ROWS, columns=list(stored.values()))
        while True:
            with _reading(path):
                batch = next(batches, None)
            if batch is None:
                break
            batch_ids = pc.fill_null(ct.as_int64(batch.column(stored["id"]), f"{path}: column '{stored['id']}'"),
                                     -1).to_numpy()
            selected = positions(batch_ids) >= 0
            if not selected.any():
                continue
            mask, batch_ids = pa.array(selected), batch_ids[selected]
            tag_strings = {c: ct.as_string(batch.column(stored[c])).filter(mask) for c in FLAT_TAG_COLUMNS}
            chunk_ids = np.sort(batch_ids)
            rows = np.searchsorted(chunk_ids, batch_ids)
            parts_index, parts_category, parts_names = [], [], []
            for column, category in FLAT_TAG_COLUMNS.items():
                lists = pc.split_pattern(pc.fill_null(tag_strings[column], ""), " ")
                names = pc.list_flatten(lists)
                parents = pc.list_parent_indices(lists).to_numpy()
                keep = pc.not_equal(names, "")  # blank tags from repeated spaces
                parts_names.append(names.filter(keep))
                parts_index.append(rows[parents[keep.to_numpy(zero_copy_only=False)]])
                parts_category.append(np.full(len(parts_index[-1]), category, np.int8))
            names = pa.chunked_array(parts_names, pa.string()).combine_chunks().dictionary_encode()
            checked = check_names(names.dictionary)
            if checked.problem is not None:
                names = pa.DictionaryArray.from_arrays(names.indices, checked.names)
            yield chunk_ids, TagRows(np.concatenate(parts_index), np.concatenate(parts_category), names,
                                     checked.problem, checked.bad_names, path)


_RELATION_COLUMNS = {"id": ct.INTEGER, "post_id": ct.INTEGER, "tag_id": ct.INTEGER}
_TAG_COLUMNS = {"id": ct.INTEGER, "name": ct.STRING, "type": ct.INTEGER}


@dataclass
class _RelationGroup:
    pf: pq.ParquetFile
    path: Path
    index: int
    first_post: int | None  # the smallest post_id in the row group, from its statistics
    last_post: int | None


def _relation_groups(meta: Metadata) -> list[_RelationGroup]:
    assert meta.relation_files is not None  # normalized metadata, which has them
    groups = []
    for path in meta.relation_files:
        pf = _open(path)
        _check_columns(path, pf.schema_arrow, _RELATION_COLUMNS)
        column = pf.schema_arrow.get_field_index("post_id")
        for i in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(i).column(column).statistics
            known = stats is not None and stats.has_min_max
            groups.append(_RelationGroup(pf, path, i, stats.min if known else None, stats.max if known else None))
    return groups


def _post_order_starts(groups: list[_RelationGroup]) -> list[int] | None:
    """Each row group's first post when the groups follow each other in post order (a post may span a
    boundary), so that every post before the next group's first post is complete: then tags stream a chunk
    at a time. None when they do not, or their statistics do not say."""
    bounds = [(g.first_post, g.last_post) for g in groups if g.first_post is not None and g.last_post is not None]
    in_order = len(bounds) == len(groups) and all(nxt[0] >= prev[1] for prev, nxt in pairwise(bounds))
    return [first for first, _ in bounds] if in_order else None


def _normalized_tags(meta: Metadata, ids: np.ndarray) -> Iterator[tuple[np.ndarray, TagRows]]:
    tag_file = meta.tag_file
    assert tag_file is not None  # normalized metadata, which has one
    tag_pf = _open(tag_file)
    _check_columns(tag_file, tag_pf.schema_arrow, _TAG_COLUMNS)
    tags = _read_columns(tag_file, tag_pf, _TAG_COLUMNS, {}).combine_chunks()
    checked = check_names(tags["name"].combine_chunks())
    tag_types = pc.fill_null(tags["type"], -1).to_numpy()
    unknown = ~np.isin(tag_types, list(NORMALIZED_TAG_TYPES))
    if unknown.any():
        raise PrepError(f"{tag_file}: tag type {tag_types[unknown][0]} is not one of 0..4 "
                        "(0 general, 1 artist, 2 character, 3 copyright, 4 meta)")
    category_of_type = np.zeros(max(NORMALIZED_TAG_TYPES) + 1, np.int8)
    for tag_type, category in NORMALIZED_TAG_TYPES.items():
        category_of_type[tag_type] = category
    tag_category = category_of_type[tag_types]
    tag_ids = pc.fill_null(tags["id"], -1).to_numpy()
    tag_order = np.argsort(tag_ids, kind="stable")
    tag_positions = Positions(tag_ids[tag_order])
    post_positions = Positions(ids)

    groups = _relation_groups(meta)
    starts = _post_order_starts(groups)
    # the selected relation rows, (post position, relation id, tag row), kept once, filed by chunk of posts
    buckets: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    n_chunks, next_chunk = -(-len(ids) // _CHUNK_POSTS), 0
    for k, group in enumerate(groups):
        with _reading(group.path):
            raw = group.pf.read_row_group(group.index, columns=list(_RELATION_COLUMNS))
            table = {c: ct.as_int64(raw[c], f"{group.path}: column '{c}'") for c in _RELATION_COLUMNS}
        post = post_positions(pc.fill_null(table["post_id"], -1).to_numpy())
        selected = post >= 0
        tag_id = pc.fill_null(table["tag_id"], -1).to_numpy()[selected]
        tag_at = tag_positions(tag_id)
        if (tag_at < 0).any():
            missing = tag_id[tag_at < 0][0]
            raise PrepError(f"{group.path}: tag id {'null' if missing == -1 else missing} is not in "
                            f"{tag_file.name}")
        _file_by_chunk(buckets, post[selected].astype(np.int32), pc.fill_null(table["id"], -1).to_numpy()[selected],
                       tag_order[tag_at].astype(np.int32))
        # posts before the next group's first are complete when the groups are in post order, else none is
        last = k + 1 == len(groups)
        complete = len(ids) if last else int(np.searchsorted(ids, starts[k + 1])) if starts is not None else 0
        while next_chunk < n_chunks and min((next_chunk + 1) * _CHUNK_POSTS, len(ids)) <= complete:
            yield _tag_chunk(ids, next_chunk, buckets.pop(next_chunk, []), tag_category, checked, tag_file)
            next_chunk += 1
    for c in range(next_chunk, n_chunks):  # no relation files: posts without any tag row
        yield _tag_chunk(ids, c, [], tag_category, checked, tag_file)


def _file_by_chunk(buckets: dict, post: np.ndarray, relation: np.ndarray, tag_row: np.ndarray) -> None:
    chunk = post // _CHUNK_POSTS
    if len(chunk) == 0:
        return
    if chunk[0] == chunk[-1] and (chunk == chunk[0]).all():  # a row group of posts in order: one chunk
        buckets.setdefault(int(chunk[0]), []).append((post, relation, tag_row))
        return
    order = np.argsort(chunk.astype(np.int16) if chunk.max() < 1 << 15 else chunk, kind="stable")  # int16: radix
    chunk = chunk[order]
    bounds = np.flatnonzero(np.diff(chunk)) + 1
    for part, c in zip(np.split(order, bounds), chunk[np.concatenate([[0], bounds])].tolist(), strict=True):
        buckets.setdefault(c, []).append((post[part], relation[part], tag_row[part]))


def _tag_chunk(ids, c: int, parts: list, tag_category, checked: NameCheck, source: Path
               ) -> tuple[np.ndarray, TagRows]:
    """TagRows of the posts of chunk c from their relation rows in any order: a post's tags in the order
    of their relation ids."""
    first = c * _CHUNK_POSTS
    p, r, t = ((np.concatenate(column) for column in zip(*parts, strict=True)) if parts
               else (np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32)))
    step = np.diff(p)
    if (step < 0).any() or ((step == 0) & (np.diff(r) <= 0)).any():
        order = np.lexsort((r, p))
        p, t = p[order], t[order]
    names = pa.DictionaryArray.from_arrays(pa.array(t), checked.names)
    return (ids[first:first + _CHUNK_POSTS],
            TagRows(p.astype(np.int64) - first, tag_category[t], names, checked.problem, checked.bad_names, source))
