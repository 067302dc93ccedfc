"""Read danbooru2023 Parquet metadata, flat or normalized, column-wise.

Posts come back as one Arrow table with normalized columns; tags are read afterwards, only for the
posts that were selected, as flat rows (post, category, name) in each post's stored order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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

# column -> accepted Arrow type families
_INT, _STR, _BOOL, _TIME = "integer", "string", "boolean or 0/1 integer", "string or timestamp"
POST_COLUMNS = {
    "id": _INT, "created_at": _TIME, "rating": "string or integer", "fav_count": _INT,
    "file_ext": _STR, "is_deleted": _BOOL, "is_banned": _BOOL, "md5": _STR,
}
OPTIONAL_POST_COLUMNS = {"file_url": _STR}


def _type_ok(kind: str, tp: pa.DataType) -> bool:
    is_int = pa.types.is_integer(tp)
    is_str = pa.types.is_string(tp) or pa.types.is_large_string(tp)
    return {
        _INT: is_int,
        _STR: is_str or pa.types.is_null(tp),
        _BOOL: pa.types.is_boolean(tp) or is_int,
        _TIME: is_str or pa.types.is_timestamp(tp),
        "string or integer": is_str or is_int,
    }[kind]


def _check_columns(path: Path, schema: pa.Schema, required: dict, optional: dict = {}) -> None:
    for name, kind in {**required, **optional}.items():
        if name not in schema.names:
            if name in required:
                raise PrepError(f"{path}: missing column '{name}' ({kind})")
            continue
        tp = schema.field(name).type
        if not _type_ok(kind, tp):
            raise PrepError(f"{path}: column '{name}' has type {tp}, expected {kind}")


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise PrepError(f"{path}: not a readable Parquet file ({exc})") from None


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if p.is_file())
    if not files:
        raise PrepError(f"{path}: no .parquet files found")
    return files


@dataclass
class TagRows:
    """One row per (post, tag); within each post and category, tags in their stored order."""

    post_index: np.ndarray  # int64, index into the selected ids
    category: np.ndarray  # int8, GENERAL..META
    names: pa.DictionaryArray  # raw tag names (underscores kept)


@dataclass
class Metadata:
    shape: str  # "flat" or "normalized"
    post_files: list[Path]
    tag_file: Path | None = None
    relation_files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        return self.post_files + ([self.tag_file] if self.tag_file else []) + (self.relation_files or [])


def locate(path: Path, shape: str = "auto") -> Metadata:
    """Find the metadata files under `path` and decide their shape."""
    if not path.exists():
        raise PrepError(f"{path}: metadata not found")
    parts = {}
    if path.is_dir():
        for name in ("post", "tag", "posttagrelation"):
            if (path / f"{name}.parquet").is_file():
                parts[name] = [path / f"{name}.parquet"]
            elif (path / name).is_dir():
                parts[name] = _parquet_files(path / name)
    normalized = len(parts) == 3
    if shape == "normalized" and not normalized:
        raise PrepError(f"{path}: normalized metadata needs post, tag and posttagrelation .parquet files")
    if shape == "normalized" or (shape == "auto" and normalized):
        if len(parts["tag"]) != 1:
            raise PrepError(f"{path}: expected one tag.parquet, found {len(parts['tag'])} files")
        return Metadata("normalized", parts["post"], parts["tag"][0], parts["posttagrelation"])
    return Metadata("flat", _parquet_files(path))


def read_posts(meta: Metadata, rating_scheme: str) -> pa.Table:
    """id, created_at, rating (int8 0..3), fav_count, file_ext, is_deleted, is_hidden; sorted by id."""
    tables = []
    for path in meta.post_files:
        pf = _open(path)
        schema = pf.schema_arrow
        required = POST_COLUMNS if meta.shape == "normalized" else {**POST_COLUMNS, **{
            c: _STR for c in FLAT_TAG_COLUMNS}}
        _check_columns(path, schema, required, OPTIONAL_POST_COLUMNS)
        columns = [c for c in {**POST_COLUMNS, **OPTIONAL_POST_COLUMNS} if c in schema.names]
        try:
            table = pf.read(columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise PrepError(f"{path}: cannot read ({exc})") from None
        tables.append(_normalize_posts(path, table, rating_scheme))
    posts = pa.concat_tables(tables).combine_chunks()
    if posts.num_rows == 0:
        raise PrepError(f"{meta.post_files[0]}: the metadata holds no posts")
    posts = posts.take(pc.sort_indices(posts["id"]))
    ids = posts["id"].to_numpy()
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if dup.size:
        raise PrepError(f"post id {ids[dup[0]]} appears more than once in the metadata "
                        f"({dup.size} duplicate id(s) in all)")
    return posts


def _as_bool(path: Path, col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    if col.null_count:
        raise PrepError(f"{path}: column '{name}' has {col.null_count} null value(s)")
    return col if pa.types.is_boolean(col.type) else pc.not_equal(col, 0)


def _normalize_posts(path: Path, t: pa.Table, rating_scheme: str) -> pa.Table:
    for name in ("id", "fav_count"):
        if t[name].null_count:
            raise PrepError(f"{path}: column '{name}' has {t[name].null_count} null value(s)")
    hidden = _as_bool(path, t["is_banned"], "is_banned")
    for name in ("md5", "file_url"):
        if name in t.column_names:
            missing = pc.fill_null(pc.equal(pc.utf8_length(t[name].cast(pa.string())), 0), True)
            hidden = pc.or_(hidden, missing)
    return pa.table({
        "id": t["id"].cast(pa.int64()),
        "created_at": t["created_at"],
        "rating": _ratings(path, t["rating"], rating_scheme),
        "fav_count": t["fav_count"].cast(pa.int64()),
        "file_ext": pc.utf8_lower(pc.fill_null(t["file_ext"].cast(pa.string()), "")),
        "is_deleted": _as_bool(path, t["is_deleted"], "is_deleted"),
        "is_hidden": hidden,
    })


def _ratings(path: Path, col: pa.ChunkedArray, scheme: str) -> pa.Array:
    col = col.combine_chunks()
    if pa.types.is_integer(col.type):
        values = col.cast(pa.int64())
        bad = pc.invert(pc.fill_null(pc.and_(pc.greater_equal(values, 0), pc.less_equal(values, 3)), False))
    else:
        letters = RATING_LETTERS[scheme]
        keys = pa.array(list(letters))
        idx = pc.index_in(pc.utf8_lower(col.cast(pa.string())), value_set=keys)
        values = pa.array(list(letters.values()), pa.int64()).take(idx)
        bad = pc.is_null(idx)
    if pc.any(bad).as_py():
        first = col.filter(bad)[0].as_py()
        raise PrepError(f"{path}: column 'rating' has {pc.sum(bad).as_py()} unknown value(s), "
                        f"first {first!r} (rating scheme '{scheme}')")
    return values.cast(pa.int8())


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


def _flat_tags(meta: Metadata, ids: np.ndarray) -> Iterator[tuple[np.ndarray, TagRows]]:
    positions = Positions(ids)
    for path in meta.post_files:
        pf = _open(path)
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=["id", *FLAT_TAG_COLUMNS]):
            batch = batch.filter(pa.array(positions(batch.column("id").to_numpy()) >= 0))
            if batch.num_rows == 0:
                continue
            batch_ids = batch.column("id").to_numpy()
            chunk_ids = np.sort(batch_ids)
            rows = np.searchsorted(chunk_ids, batch_ids)
            parts_index, parts_category, parts_names = [], [], []
            for column, category in FLAT_TAG_COLUMNS.items():
                lists = pc.split_pattern(pc.fill_null(batch.column(column), ""), " ")
                names = pc.list_flatten(lists)
                parents = pc.list_parent_indices(lists).to_numpy()
                keep = pc.not_equal(names, "")  # blank tags from repeated spaces
                parts_names.append(names.filter(keep))
                parts_index.append(rows[parents[keep.to_numpy(zero_copy_only=False)]])
                parts_category.append(np.full(len(parts_index[-1]), category, np.int8))
            names = pa.chunked_array(parts_names, pa.string()).combine_chunks().dictionary_encode()
            yield chunk_ids, TagRows(np.concatenate(parts_index), np.concatenate(parts_category), names)


@dataclass
class _RelationGroup:
    pf: pq.ParquetFile
    path: Path
    index: int
    first_post: int | None  # the smallest post_id in the row group, from its statistics
    last_post: int | None


def _relation_groups(meta: Metadata) -> list[_RelationGroup]:
    groups = []
    for path in meta.relation_files:
        pf = _open(path)
        _check_columns(path, pf.schema_arrow, {"id": _INT, "post_id": _INT, "tag_id": _INT})
        column = pf.schema_arrow.get_field_index("post_id")
        for i in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(i).column(column).statistics
            known = stats is not None and stats.has_min_max
            groups.append(_RelationGroup(pf, path, i, stats.min if known else None, stats.max if known else None))
    return groups


def _in_post_order(groups: list[_RelationGroup]) -> bool:
    """Whether the row groups follow each other in post order (a post may span a boundary), so that
    every post before the next group's first post is complete: then tags stream a chunk at a time."""
    bounds = [(g.first_post, g.last_post) for g in groups]
    return all(a is not None for pair in bounds for a in pair) and all(
        nxt[0] >= prev[1] for prev, nxt in zip(bounds, bounds[1:]))


def _normalized_tags(meta: Metadata, ids: np.ndarray) -> Iterator[tuple[np.ndarray, TagRows]]:
    tag_pf = _open(meta.tag_file)
    _check_columns(meta.tag_file, tag_pf.schema_arrow, {"id": _INT, "name": _STR, "type": _INT})
    tags = tag_pf.read(columns=["id", "name", "type"]).combine_chunks()
    tag_types = tags["type"].to_numpy(zero_copy_only=False)
    unknown = ~np.isin(tag_types, list(NORMALIZED_TAG_TYPES))
    if unknown.any():
        raise PrepError(f"{meta.tag_file}: tag type {tag_types[unknown][0]} is not one of 0..4 "
                        "(0 general, 1 artist, 2 character, 3 copyright, 4 meta)")
    category_of_type = np.zeros(max(NORMALIZED_TAG_TYPES) + 1, np.int8)
    for tag_type, category in NORMALIZED_TAG_TYPES.items():
        category_of_type[tag_type] = category
    tag_category = category_of_type[tag_types]
    tag_ids = tags["id"].to_numpy()
    tag_order = np.argsort(tag_ids, kind="stable")
    tag_positions = Positions(tag_ids[tag_order])
    post_positions = Positions(ids)

    groups = _relation_groups(meta)
    streaming = _in_post_order(groups)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (post position, relation id, tag row)
    done = 0  # posts ids[:done] have been yielded
    for k, group in enumerate(groups):
        table = group.pf.read_row_group(group.index, columns=["id", "post_id", "tag_id"])
        post = post_positions(table["post_id"].to_numpy())
        selected = post >= 0
        tag_id = table["tag_id"].to_numpy()[selected]
        tag_at = tag_positions(tag_id)
        if (tag_at < 0).any():
            raise PrepError(f"{group.path}: tag id {tag_id[tag_at < 0][0]} is not in {meta.tag_file.name}")
        pending.append((post[selected].astype(np.int32), table["id"].to_numpy()[selected],
                        tag_order[tag_at].astype(np.int32)))
        last = k + 1 == len(groups)
        complete = len(ids) if last else int(np.searchsorted(ids, groups[k + 1].first_post)) if streaming else done
        if complete - done >= _CHUNK_POSTS or (last and complete > done):
            rows = [np.concatenate(column) for column in zip(*pending)]
            later = rows[0] >= complete
            pending = [tuple(column[later] for column in rows)] if later.any() else []
            yield from _tag_chunks(ids, done, complete, *(column[~later] for column in rows),
                                   tag_category, tags["name"])
            done = complete
    if done < len(ids):  # posts without any tag row
        yield from _tag_chunks(ids, done, len(ids), np.zeros(0, np.int32), np.zeros(0, np.int64),
                               np.zeros(0, np.int32), tag_category, tags["name"])


def _tag_chunks(ids, start, stop, post, relation, tag_row, tag_category, names
                ) -> Iterator[tuple[np.ndarray, TagRows]]:
    """TagRows of the posts ids[start:stop], _CHUNK_POSTS at a time, from their relation rows in any
    order: a post's tags in the order of their relation ids."""
    chunk = (post - start) // _CHUNK_POSTS
    if len(chunk) and (np.diff(chunk) < 0).any():
        order = np.argsort(chunk.astype(np.int16 if stop - start < _CHUNK_POSTS << 15 else np.int64), kind="stable")
        post, relation, tag_row, chunk = post[order], relation[order], tag_row[order], chunk[order]
    bounds = np.searchsorted(chunk, np.arange((stop - start + _CHUNK_POSTS - 1) // _CHUNK_POSTS + 1))
    for c, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        first = start + c * _CHUNK_POSTS
        p, r, t = post[lo:hi], relation[lo:hi], tag_row[lo:hi]
        step = np.diff(p)
        if (step < 0).any() or ((step == 0) & (np.diff(r) <= 0)).any():
            order = np.lexsort((r, p))
            p, t = p[order], t[order]
        yield (ids[first:min(first + _CHUNK_POSTS, stop)],
               TagRows(p.astype(np.int64) - first, tag_category[t], pa.DictionaryArray.from_arrays(pa.array(t), names)))
