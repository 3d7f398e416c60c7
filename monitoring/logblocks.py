"""Columnar blocks of the inference log: the immutable columns of logged rows as Arrow IPC.

Pure encoding and decoding, no database: :mod:`monitoring.store` writes a block in the same
transaction as the rows it holds and reads windows from blocks. A block holds each row's log
`id`, `request_id`, `ts`, `model_version`, `prediction`, `probability`, `probabilities` and its
features; labels arrive later and stay in the row table only.

A column's kind is chosen per block from the Python types of its values, so that decoding gives
back exactly what the JSON column gives (`float`, `int`, `bool`, `str`; anything else, or a
mix, is kept as each value's JSON text and decoded value by value):

    float64 <- float (NaN and infinities become null, as in JSON), int64 <- int, bool <- bool,
    dictionary<string> <- str, binary (JSON text) <- anything else or a mix
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

FEATURE_PREFIX = "f."
_JSON = pa.binary()
_COMPRESSION = "lz4"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------- encoding


def kinded_array(values: Sequence[Any]) -> pa.Array:
    """One column of a block, in the narrowest kind that decodes back to the same values."""
    kinds = {type(v) for v in values if v is not None}
    if kinds & _NUMPY_EXACT.keys():  # numpy scalars whose JSON is the Python value's
        values = [_NUMPY_EXACT.get(type(v), _same)(v) for v in values]
        kinds = {type(v) for v in values if v is not None}
    if kinds <= {float}:
        numbers = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return pa.array(numbers, mask=~np.isfinite(numbers))
    if kinds == {int} and all(v is None or _INT64_MIN <= v <= _INT64_MAX for v in values):
        return pa.array(values, type=pa.int64())
    if kinds == {bool}:
        return pa.array(values, type=pa.bool_())
    if kinds == {str}:
        return pa.array(values, type=pa.string()).dictionary_encode()
    return pa.array([None if v is None else _dumps(v) for v in values], type=_JSON)


def _same(value: Any) -> Any:
    return value


#: numpy scalar types converted to the Python value orjson writes for them (float32 is not:
#: its JSON is the shortest float32 text, not the float64 value)
_NUMPY_EXACT: dict[type, Any] = {
    np.float64: float,
    np.bool_: bool,
    **{t: int for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)},
}


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _probability(value: Any) -> float:
    return math.nan if value is None else float(value)


def block_table(rows: Sequence[Mapping[str, Any]], ids: Sequence[int]) -> pa.Table:
    """The block of logged `rows` (records as :func:`monitoring.store.log_record` makes them)
    whose log ids are `ids`."""
    names = sorted({name for row in rows for name in (row.get("features") or {})})
    features = [row.get("features") or {} for row in rows]
    probabilities = [row.get("probabilities") for row in rows]
    probability = np.array([_probability(r.get("probability")) for r in rows], dtype=np.float64)
    columns: dict[str, pa.Array] = {
        "id": pa.array(ids, type=pa.int64()),
        "request_id": pa.array([r["request_id"] for r in rows], type=pa.string()),
        "ts": pa.array([r["ts"] for r in rows], type=pa.timestamp("us", tz="UTC")),
        "model_version": pa.array([r["model_version"] for r in rows], type=pa.int64()),
        "prediction": kinded_array([r.get("prediction") for r in rows]),
        "probability": pa.array(probability, mask=np.isnan(probability)),
        "probabilities": pa.array(
            [None if p is None else _dumps(p) for p in probabilities], type=_JSON
        ),
    }
    for name in names:
        columns[FEATURE_PREFIX + name] = kinded_array([f.get(name) for f in features])
    return pa.table(columns)


def encode(table: pa.Table) -> bytes:
    """A block as Arrow IPC stream bytes (lz4-compressed buffers)."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=_COMPRESSION)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes | memoryview) -> pa.Table:
    """Inverse of :func:`encode`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def merge(tables: Sequence[pa.Table]) -> pa.Table:
    """Blocks concatenated into one; a column whose kind differs between them becomes JSON."""
    names = list(dict.fromkeys(name for t in tables for name in t.column_names))
    columns: dict[str, pa.ChunkedArray] = {}
    for name in names:
        parts = [_column(t, name) for t in tables]
        types = {p.type for p in parts if p.null_count < len(p)}
        if len(types) > 1 and (name.startswith(FEATURE_PREFIX) or name == "prediction"):
            parts = [_as_json(p) for p in parts]
            target = _JSON
        else:
            target = next(iter(types), parts[0].type)
            parts = [p if p.type == target else _nulls(len(p), target) for p in parts]
        columns[name] = pa.chunked_array([c for p in parts for c in p.chunks], target)
    return pa.table(columns)


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    return _nulls(table.num_rows, pa.null())


def _nulls(n: int, kind: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array([pa.nulls(n, kind)], kind)


def _as_json(column: pa.ChunkedArray) -> pa.ChunkedArray:
    values = python_values(column)
    return pa.chunked_array([pa.array([None if v is None else _dumps(v) for v in values], _JSON)])


# --------------------------------------------------------------------------- decoding


def python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as the JSON column would give them back (JSON kind decoded)."""
    if column.type == _JSON:
        return [None if v is None else orjson.loads(v) for v in column.to_pylist()]
    if pa.types.is_null(column.type):
        return [None] * len(column)
    return column.to_pylist()


def numeric(column: pa.ChunkedArray) -> np.ndarray:
    """A feature read as float64, like `float(value)` of each JSON value (NaN when missing or
    not a number)."""
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_null(kind):
        return column.to_numpy().astype(np.float64, copy=False)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        filled = column.fill_null(False) if pa.types.is_boolean(kind) else column.fill_null(0)
        values = filled.to_numpy().astype(np.float64)
        values[column.is_null().to_numpy(zero_copy_only=False)] = math.nan
        return values
    if pa.types.is_dictionary(kind):
        return _through_dictionary(column, to_float, np.float64, math.nan)
    return np.array([to_float(v) for v in python_values(column)], dtype=np.float64)


def categorical(column: pa.ChunkedArray) -> np.ndarray:
    """A feature read as object str (None when missing), like `str(value)` of each JSON value."""
    if pa.types.is_dictionary(column.type):
        return _through_dictionary(column, to_str, object, None)
    return np.array([to_str(v) for v in python_values(column)], dtype=object)


def _through_dictionary(column: pa.ChunkedArray, convert: Any, dtype: Any, missing: Any) -> Any:
    """Convert each chunk's distinct values once, then take by the codes."""
    parts = []
    for chunk in column.chunks:
        levels = np.array([convert(v) for v in chunk.dictionary.to_pylist()] + [missing], dtype)
        parts.append(levels[chunk.indices.fill_null(len(chunk.dictionary)).to_numpy()])
    return np.concatenate(parts) if parts else np.array([], dtype=dtype)


def to_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def to_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def label_series(values: list[Any]) -> pd.Series:
    """Labels/predictions as int64, float64, bool or object, like the training target column."""
    present = [v for v in values if v is not None]
    if len(present) == len(values):
        if all(isinstance(v, bool) for v in present):
            return pd.Series(values, dtype=bool)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            return pd.Series(values, dtype=np.int64)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if not present:
        return pd.Series([math.nan] * len(values), dtype=np.float64)
    return pd.Series(values, dtype=object)


def prediction_series(column: pa.ChunkedArray) -> pd.Series:
    """:func:`label_series` of a prediction column, without Python values on the common kinds."""
    kind = column.type
    nulls = column.null_count
    if nulls == len(column):
        return label_series([None] * nulls)
    if pa.types.is_integer(kind) and nulls == 0:
        return pd.Series(column.to_numpy(), dtype=np.int64)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pd.Series(numeric(column), dtype=np.float64)
    if pa.types.is_dictionary(kind):
        return pd.Series(categorical(column), dtype=object)
    return label_series(python_values(column))


__all__ = [
    "FEATURE_PREFIX",
    "block_table",
    "categorical",
    "decode",
    "encode",
    "kinded_array",
    "label_series",
    "merge",
    "numeric",
    "prediction_series",
    "python_values",
    "to_float",
    "to_str",
]
