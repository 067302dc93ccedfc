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


def created_years(created_at: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The year written in each `created_at` (a string or a timestamp); -1 where there is none (null, or
    a string that no date can be read from)."""
    if pa.types.is_timestamp(created_at.type):
        return pc.fill_null(pc.year(created_at), -1).to_numpy().astype(np.int64).reshape(-1)
    text = created_at.cast(pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    parts = pc.extract_regex(text, _ISO)
    year, month, day = (pc.fill_null(pc.cast(pc.struct_field(parts, [k]), pa.int64()), 0).to_numpy(
        zero_copy_only=False) for k in range(3))
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last_day = _DAYS[month] + ((month == 2) & leap)
    iso = (month > 0) & (day <= last_day)
    years = np.where(iso, year, -1)
    rest = ~iso & pc.is_valid(text).to_numpy(zero_copy_only=False)
    if rest.any():
        others = text.filter(pa.array(rest))
        distinct = pc.unique(others)
        found = np.array([lenient_year(s) for s in distinct.to_pylist()] + [-1], np.int64)
        years[rest] = found[pc.index_in(others, value_set=distinct).fill_null(-1).to_numpy()]
    return years
