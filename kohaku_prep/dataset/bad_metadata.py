"""Bad metadata: what makes a post or a tag unusable, and what is done with it.

A bad row (a post with a null id, an unknown rating, ...; a tag that would corrupt the caption layout) is
reported to a `BadRows`, made from input.bad_metadata: "fail" makes it an error naming the file, the column,
the first post and its value and the count; "skip" leaves the post out and records it, each kind of problem a
stage of the report. Checks are column-wise; only suspects are looked at one by one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.errors import PrepError

# Row-level problems of the post table, in the order they are checked: a post is counted under the first it has.
NULL_ID = "bad metadata: id null"
NOT_UTF8 = "bad metadata: not UTF-8"
UNKNOWN_RATING = "bad metadata: unknown rating"
BAD_FAV_COUNT = "bad metadata: fav_count null or negative"
NO_YEAR = "bad metadata: created_at without a year"
NULL_FLAG = "bad metadata: is_deleted or is_banned null"
DUPLICATE_ID = "bad metadata: duplicate post id"
# Tags that cannot go into a caption: (stage name, what the error says of the tag). Checked once per distinct name.
TAG_PROBLEMS = (
    ("bad tag: null or empty name", "has a null or empty name"),
    ("bad tag: not UTF-8", "is not UTF-8"),
    ("bad tag: control character", "holds a control character"),
    ("bad tag: holds ','", "holds the caption separator ','"),
    ("bad tag: holds '|||'", "holds the keep separator '|||'"),
)
PROBLEM_ORDER = (NULL_ID, NOT_UTF8, UNKNOWN_RATING, BAD_FAV_COUNT, NO_YEAR, NULL_FLAG, DUPLICATE_ID,
                 *(stage for stage, _ in TAG_PROBLEMS))
LENIENT_HINT = 'input.bad_metadata = "skip" leaves such posts out'
# C0 and C1 control characters (newline and tab included), the caption separator and the keep separator
_TAG_SUSPECT = r"^$|[\x{0}-\x{1f}\x{7f}-\x{9f}]|,|\|\|\|"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Skip:
    """Posts left out for one kind of bad metadata (input.bad_metadata = "skip"), for the report."""

    problem: str  # the stage name, one of PROBLEM_ORDER
    count: int
    first: str  # where the first one is and what it holds


class BadRows:
    """What is done with bad metadata, as input.bad_metadata says: "fail" stops at the first problem with a
    one-line error; "skip" records each kind of problem (posts left out), to be shown as stages."""

    def __init__(self, policy: Literal["fail", "skip"]):
        if policy not in ("fail", "skip"):
            raise ValueError(f"input.bad_metadata is 'fail' or 'skip', not {policy!r}")
        self.policy = policy
        self._found: dict[str, Skip] = {}

    def found(self, problem: str, count: int, first: str, error: str, hint: str = LENIENT_HINT) -> None:
        """`count` posts have `problem` (one of PROBLEM_ORDER): with "fail" the error `error; hint`, else they
        are recorded as left out, `first` saying where the first is (kept from the first report of a kind)."""
        if self.policy == "fail":
            raise PrepError(f"{error}; {hint}")
        known = self._found.get(problem)
        self._found[problem] = Skip(problem, count, first) if known is None else replace(
            known, count=known.count + count)

    @property
    def left_out(self) -> tuple[Skip, ...]:
        """The posts left out, a Skip per kind of problem, in PROBLEM_ORDER."""
        return tuple(sorted(self._found.values(), key=lambda s: PROBLEM_ORDER.index(s.problem)))


def invalid_utf8(values: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Which strings of `values` are not valid UTF-8 (Parquet readers do not check); None when all are,
    found in one pass in the usual case. Only the non-ASCII strings of a failing column are decoded one by one."""
    try:
        values.validate(full=True)
        return None
    except pa.ArrowInvalid:
        pass
    masks = []
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        mask = np.zeros(len(chunk), bool)
        rows = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(chunk), True).to_numpy(zero_copy_only=False))
        raws = chunk.take(pa.array(rows, pa.int64())).cast(pa.binary()).to_pylist()
        for row, raw in zip(rows.tolist(), raws, strict=True):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                mask[row] = True
        masks.append(mask)
    return np.concatenate(masks) if masks else np.zeros(0, bool)


def shown_value(column: pa.ChunkedArray | pa.Array, row: int) -> str:
    """A value as an error message shows it: a repr, bytes where it is not UTF-8, null."""
    cell = column.slice(row, 1)
    if pa.types.is_string(cell.type) or pa.types.is_large_string(cell.type):
        raw = cell.cast(pa.binary())[0].as_py()
        if raw is None:
            return "null"
        try:
            return repr(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return repr(raw)
    value = cell[0].as_py()
    return "null" if value is None else repr(value)


class RowChecks:
    """The bad rows of one post file, checked in PROBLEM_ORDER and reported to `bad_rows`: the first is an
    error (strict), or every one is counted once, under the first problem it has, and left out (lenient)."""

    def __init__(self, path: Path, ids: pa.ChunkedArray, bad_rows: BadRows):
        self.path, self.ids, self.bad_rows = path, ids, bad_rows
        self.bad = np.zeros(len(ids), bool)

    def check(self, problem: str, column: str, values, mask: np.ndarray, what: str, detail: str = "") -> None:
        new = mask & ~self.bad
        count = int(new.sum())
        if not count:
            return
        row = int(np.argmax(new))
        post = self.ids[row].as_py()
        where = f"row {row:,}" if post is None else f"post {post}"
        value = shown_value(values, row)
        self.bad_rows.found(problem, count, f"first: {self.path.name}, {where}, {column} {value}",
                            f"{self.path}: column '{column}' has {count:,} {what}, first {value} in {where}{detail}")
        self.bad |= new


@dataclass
class NameCheck:
    names: pa.Array  # the names, each bad one replaced by "" (so that string functions never fail on them)
    problem: np.ndarray | None  # as TagRows.problem
    bad_names: dict[int, str]


def check_names(names: pa.Array) -> NameCheck:
    """Find the names that cannot go into a caption (TAG_PROBLEMS): one vectorized pass over the distinct
    names, then a closer look at the few suspects."""
    suspect = pc.fill_null(pc.match_substring_regex(names, _TAG_SUSPECT), True)
    invalid = invalid_utf8(names)
    if invalid is not None:
        suspect = pc.or_(suspect, pa.array(invalid))
    if not pc.any(suspect).as_py():
        return NameCheck(names, None, {})
    rows = np.flatnonzero(suspect.to_numpy(zero_copy_only=False))
    problem, bad_names = np.zeros(len(names), np.int8), {}
    raws = names.take(pa.array(rows, pa.int64())).cast(pa.binary()).to_pylist()
    for row, raw in zip(rows.tolist(), raws, strict=True):
        problem[row], bad_names[row] = _name_problem(raw)
    if not problem.any():
        return NameCheck(names, None, {})
    bad_names = {row: shown for row, shown in bad_names.items() if problem[row]}
    return NameCheck(pc.if_else(pa.array(problem == 0), names, pa.scalar("", names.type)), problem, bad_names)


def _name_problem(raw: bytes | None) -> tuple[int, str]:
    """(0, or 1 + the index in TAG_PROBLEMS of the first the name has; the name as an error shows it)."""
    if not raw:
        return 1, "null" if raw is None else "''"
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 2, repr(raw)
    for code, bad in ((3, _CONTROL.search(name)), (4, "," in name), (5, "|||" in name)):
        if bad:
            return code, repr(name)
    return 0, repr(name)
