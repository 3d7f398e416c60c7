"""The columnar form of the inference log: segments of rows as typed Arrow columns.

The log keeps every row's features as one JSON document, which is what a writer can append fast
and what never loses a field. Decoding those documents in Python is the slow part of reading a
window (25-45k rows/s). Compaction (:func:`monitoring.store.compact_log`, off the writer path)
decodes each row once and stores a block of rows as an lz4-compressed Arrow IPC stream: one
float64 column per numeric feature, one dictionary column per categorical feature, the typed
prediction and label. Reading a segment back is a decompression and a few array copies.

Everything here is pure (pyarrow, numpy, pandas): no database. The typing rules are the log's
own (:func:`to_float`, :func:`to_str`, :func:`label_series`), so a window read from segments
equals the window decoded from JSON, types included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from core.errors import DriftloopError

#: How a value column (prediction, label) is stored: by the Python type of its non-null values.
KINDS = ("none", "bool", "int", "float", "str", "json")
_INT64 = (-(2**63), 2**63 - 1)
_COMPRESSION = "lz4"


class SegmentError(DriftloopError, ValueError):
    """A segment of the columnar log cannot be decoded (corrupt or written by another schema)."""


# --------------------------------------------------------------------------- typing rules


def to_float(value: Any) -> float:
    """A numeric feature as float64: None and anything unparsable are NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def to_str(value: Any) -> str | None:
    """A categorical feature as text, None when missing."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def label_series(values: list[Any]) -> pd.Series:
    """Labels/predictions as int64, float64, bool or object, like the training target column
    (integers beyond int64 as float64, as numbers of mixed types are)."""
    present = [v for v in values if v is not None]
    if len(present) == len(values):
        if all(isinstance(v, bool) for v in present):
            return pd.Series(values, dtype=bool)
        if all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in present):
            return pd.Series(values, dtype=np.int64)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if not present:
        return pd.Series([math.nan] * len(values), dtype=np.float64)
    return pd.Series(values, dtype=object)


def value_kind(values: Sequence[Any]) -> str:
    """The kind a column of values is stored as (see :data:`KINDS`)."""
    present = [v for v in values if v is not None]
    if not present:
        return "none"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in present):
        return "int"
    if all(type(v) is float for v in present):
        return "float"
    if all(isinstance(v, str) for v in present):
        return "str"
    return "json"


# --------------------------------------------------------------------------- value columns


@dataclass(frozen=True)
class Values:
    """A typed column of predictions or labels: `values[i]` holds where `valid[i]`."""

    kind: str
    values: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)

    def take(self, index: np.ndarray) -> Values:
        return Values(self.kind, self.values[index], self.valid[index])

    def objects(self) -> list[Any]:
        """The values as Python objects (None where missing)."""
        if self.kind == "none":
            return [None] * len(self)
        items = self.values.tolist()
        return [v if ok else None for v, ok in zip(items, self.valid.tolist(), strict=True)]


_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float64}


def make_values(values: Sequence[Any]) -> Values:
    """A typed column from Python values (the decoded JSON of the log)."""
    kind = value_kind(values)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    if kind == "none":
        return Values(kind, np.zeros(len(values), dtype=np.int64), valid)
    if kind in _DTYPES:
        fill = _DTYPES[kind](0)
        array = np.array([fill if v is None else v for v in values], dtype=_DTYPES[kind])
        return Values(kind, array, valid)
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return Values(kind, array, valid)


def concat_values(parts: Sequence[Values]) -> Values:
    """Several typed columns as one; kinds that differ become Python objects."""
    kinds = {p.kind for p in parts if p.kind != "none" and len(p)}
    valid = np.concatenate([p.valid for p in parts]) if parts else np.zeros(0, dtype=bool)
    if not kinds:
        return Values("none", np.zeros(len(valid), dtype=np.int64), valid)
    if len(kinds) == 1 and (kind := next(iter(kinds))) in _DTYPES:
        dtype = _DTYPES[kind]
        arrays = [p.values if p.kind == kind else np.zeros(len(p), dtype=dtype) for p in parts]
        return Values(kind, np.concatenate(arrays).astype(dtype, copy=False), valid)
    array = np.empty(len(valid), dtype=object)
    array[:] = [v for p in parts for v in p.objects()]
    merged = kinds.pop() if len(kinds) == 1 else "json"
    return Values(merged, array, valid)


def patched(column: Values, positions: np.ndarray, new: Sequence[Any]) -> Values:
    """`column` with `new[i]` at `positions[i]` (late labels); the kind widens when it must."""
    if len(positions) == 0:
        return column
    incoming = make_values(list(new))
    merged = concat_values([column, incoming])
    n = len(column)
    values = merged.values[:n].copy()
    valid = merged.valid[:n].copy()
    values[positions] = merged.values[n:]
    valid[positions] = merged.valid[n:]
    if merged.kind in _DTYPES:
        return Values(merged.kind, values, valid)
    return Values(value_kind([v for v, ok in zip(values, valid, strict=True) if ok]), values, valid)


def to_series(column: Values) -> pd.Series:
    """The pandas column :func:`label_series` gives for the same values, without the object list
    on the common paths (all ints, all bools, numbers with gaps)."""
    n = len(column)
    if n == 0:
        return label_series([])
    if not column.valid.any():
        return pd.Series(np.full(n, math.nan), dtype=np.float64)
    complete = bool(column.valid.all())
    if column.kind == "int" and complete:
        return pd.Series(column.values, dtype=np.int64)
    if column.kind == "bool" and complete:
        return pd.Series(column.values, dtype=bool)
    if column.kind in ("int", "float"):
        values = column.values.astype(np.float64)
        values[~column.valid] = math.nan
        return pd.Series(values, dtype=np.float64)
    return label_series(column.objects())


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Block:
    """Rows of the log in columns, in log (id) order; what a segment holds and a read returns."""

    ids: np.ndarray
    ts_us: np.ndarray
    versions: np.ndarray
    request_ids: np.ndarray
    numeric: Mapping[str, np.ndarray]
    categorical: Mapping[str, np.ndarray]
    prediction: Values
    probability: np.ndarray
    label: Values
    labeled: np.ndarray
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> Block:
        return Block(
            ids=self.ids[index],
            ts_us=self.ts_us[index],
            versions=self.versions[index],
            request_ids=self.request_ids[index],
            numeric={k: v[index] for k, v in self.numeric.items()},
            categorical={k: v[index] for k, v in self.categorical.items()},
            prediction=self.prediction.take(index),
            probability=self.probability[index],
            label=self.label.take(index),
            labeled=self.labeled[index],
            probabilities=None if self.probabilities is None else self.probabilities[index],
        )


def _objects(items: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


@dataclass(frozen=True)
class RawRows:
    """Log rows as the database returns them, column by column (features as decoded dicts)."""

    ids: Sequence[int]
    ts_us: np.ndarray
    versions: Sequence[int]
    request_ids: Sequence[str]
    features: Sequence[Mapping[str, Any] | None]
    predictions: Sequence[Any]
    probability: Sequence[float | None]
    probabilities: Sequence[Any]
    labels: Sequence[Any]
    labeled: Sequence[bool]


def numeric_column(values: list[Any]) -> np.ndarray:
    """Feature values as float64 by :func:`to_float`; numbers and None (the common case) by
    numpy in one pass, anything else (text, say) value by value."""
    if all(type(v) in _NUMBERS for v in values):
        return np.array(values, dtype=np.float64)
    return np.fromiter((to_float(v) for v in values), np.float64, len(values))


_NUMBERS = frozenset({float, int, bool, type(None)})


def categorical_column(values: list[Any]) -> np.ndarray:
    """Feature values as text by :func:`to_str` (an object array)."""
    if not all(type(v) is str or v is None for v in values):
        values = [to_str(v) for v in values]
    return _objects(values)


def block_from_raw(raw: RawRows, *, numeric: Sequence[str], categorical: Sequence[str]) -> Block:
    """A block from the log's rows."""
    n = len(raw.ids)
    features = [f or {} for f in raw.features]
    return Block(
        ids=np.fromiter(raw.ids, np.int64, n),
        ts_us=np.asarray(raw.ts_us, dtype=np.int64),
        versions=np.fromiter(raw.versions, np.int64, n),
        request_ids=_objects(list(raw.request_ids)),
        numeric={name: numeric_column([f.get(name) for f in features]) for name in numeric},
        categorical={
            name: categorical_column([f.get(name) for f in features]) for name in categorical
        },
        prediction=make_values(list(raw.predictions)),
        probability=numeric_column(list(raw.probability)),
        label=make_values(list(raw.labels)),
        labeled=np.fromiter((bool(v) for v in raw.labeled), bool, n),
        probabilities=_objects(list(raw.probabilities)),
    )


def concat_blocks(blocks: Sequence[Block], *, probabilities: bool) -> Block:
    """Blocks as one (same features in each)."""
    if not blocks:
        raise ValueError("concat_blocks needs at least one block")
    first = blocks[0]
    return Block(
        ids=np.concatenate([b.ids for b in blocks]),
        ts_us=np.concatenate([b.ts_us for b in blocks]),
        versions=np.concatenate([b.versions for b in blocks]),
        request_ids=np.concatenate([b.request_ids for b in blocks]),
        numeric={k: np.concatenate([b.numeric[k] for b in blocks]) for k in first.numeric},
        categorical={
            k: np.concatenate([b.categorical[k] for b in blocks]) for k in first.categorical
        },
        prediction=concat_values([b.prediction for b in blocks]),
        probability=np.concatenate([b.probability for b in blocks]),
        label=concat_values([b.label for b in blocks]),
        labeled=np.concatenate([b.labeled for b in blocks]),
        probabilities=(
            np.concatenate([_probabilities(b) for b in blocks]) if probabilities else None
        ),
    )


class BlockBuilder:
    """Blocks appended one at a time into columns allocated once, for `capacity` rows at most:
    the same block as :func:`concat_blocks` of them, without holding every block and a second
    copy at once. Each block's own arrays can be freed (and their memory reused for the next)
    as soon as it is appended; the concatenation's fresh memory cost 0.27-1.2 s of page faults
    for 1.2M rows here, against 0.12-0.21 s this way (measured)."""

    def __init__(
        self,
        capacity: int,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        probabilities: bool,
    ) -> None:
        self._capacity, self._n = capacity, 0
        self._ints = {k: np.empty(capacity, dtype=np.int64) for k in ("ids", "ts_us", "versions")}
        self._request_ids = np.empty(capacity, dtype=object)
        self._numeric = {k: np.empty(capacity, dtype=np.float64) for k in numeric}
        self._categorical = {k: np.empty(capacity, dtype=object) for k in categorical}
        self._probability = np.empty(capacity, dtype=np.float64)
        self._labeled = np.empty(capacity, dtype=bool)
        self._probabilities = np.empty(capacity, dtype=object) if probabilities else None
        self._predictions: list[Values] = []
        self._labels: list[Values] = []

    def __len__(self) -> int:
        return self._n

    def append(self, block: Block) -> None:
        """Copy the block's rows in after those appended before (same features in each)."""
        start, stop = self._n, self._n + len(block)
        if stop > self._capacity:
            raise ValueError(f"BlockBuilder holds {self._capacity} rows; {stop} were appended")
        if set(block.numeric) != set(self._numeric) or set(block.categorical) != set(
            self._categorical
        ):
            raise ValueError("a block with other features than the builder's was appended")
        here = slice(start, stop)
        self._ints["ids"][here] = block.ids
        self._ints["ts_us"][here] = block.ts_us
        self._ints["versions"][here] = block.versions
        self._request_ids[here] = block.request_ids
        for name, column in self._numeric.items():
            column[here] = block.numeric[name]
        for name, column in self._categorical.items():
            column[here] = block.categorical[name]
        self._probability[here] = block.probability
        self._labeled[here] = block.labeled
        if self._probabilities is not None:
            self._probabilities[here] = _probabilities(block)
        self._predictions.append(block.prediction)
        self._labels.append(block.label)
        self._n = stop

    def finish(self) -> Block:
        """The rows appended, as one block (views of the builder's columns)."""
        n = self._n
        return Block(
            ids=self._ints["ids"][:n],
            ts_us=self._ints["ts_us"][:n],
            versions=self._ints["versions"][:n],
            request_ids=self._request_ids[:n],
            numeric={k: v[:n] for k, v in self._numeric.items()},
            categorical={k: v[:n] for k, v in self._categorical.items()},
            prediction=concat_values(self._predictions),
            probability=self._probability[:n],
            label=concat_values(self._labels),
            labeled=self._labeled[:n],
            probabilities=None if self._probabilities is None else self._probabilities[:n],
        )


def _probabilities(block: Block) -> np.ndarray:
    if block.probabilities is None:
        raise SegmentError("a block was read without its probabilities")
    return block.probabilities


def _value_array(column: Values) -> pa.Array:
    mask = ~column.valid
    if column.kind == "none":
        return pa.nulls(len(column), pa.int64())
    if column.kind in _DTYPES:
        return pa.array(column.values, mask=mask)
    if column.kind == "str":
        return pa.array(column.values.tolist(), type=pa.string(), mask=mask)
    texts = [
        orjson.dumps(v).decode() if ok else None
        for v, ok in zip(column.values, column.valid, strict=True)
    ]
    return pa.array(texts, type=pa.string())


def _values_from(array: pa.Array, kind: str) -> Values:
    n = len(array)
    valid = ~np.asarray(array.is_null(), dtype=bool) if array.null_count else np.ones(n, bool)
    if kind == "none":
        return Values(kind, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))
    if kind in _DTYPES:
        fill = _DTYPES[kind](0)
        values = array.fill_null(fill).to_numpy(zero_copy_only=False)
        return Values(kind, values.astype(_DTYPES[kind], copy=False), valid)
    texts = array.to_numpy(zero_copy_only=False)
    if kind == "str":
        return Values(kind, texts, valid)
    return Values(kind, _objects([None if t is None else orjson.loads(t) for t in texts]), valid)


def _dictionary(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), type=pa.string()).dictionary_encode()


def _undictionary(array: pa.Array) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    words = np.empty(len(array.dictionary) + 1, dtype=object)
    words[: len(array.dictionary)] = array.dictionary.to_pylist()
    words[-1] = None
    codes = array.indices.fill_null(len(array.dictionary)).to_numpy(zero_copy_only=False)
    return words[codes]


def encode_segment(block: Block) -> bytes:
    """A block as an lz4-compressed Arrow IPC stream (the `data` of a segment)."""
    columns: dict[str, pa.Array] = {
        "id": pa.array(block.ids, pa.int64()),
        "ts_us": pa.array(block.ts_us, pa.int64()),
        "model_version": pa.array(block.versions, pa.int64()),
        "request_id": pa.array(block.request_ids.tolist(), pa.string()),
        "prediction": _value_array(block.prediction),
        "probability": pa.array(block.probability, pa.float64()),
        "label": _value_array(block.label),
        "labeled": pa.array(block.labeled, pa.bool_()),
        "probabilities": pa.array(
            [None if p is None else orjson.dumps(p).decode() for p in _probabilities(block)],
            pa.string(),
        ),
    }
    columns.update({f"n:{k}": pa.array(v, pa.float64()) for k, v in block.numeric.items()})
    columns.update({f"c:{k}": _dictionary(v) for k, v in block.categorical.items()})
    metadata = {"prediction_kind": block.prediction.kind, "label_kind": block.label.kind}
    table = pa.table(columns).replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression=_COMPRESSION)
    with ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _open_segment(
    data: bytes | memoryview,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    only: Sequence[str] | None = None,
) -> tuple[pa.Table, dict[str, str]]:
    """A segment's table and metadata, checked to hold the features asked for; with `only`,
    just those columns are read and decompressed."""
    try:
        buffer = pa.py_buffer(data)
        options = None
        if only is not None:
            names = ipc.open_stream(buffer).schema.names
            wanted = set(only) | {f"n:{k}" for k in numeric} | {f"c:{k}" for k in categorical}
            fields = [i for i, name in enumerate(names) if name in wanted]
            options = ipc.IpcReadOptions(included_fields=fields)
        table = ipc.open_stream(buffer, options=options).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise SegmentError(f"a log segment cannot be decoded: {exc}") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    missing = [f"n:{k}" for k in numeric if f"n:{k}" not in table.column_names] + [
        f"c:{k}" for k in categorical if f"c:{k}" not in table.column_names
    ]
    if missing or {"prediction_kind", "label_kind"} - meta.keys():
        raise SegmentError(f"a log segment lacks columns {missing or list(meta)}")
    return table, meta


def _column(table: pa.Table, name: str) -> pa.Array:
    chunks = table.column(name)
    return chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()


#: A segment's columns every decoded block has, besides the features.
_ROW_COLUMNS = ("id", "ts_us", "model_version", "prediction", "probability", "label", "labeled")


def decode_segment(
    data: bytes | memoryview,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    probabilities: bool,
    request_ids: bool = True,
) -> Block:
    """The block a segment holds, with only the features asked for (the others are not
    decompressed); without `request_ids` the block's request ids are None (a read that does not
    return them skips decoding a string per row).

    Raises SegmentError when the data is not a segment or lacks one of the features.
    """
    only = [
        *_ROW_COLUMNS,
        *(["request_id"] if request_ids else []),
        *(["probabilities"] if probabilities else []),
    ]
    table, meta = _open_segment(data, numeric=numeric, categorical=categorical, only=only)

    def column(name: str) -> pa.Array:
        return _column(table, name)

    texts = column("probabilities").to_numpy(zero_copy_only=False) if probabilities else None
    return Block(
        ids=column("id").to_numpy(),
        ts_us=column("ts_us").to_numpy(),
        versions=column("model_version").to_numpy(),
        request_ids=(
            column("request_id").to_numpy(zero_copy_only=False)
            if request_ids
            else np.full(table.num_rows, None, dtype=object)
        ),
        numeric={k: column(f"n:{k}").to_numpy(zero_copy_only=False) for k in numeric},
        categorical={k: _undictionary(column(f"c:{k}")) for k in categorical},
        prediction=_values_from(column("prediction"), meta["prediction_kind"]),
        probability=column("probability").to_numpy(zero_copy_only=False),
        label=_values_from(column("label"), meta["label_kind"]),
        labeled=column("labeled").to_numpy(zero_copy_only=False),
        probabilities=(
            None
            if texts is None
            else _objects([None if t is None else orjson.loads(t) for t in texts])
        ),
    )


@dataclass(frozen=True)
class Columns:
    """Some columns of a segment's rows: the features asked for and, when asked, the
    prediction, with the ids and times that place the rows."""

    ids: np.ndarray
    ts_us: np.ndarray
    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    prediction: Values | None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> Columns:
        return Columns(
            ids=self.ids[index],
            ts_us=self.ts_us[index],
            numeric={k: v[index] for k, v in self.numeric.items()},
            categorical={k: v[index] for k, v in self.categorical.items()},
            prediction=None if self.prediction is None else self.prediction.take(index),
        )


def decode_columns(
    data: bytes | memoryview,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: bool,
) -> Columns:
    """Only some columns of a segment (no request ids, labels or probabilities), the others
    neither read nor decompressed: what a check of a few features reads.

    Raises SegmentError when the data is not a segment or lacks one of the features.
    """
    only = ["id", "ts_us", *(["prediction"] if prediction else [])]
    table, meta = _open_segment(data, numeric=numeric, categorical=categorical, only=only)

    def owned(name: str) -> np.ndarray:
        # a copy numpy owns, not a view of Arrow's buffer: the segment's buffers go back to
        # Arrow's pool at once, and a joined column's pieces are freed to the system as it is
        # joined (views would keep every segment's buffers in the pool until the read ends)
        return np.array(_column(table, name).to_numpy(zero_copy_only=False), copy=True)

    return Columns(
        ids=owned("id"),
        ts_us=owned("ts_us"),
        numeric={k: owned(f"n:{k}") for k in numeric},
        categorical={k: _undictionary(_column(table, f"c:{k}")) for k in categorical},
        prediction=(
            _values_from(_column(table, "prediction"), meta["prediction_kind"])
            if prediction
            else None
        ),
    )


def columns_of(block: Block, *, prediction: bool) -> Columns:
    """A block's features (and prediction) as :class:`Columns`."""
    return Columns(
        block.ids,
        block.ts_us,
        dict(block.numeric),
        dict(block.categorical),
        block.prediction if prediction else None,
    )


def parts_order(parts: Sequence[Columns]) -> np.ndarray | None:
    """The permutation that puts the parts' rows, taken in order, in (ts, id) order, as the log
    is read; None when they already are (the usual case, found without joining them)."""
    pieces = [p for p in parts if len(p)]
    ordered = all(row_order(p.ts_us, p.ids) is None for p in pieces) and all(
        (a.ts_us[-1], a.ids[-1]) < (b.ts_us[0], b.ids[0])
        for a, b in zip(pieces, pieces[1:], strict=False)
    )
    if ordered:
        return None
    ts = np.concatenate([p.ts_us for p in pieces])
    ids = np.concatenate([p.ids for p in pieces])
    return np.lexsort((ids, ts))


def row_order(ts: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
    """The permutation that puts rows in (ts, id) order (None: they are)."""
    if len(ts) < 2:
        return None
    steps = np.diff(ts)
    if (steps > 0).all() or ((steps >= 0).all() and (np.diff(ids)[steps == 0] > 0).all()):
        return None
    return np.lexsort((ids, ts))


def release_memory() -> None:
    """Give memory freed after a large read back to the system: what Arrow's pool holds, and on
    glibc the free pages of the heap (freed arrays of a few hundred kB stay in the heap, so a
    read's pieces would count twice: as pieces and as the joined columns)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()


def columns_frame(
    parts: Sequence[Columns], *, last_n: int | None = None, prediction_name: str = "prediction"
) -> pd.DataFrame:
    """The features (and prediction) of :func:`block_frame`'s frame for the parts' rows, in
    (ts, id) order, the newest `last_n` only when given. Each column is joined in turn and its
    pieces released before the next, so the peak is the parts plus one column, not twice the
    window. The parts' column dicts are emptied."""
    if not parts:
        raise ValueError("columns_frame needs at least one part")
    n = sum(len(p) for p in parts)
    pick = parts_order(parts)
    if last_n is not None and n > last_n:
        pick = (np.arange(n) if pick is None else pick)[n - last_n :]

    def joined(pieces: list[np.ndarray]) -> np.ndarray:
        whole = np.concatenate(pieces)
        return whole if pick is None else whole[pick]

    first = parts[0]
    data: dict[str, Any] = {}
    for name in list(first.numeric):
        data[name] = joined([p.numeric.pop(name) for p in parts])
        release_memory()  # the pieces' pages, before the next column is joined
    for name in list(first.categorical):
        data[name] = pd.Series(joined([p.categorical.pop(name) for p in parts]), dtype=object)
        release_memory()
    if first.prediction is not None:
        column = concat_values([p.prediction for p in parts])
        data[prediction_name] = to_series(column if pick is None else column.take(pick))
    rows = n if pick is None else len(pick)
    return pd.DataFrame(data, index=pd.RangeIndex(rows), copy=False)


def with_labels(block: Block, ids: np.ndarray, labels: Sequence[Any]) -> Block:
    """`block` with the labels of the rows `ids` set (labels that arrived after compaction);
    ids the block does not hold are ignored."""
    if len(ids) == 0 or len(block) == 0:
        return block
    order = np.argsort(block.ids, kind="stable")
    where = np.searchsorted(block.ids, ids, sorter=order)
    where = np.minimum(where, len(block) - 1)
    positions = order[where]
    hit = block.ids[positions] == ids
    if not hit.any():
        return block
    chosen = [label for label, ok in zip(labels, hit.tolist(), strict=True) if ok]
    labeled = block.labeled.copy()
    labeled[positions[hit]] = True
    return replace(block, label=patched(block.label, positions[hit], chosen), labeled=labeled)


def block_frame(
    block: Block, *, target: str, probabilities: bool, request_ids: bool = True
) -> pd.DataFrame:
    """The frame `read_window` returns for these rows (in the block's order); without
    `request_ids`, no `request_id` column."""
    n = len(block)
    data: dict[str, Any] = {}
    data.update(block.numeric)
    data.update({k: pd.Series(v, dtype=object) for k, v in block.categorical.items()})
    data["prediction"] = to_series(block.prediction)
    data["probability"] = block.probability
    data[target] = to_series(block.label)
    data["model_version"] = block.versions.astype(np.int64, copy=False)
    data["ts"] = pd.to_datetime(block.ts_us, unit="us", utc=True).as_unit("ns")
    if request_ids:
        data["request_id"] = pd.Series(block.request_ids, dtype=object)
    if probabilities:
        data["probabilities"] = pd.Series(_probabilities(block), dtype=object)
    # copy=False also leaves the columns unconsolidated: stacking 20 float and 6 object columns
    # into 2-D blocks was half the time of a 1M-row read, and no caller needs the blocks
    return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)


__all__ = [
    "KINDS",
    "Block",
    "Columns",
    "columns_frame",
    "columns_of",
    "decode_columns",
    "release_memory",
    "parts_order",
    "row_order",
    "SegmentError",
    "Values",
    "block_frame",
    "RawRows",
    "block_from_raw",
    "categorical_column",
    "numeric_column",
    "BlockBuilder",
    "concat_blocks",
    "concat_values",
    "decode_segment",
    "encode_segment",
    "label_series",
    "make_values",
    "patched",
    "to_float",
    "to_series",
    "to_str",
    "value_kind",
    "with_labels",
]
