"""The year of `created_at`, read as leniently as HakuBooru read it (dateutil's parser), fast for ISO.

HakuBooru took `dateutil.parser.parse(created_at).year`, so `2010/05/03 12:00:00`, `20100503T120000`
and ` 2008-01-01T00:00:00` have a year and `2010-13-45T00:00:00` has none. A strict, valid ISO 8601
date (what every dump writes) is read column-wise; dateutil looks only at the other distinct strings.
The year is the one written, in the string's own UTC offset, never converted.
"""
from __future__ import annotations

import datetime

import dateutil.parser
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A subset of what dateutil reads the same way: date, optional time of day and UTC offset, all in range
# but the day of the month, which is checked against the month below.
_ISO = (r"^(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])-(?P<day>0[1-9]|[12][0-9]|3[01])"
        r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
        r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?$")
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# Two defaults: dateutil fills what a string leaves out from its default, so a year that differs between
# them was not written (HakuBooru's default was the day it ran; here such a string has no year).
_DEFAULTS = (datetime.datetime(1, 1, 1), datetime.datetime(2, 1, 1))


def lenient_year(text: str) -> int:
    """The year dateutil reads in `text`, -1 where it reads none."""
    try:
        first, second = (dateutil.parser.parse(text, default=d).year for d in _DEFAULTS)
    except (ValueError, OverflowError, TypeError):
        return -1
    return first if first == second else -1


# danbooru's own format, e.g. 2005-05-23T23:35:31.000-04:00: one byte per position, read as a matrix
_DANBOORU_WIDTH = 29
_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 24, 25, 27, 28]
_LITERALS = {4: b"-", 7: b"-", 10: b"T ", 13: b":", 16: b":", 19: b".", 23: b"+-", 26: b":"}


def _danbooru_format_years(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(rows in danbooru's own format with a valid date, time and offset; their years): no regex, a byte
    matrix of the rows 29 bytes long, checked position by position."""
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], np.int32)[text.offset:text.offset + n + 1]
    rows = np.diff(offsets) == _DANBOORU_WIDTH
    if text.null_count:
        rows &= text.is_valid().to_numpy(zero_copy_only=False)
    years = np.full(n, -1, np.int64)
    if not rows.any():
        return rows, years
    same = text if rows.all() else text.filter(pa.array(rows))
    at = np.frombuffer(same.buffers()[1], np.int32)[same.offset:same.offset + len(same) + 1]
    matrix = np.frombuffer(same.buffers()[2], np.uint8)[at[0]:at[-1]].reshape(-1, _DANBOORU_WIDTH)
    d = np.ascontiguousarray(matrix.T) - np.uint8(ord("0"))  # one row per position; not a digit: > 9
    ok = (d[_DIGITS] <= 9).all(axis=0)
    for position, allowed in _LITERALS.items():
        ok &= np.isin(d[position], np.frombuffer(allowed, np.uint8) - np.uint8(ord("0")))

    def number(first: int, width: int = 2) -> np.ndarray:
        value = d[first].astype(np.int32)
        for k in range(1, width):
            value = value * 10 + d[first + k]
        return value

    year, month, day = number(0, 4), number(5), number(8)
    ok &= (number(11) <= 23) & (number(14) <= 59) & (number(17) <= 59) & (number(24) <= 23) & (number(27) <= 59)
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= _last_day(year, np.clip(month, 0, 12)))
    rows[rows] = ok
    years[rows] = year[ok]
    return rows, years


def _last_day(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return _DAYS[month] + ((month == 2) & leap)


def created_years(created_at: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The year written in each `created_at` (a string or a timestamp); -1 where there is none (null, or
    a string that no date can be read from)."""
    if pa.types.is_timestamp(created_at.type):
        return pc.fill_null(pc.year(created_at), -1).to_numpy().astype(np.int64).reshape(-1)
    text = created_at.cast(pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    done, years = _danbooru_format_years(text)
    rest = ~done & (text.is_valid().to_numpy(zero_copy_only=False) if text.null_count else True)
    if rest.any():  # other ISO layouts by regex, then whatever is left by dateutil
        years[rest] = _other_years(text.filter(pa.array(rest)))
    return years


def _other_years(text: pa.Array) -> np.ndarray:
    parts = pc.extract_regex(text, _ISO)
    year, month, day = (pc.fill_null(pc.cast(pc.struct_field(parts, [k]), pa.int64()), 0).to_numpy(
        zero_copy_only=False) for k in range(3))
    iso = (month > 0) & (day <= _last_day(year, month))
    years = np.where(iso, year, -1)
    if not iso.all():
        others = text.filter(pa.array(~iso))
        distinct = pc.unique(others)
        found = np.array([lenient_year(s) for s in distinct.to_pylist()] + [-1], np.int64)
        years[~iso] = found[pc.index_in(others, value_set=distinct).fill_null(-1).to_numpy()]
    return years
