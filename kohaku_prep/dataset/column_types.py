"""Column type families: what Arrow and Parquet writers produce for one logical column, and its one
canonical type here.

pyarrow, pandas and polars write the same text as `string`, `large_string`, `string_view` or
dictionary-encoded strings, integers at any width (or float64 where pandas met a null), and flags as
booleans or 0/1 integers. Each column is checked against its family and cast to the canonical type
(string, int64, bool) right after it is read, so nothing downstream sees the variety.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kohaku_prep.errors import PrepError

INTEGER, STRING, BOOLEAN, TIME, RATING = ("integer", "string", "boolean or 0/1 integer", "string or timestamp",
                                          "string or integer")


def _value_type(tp: pa.DataType) -> pa.DataType:
    return tp.value_type if pa.types.is_dictionary(tp) else tp


def is_string(tp: pa.DataType) -> bool:
    tp = _value_type(tp)
    return pa.types.is_string(tp) or pa.types.is_large_string(tp) or pa.types.is_string_view(tp)


def _is_number(tp: pa.DataType) -> bool:
    tp = _value_type(tp)
    return pa.types.is_integer(tp) or pa.types.is_floating(tp)


def accepts(kind: str, tp: pa.DataType) -> bool:
    """Whether a column of type `tp` can hold `kind`. A float column may hold integers (pandas writes an
    integer column with a null as float64); its values are checked when it is cast."""
    if pa.types.is_null(tp):  # every value null: the row checks say so
        return True
    return {
        INTEGER: _is_number(tp),
        STRING: is_string(tp),
        BOOLEAN: pa.types.is_boolean(_value_type(tp)) or _is_number(tp),
        TIME: is_string(tp) or pa.types.is_timestamp(tp),
        RATING: is_string(tp) or _is_number(tp),
    }[kind]


def as_string(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Text as `string`, chunk by chunk (a chunk is a row group or batch, far below string's 2 GiB)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = []
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        if pa.types.is_timestamp(chunk.type):
            chunk = pc.strftime(chunk, "%Y-%m-%dT%H:%M:%S" + ("%z" if chunk.type.tz else ""))
        out.append(chunk.cast(pa.string()))
    return pa.chunked_array(out, pa.string())


def as_int64(column: pa.ChunkedArray | pa.Array, what: str) -> pa.ChunkedArray:
    """Integers as int64, nulls kept; a float column must hold whole numbers only (else an error naming
    `what`, e.g. "FILE: column 'fav_count'")."""
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if pa.types.is_dictionary(column.type):
        column = pa.chunked_array([c.dictionary_decode() for c in column.chunks], column.type.value_type)
    if pa.types.is_floating(column.type):
        whole = pc.equal(pc.floor(column), column)
        if not pc.all(pc.fill_null(whole, True)).as_py():
            first = column.filter(pc.invert(pc.fill_null(whole, True)))[0].as_py()
            raise PrepError(f"{what} holds {first!r}, which is not an integer")
    return column.cast(pa.int64())


def as_bool(column: pa.ChunkedArray | pa.Array, what: str) -> pa.ChunkedArray:
    """Flags as bool, nulls kept: numbers are true where not 0."""
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if pa.types.is_dictionary(column.type):
        column = pa.chunked_array([c.dictionary_decode() for c in column.chunks], column.type.value_type)
    if pa.types.is_boolean(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.bool_())
    return pc.not_equal(as_int64(column, what), 0)


def canonical(column: pa.ChunkedArray, kind: str, what: str) -> pa.ChunkedArray:
    """A column of family `kind` in its canonical type: string (text, timestamps written out), int64
    (integers), bool (flags); a rating keeps string or int64."""
    if kind == INTEGER:
        return as_int64(column, what)
    if kind == BOOLEAN:
        return as_bool(column, what)
    if kind == RATING and not is_string(column.type) and not pa.types.is_null(column.type):
        return as_int64(column, what)
    return as_string(column)
