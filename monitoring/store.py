"""The inference log: every served prediction with its inputs, model version and later label.

SQLAlchemy 2 typed ORM for the schema; Core statements for the bulk paths. The schema is created
and evolved by Alembic (`monitoring/migrations`), run with :func:`upgrade_database`. Query
functions return pandas frames typed like the training data (numeric features float64,
categorical features object str), so Evidently can compare them with the reference directly.

SQLite runs in WAL mode with a busy timeout and `synchronous=NORMAL` by default (a committed row
survives a crash or kill of the process; `synchronous="FULL"`, the `sqlite_synchronous` setting,
also survives power loss); PostgreSQL is the production backend.

Every write also stores the rows' immutable columns as one Arrow IPC block per model
(`inference_log_blocks`, :mod:`monitoring.logblocks`) in the same transaction, and
:func:`read_window` reads windows from the blocks, joining the labels from the rows by log id.

A record the database refuses (a value it cannot store, not an outage) is never lost and never
blocks the others: :func:`write_log` commits every group of records it accepts and keeps each
refused record in the `inference_dead_letter` table, as escaped JSON text.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.errors import DriftloopError
from monitoring import logblocks

INFERENCE_LOG = "inference_log"
DEAD_LETTER = "inference_dead_letter"
LOG_BLOCKS = "inference_log_blocks"
#: Columns every query frame carries besides the features and the label.
META_COLUMNS = ("request_id", "ts", "model_version", "prediction", "probability")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 10_000
#: WAL + NORMAL: a commit survives a crash or `kill -9` of the process (the WAL is written before
#: COMMIT returns); only an OS crash / power loss can drop the last commits. FULL also fsyncs each
#: commit (`synchronous="FULL"`), at ~10x the commit latency on slow disks.
SQLITE_SYNCHRONOUS_DEFAULT = "NORMAL"
SQLITE_SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
_INSERT_CHUNK = 2_000
#: Blocks of fewer rows are merged, once a model has this many of them, in the writing transaction.
SMALL_BLOCK_ROWS = 4_096
MERGE_SMALL_BLOCKS = 32
_LOOKUP_CHUNK = 500
_REASON_CHARS = 300

#: Errors that mean "the database is unreachable or busy", as opposed to a record it refuses.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)


class StoreError(DriftloopError, RuntimeError):
    """The inference log cannot be read or written (unreachable database, missing schema, ...)."""

    transient = True


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot take any record now, whatever the record.

    Connection, timeout and lock errors, and PostgreSQL's SQLSTATE class 42 (a missing table or
    column, no privilege: the statement cannot run whatever the values). Anything else (a value
    the database cannot store, a violated constraint) is a refusal of the record itself.
    """
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    return isinstance(code, str) and code.startswith("42")


def describe_refusal(exc: BaseException) -> str:
    """The database's reason in one short line, without the statement or its values."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    head = lines[0] if lines else type(original).__name__
    detail = next(
        (ln.removeprefix("DETAIL:").strip() for ln in lines if ln.startswith("DETAIL:")), ""
    )
    return _text(f"{head} ({detail})" if detail else head, _REASON_CHARS)


def _text(value: Any, limit: int) -> str:
    """`value` as text a TEXT column accepts: NUL escaped as in JSON, at most `limit` characters."""
    return str(value).replace("\x00", "\\u0000")[:limit]


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC timestamp")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_type(*, nullable: bool = False) -> sa.types.TypeEngine[Any]:
    # none_as_null: a missing label is SQL NULL, not the JSON literal 'null'
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSONB(none_as_null=nullable), "postgresql"
    )


class Base(DeclarativeBase):
    """Declarative base of the driftloop tables (the monitoring issue adds `drift_runs` here)."""


class InferenceLog(Base):
    """One served (or batch-scored) row: inputs, output, the version that produced it, its label."""

    __tablename__ = INFERENCE_LOG
    __table_args__ = (
        sa.UniqueConstraint("request_id", name="uq_inference_log_request_id"),
        sa.Index("ix_inference_log_model_ts", "model_name", "ts"),
        sa.Index("ix_inference_log_model_version_ts", "model_name", "model_version", "ts"),
        # the columnar read's label query, answered from the index alone (labeled rows only)
        sa.Index(
            "ix_inference_log_labeled",
            "model_name",
            "ts",
            "model_version",
            "label",
            "id",
            "label_ts",
            sqlite_where=sa.text("label_ts IS NOT NULL"),
            postgresql_where=sa.text("label_ts IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(sa.String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(sa.String(200))
    model_version: Mapped[int] = mapped_column(sa.Integer())
    features: Mapped[dict[str, Any]] = mapped_column(_json_type())
    prediction: Mapped[Any] = mapped_column(_json_type())
    probability: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(
        _json_type(nullable=True), nullable=True
    )
    latency_ms: Mapped[float] = mapped_column(sa.Float())
    label: Mapped[Any | None] = mapped_column(_json_type(nullable=True), nullable=True)
    label_ts: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


inference_log: sa.Table = InferenceLog.__table__  # type: ignore[assignment]


class InferenceDeadLetter(Base):
    """A log record the database refused: who, when, why, and the record as escaped JSON text."""

    __tablename__ = DEAD_LETTER
    __table_args__ = (
        sa.UniqueConstraint("request_id", name="uq_inference_dead_letter_request_id"),
        sa.Index("ix_inference_dead_letter_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    model_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    model_version: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    ts: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str] = mapped_column(sa.Text())
    record: Mapped[str] = mapped_column(sa.Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


inference_dead_letter: sa.Table = InferenceDeadLetter.__table__  # type: ignore[assignment]


class InferenceLogBlock(Base):
    """The immutable columns of logged rows of one model, as one Arrow IPC block
    (:mod:`monitoring.logblocks`), written in the same transaction as the rows it holds."""

    __tablename__ = LOG_BLOCKS
    __table_args__ = (sa.Index("ix_inference_log_blocks_model_ts", "model_name", "max_ts"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    model_name: Mapped[str] = mapped_column(sa.String(200))
    rows: Mapped[int] = mapped_column(sa.Integer())
    min_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    max_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    min_version: Mapped[int] = mapped_column(sa.Integer())
    max_version: Mapped[int] = mapped_column(sa.Integer())
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())


inference_log_blocks: sa.Table = InferenceLogBlock.__table__  # type: ignore[assignment]

#: The columns a log record (a plain dict) carries; `id` is assigned by the database.
RECORD_KEYS = tuple(c.name for c in inference_log.columns if c.name != "id")


# --------------------------------------------------------------------------- engine, migrations


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _json_loads(text: str | bytes | float) -> Any:
    # SQLite gives a JSON column NUMERIC affinity: a scalar number comes back already decoded
    if isinstance(text, (int, float)):
        return text
    return orjson.loads(text)


def make_engine(
    url: str,
    *,
    statement_timeout_seconds: float | None = None,
    synchronous: str = SQLITE_SYNCHRONOUS_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """An engine for the inference log; SQLite gets WAL mode, a busy timeout and
    `PRAGMA synchronous=<synchronous>` (NORMAL, FULL or EXTRA; ignored for PostgreSQL).

    PostgreSQL connections time out after a few seconds instead of hanging when the server is
    unreachable, so the writer can fall back to its spool quickly. With
    `statement_timeout_seconds`, the PostgreSQL server also cancels any statement, and ends any
    session idle inside a transaction, after that long (server side: it cannot fire when the
    network itself is frozen, which is why the service also bounds its calls on the client).
    """
    options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": _json_loads,
        "pool_pre_ping": True,
    }
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        options["connect_args"] = {
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
        if statement_timeout_seconds is not None:
            options["connect_args"]["options"] = _postgres_options(
                parsed.query.get("options"), statement_timeout_seconds
            )
    options.update(kwargs)
    mode = synchronous.upper()
    if backend == "sqlite" and mode not in SQLITE_SYNCHRONOUS_MODES:
        raise StoreError(
            f"DRIFTLOOP_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA, got {synchronous!r}"
        )
    engine = sa.create_engine(url, **options)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(mode))
    return engine


def _postgres_options(existing: Any, timeout_seconds: float) -> str:
    """libpq `options` with the server-side timeouts added to whatever the URL already sets."""
    ms = max(1, round(timeout_seconds * 1000))
    ours = f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
    given = existing if isinstance(existing, str) else " ".join(existing or ())
    return f"{given} {ours}".strip()


def _sqlite_pragmas(synchronous: str) -> Any:
    """The connect hook that sets WAL, the busy timeout and `synchronous` on every connection."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return on_connect


def alembic_config(url: str) -> Any:
    """An Alembic Config for the packaged migrations (independent of the working directory)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Create or migrate the driftloop tables in the database at `url` (idempotent)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except sa.exc.OperationalError as exc:
        raise StoreError(
            f"cannot migrate the inference log at {_safe_url(url)}: {exc.orig}"
        ) from None
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- writes


def log_record(
    *,
    request_id: str,
    ts: datetime,
    model_name: str,
    model_version: int,
    features: Mapping[str, Any],
    prediction: Any,
    probability: float | None = None,
    probabilities: Mapping[str, float] | None = None,
    latency_ms: float = 0.0,
) -> dict[str, Any]:
    """A record for :func:`insert_records` (a plain dict with the columns of `inference_log`)."""
    return {
        "request_id": request_id,
        "ts": ts,
        "model_name": model_name,
        "model_version": int(model_version),
        "features": dict(features),
        "prediction": prediction,
        "probability": probability,
        "probabilities": dict(probabilities) if probabilities is not None else None,
        "latency_ms": float(latency_ms),
        "label": None,
        "label_ts": None,
    }


def _insert_statement(dialect: str, *, ignore_duplicates: bool) -> Any:
    if not ignore_duplicates:
        return sa.insert(inference_log)
    if dialect == "postgresql":
        return postgresql.insert(inference_log).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
    if dialect == "sqlite":
        return sqlite.insert(inference_log).on_conflict_do_nothing(index_elements=["request_id"])
    raise StoreError(f"ignore_duplicates is not supported on {dialect}")


def _complete(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in RECORD_KEYS}


def insert_records(
    engine: Engine | sa.Connection,
    records: Sequence[Mapping[str, Any]],
    *,
    ignore_duplicates: bool = False,
) -> int:
    """Insert log records and their columnar block in one transaction; returns how many were
    given (PostgreSQL: COPY; with `ignore_duplicates` and on SQLite: multi-row INSERTs).

    With `ignore_duplicates`, rows whose request_id is already logged are skipped (spool replay).
    """
    if not records:
        return 0
    rows = [_complete(r) for r in records]
    if isinstance(engine, sa.Connection):
        _insert_logged(engine, rows, ignore_duplicates)
    else:
        with engine.begin() as connection:
            _insert_logged(connection, rows, ignore_duplicates)
    return len(rows)


def _insert_logged(
    connection: sa.Connection, rows: list[dict[str, Any]], ignore_duplicates: bool
) -> None:
    """Rows, then the block of the rows actually inserted, in the caller's transaction."""
    write_blocks(connection, _insert_rows(connection, rows, ignore_duplicates))


def _insert_rows(
    connection: sa.Connection, rows: list[dict[str, Any]], ignore_duplicates: bool
) -> list[tuple[int, dict[str, Any]]]:
    """Insert rows; returns (log id, row) of each row inserted (duplicates skipped are not)."""
    if not rows:
        return []
    if connection.dialect.name == "postgresql" and not ignore_duplicates:
        return _copy_rows(connection, rows)
    statement = _insert_statement(
        connection.dialect.name, ignore_duplicates=ignore_duplicates
    ).returning(inference_log.c.id, inference_log.c.request_id)
    by_request = {row["request_id"]: row for row in rows}
    inserted: list[tuple[int, dict[str, Any]]] = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        result = connection.execute(statement, rows[start : start + _INSERT_CHUNK])
        inserted.extend((int(i), by_request[rid]) for i, rid in result.all())
    return inserted


#: COPY's columns, in the order :func:`_copy_text_of` writes them (the id is drawn first).
_COPY_COLUMNS = (
    "id",
    "request_id",
    "ts",
    "model_name",
    "model_version",
    "features",
    "prediction",
    "probability",
    "probabilities",
    "latency_ms",
    "label",
    "label_ts",
)


def _copy_rows(
    connection: sa.Connection, rows: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """PostgreSQL COPY FROM STDIN (text format) with ids drawn from the table's sequence."""
    ids = connection.scalars(
        sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
        {"table": INFERENCE_LOG, "n": len(rows)},
    ).all()
    columns = ", ".join(_COPY_COLUMNS)
    statement = f"COPY {INFERENCE_LOG} ({columns}) FROM STDIN"
    source = _CopySource(ids, rows)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, source, size=_COPY_READ_CHARS)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, connection.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()
    if source.error is not None:  # raised inside the caller's transaction: nothing commits
        raise sa.exc.StatementError(
            str(source.error), statement, None, source.error
        ) from source.error
    return [(int(i), row) for i, row in zip(ids, rows, strict=True)]


_COPY_CHUNK_ROWS = 250
_COPY_READ_CHARS = 1 << 16


class _CopySource:
    """COPY's input, built `_COPY_CHUNK_ROWS` rows at a time as psycopg2 reads it, so the server
    parses one chunk while the next is built. A value that cannot be converted ends the input
    early and is kept in `error` (the caller raises it, so the transaction rolls back)."""

    def __init__(self, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> None:
        self._chunks = (
            (ids[i : i + _COPY_CHUNK_ROWS], rows[i : i + _COPY_CHUNK_ROWS])
            for i in range(0, len(rows), _COPY_CHUNK_ROWS)
        )
        self._buffer = ""
        self.error: Exception | None = None

    def read(self, size: int = -1) -> str:
        while self.error is None and (size < 0 or len(self._buffer) < size):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            try:
                self._buffer += _copy_text_of(*chunk)
            except (AttributeError, TypeError, ValueError) as exc:
                self.error = exc  # the buffer holds whole lines only: it still ends cleanly
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy_text_of(log_ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows in COPY's text format, built column by column (in :data:`_COPY_COLUMNS` order),
    values converted as the column types would bind them."""
    names = {name: _copy_text(name) for name in {r["model_name"] for r in rows}}
    columns = (
        [str(i) for i in log_ids],
        [_copy_text(r["request_id"]) for r in rows],
        [_copy_time(r["ts"]) for r in rows],
        [names[r["model_name"]] for r in rows],
        [str(r["model_version"]) for r in rows],
        [_copy_json(_json_dumps(r["features"])) for r in rows],
        [_copy_json(_json_dumps(r["prediction"])) for r in rows],
        [_COPY_NULL if r["probability"] is None else repr(float(r["probability"])) for r in rows],
        [
            _COPY_NULL
            if r["probabilities"] is None
            else _copy_json(_json_dumps(r["probabilities"]))
            for r in rows
        ],
        [repr(float(r["latency_ms"])) for r in rows],
        [_COPY_NULL if r["label"] is None else _copy_json(_json_dumps(r["label"])) for r in rows],
        [_COPY_NULL if r["label_ts"] is None else _copy_time(r["label_ts"]) for r in rows],
    )
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


_COPY_NULL = "\\N"
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


def _copy_time(value: Any) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC timestamp")
    return value.isoformat()


def _copy_json(text: str) -> str:
    """JSON text (orjson escapes every control character) for COPY: only backslashes double."""
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_text(text: Any) -> str:
    """A value for COPY's text format: backslash, tab, newline and carriage return escaped."""
    text = str(text)
    if not any(special in text for special in _COPY_SPECIAL):
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_blocks(
    connection: sa.Connection, inserted: Sequence[tuple[int, Mapping[str, Any]]]
) -> int:
    """One block per model of the inserted (log id, row) pairs, then each model's small blocks
    merged once there are :data:`MERGE_SMALL_BLOCKS` of them; returns the blocks written."""
    by_model: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for pair in inserted:
        by_model.setdefault(pair[1]["model_name"], []).append(pair)
    for model_name, pairs in by_model.items():
        table = logblocks.block_table([row for _, row in pairs], [i for i, _ in pairs])
        connection.execute(sa.insert(inference_log_blocks), [_block_row(model_name, table)])
        _merge_small_blocks(connection, model_name)
    return len(by_model)


def rebuild_blocks(connection: sa.Connection, *, chunk_rows: int = 50_000) -> int:
    """Delete every block and write them again from the rows, in id order, `chunk_rows` at a
    time (the 0005 migration's backfill; also the repair after rows were edited by hand).
    Returns the rows copied; run it in a transaction."""
    connection.execute(sa.delete(inference_log_blocks))
    columns = [inference_log.c.id, *(inference_log.c[k] for k in RECORD_KEYS)]
    last, copied = 0, 0
    while True:
        rows = connection.execute(
            sa.select(*columns)
            .where(inference_log.c.id > last)
            .order_by(inference_log.c.id)
            .limit(chunk_rows)
        ).all()
        if not rows:
            return copied
        write_blocks(connection, [(row.id, row._asdict()) for row in rows])
        last, copied = rows[-1].id, copied + len(rows)


def _block_row(model_name: str, table: Any) -> dict[str, Any]:
    ts = table.column("ts").to_pandas()
    versions = table.column("model_version").to_numpy()
    return {
        "model_name": model_name,
        "rows": table.num_rows,
        "min_ts": ts.min().to_pydatetime(),
        "max_ts": ts.max().to_pydatetime(),
        "min_version": int(versions.min()),
        "max_version": int(versions.max()),
        "data": logblocks.encode(table),
    }


def _merge_small_blocks(connection: sa.Connection, model_name: str) -> None:
    """Merge a model's small blocks into one (rows locked so two writers never merge the same)."""
    b = inference_log_blocks.c
    small = connection.execute(
        sa.select(b.id, b.data)
        .where(b.model_name == model_name, b.rows < SMALL_BLOCK_ROWS)
        .order_by(b.id)
        .with_for_update(skip_locked=True)
    ).all()
    if len(small) < MERGE_SMALL_BLOCKS:
        return
    merged = logblocks.merge([logblocks.decode(data) for _, data in small])
    connection.execute(sa.insert(inference_log_blocks), [_block_row(model_name, merged)])
    connection.execute(sa.delete(inference_log_blocks).where(b.id.in_([i for i, _ in small])))


@dataclass(frozen=True)
class WriteOutcome:
    """What :func:`write_log` did with groups of records."""

    #: index of each group the database refused -> its reason (the other groups are committed)
    refused: Mapping[int, str] = field(default_factory=dict)
    #: one dead letter per record of a refused group
    dead_letters: tuple[dict[str, Any], ...] = ()
    #: False when the dead-letter table refused them too: the caller must keep them elsewhere
    dead_letters_stored: bool = True


def write_log(
    connection: sa.Connection,
    groups: Sequence[Sequence[Mapping[str, Any]]],
    *,
    ignore_duplicates: bool = False,
) -> WriteOutcome:
    """Commit groups of log records (a group: one request's records, all or nothing).

    The common path is one transaction for every group. When the database refuses it for a
    reason other than being unavailable (:func:`is_unavailable`), a second transaction commits
    every group it accepts, each in a SAVEPOINT (bisecting, so a run of good groups costs one),
    together with a dead letter for each record of a refused group. Unavailable errors
    propagate, with nothing committed.
    """
    rows = [_complete(r) for group in groups for r in group]
    try:
        with connection.begin():
            _insert_logged(connection, rows, ignore_duplicates)
        return WriteOutcome()
    except Exception as exc:
        if is_unavailable(exc):
            raise
    at = datetime.now(UTC)
    with connection.begin():
        inserted: list[tuple[int, dict[str, Any]]] = []
        refused = _insert_isolated(connection, groups, ignore_duplicates, inserted)
        write_blocks(connection, inserted)
        letters = tuple(
            dead_letter(record, reason, at=at)
            for index, reason in refused.items()
            for record in groups[index]
        )
        stored = _store_dead_letters(connection, letters)
    return WriteOutcome(refused=refused, dead_letters=letters, dead_letters_stored=stored)


def _insert_isolated(
    connection: sa.Connection,
    groups: Sequence[Sequence[Mapping[str, Any]]],
    ignore_duplicates: bool,
    inserted: list[tuple[int, dict[str, Any]]],
) -> dict[int, str]:
    """Insert each group all or nothing in SAVEPOINTs, in order; the refused groups and why.

    Appends the (log id, row) of every row inserted to `inserted` (for its block).
    """
    refused: dict[int, str] = {}

    def attempt(low: int, high: int) -> None:
        rows = [_complete(r) for group in groups[low:high] for r in group]
        try:
            with connection.begin_nested():
                done = _insert_rows(connection, rows, ignore_duplicates)
            inserted.extend(done)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            if high - low == 1:
                refused[low] = describe_refusal(exc)
                return
            middle = (low + high) // 2
            attempt(low, middle)
            attempt(middle, high)

    if groups:
        attempt(0, len(groups))
    return refused


def dead_letter(record: Mapping[str, Any], reason: str, *, at: datetime) -> dict[str, Any]:
    """A row of `inference_dead_letter` for a refused record (every text field is storable)."""
    version = record.get("model_version")
    ts = record.get("ts")
    request_id = record.get("request_id")
    model_name = record.get("model_name")
    return {
        "request_id": None if request_id is None else _text(request_id, 64),
        "model_name": None if model_name is None else _text(model_name, 200),
        "model_version": version if _is_int32(version) else None,
        "ts": ts if isinstance(ts, datetime) and ts.tzinfo is not None else None,
        "error": _text(reason, _REASON_CHARS),
        "record": _record_text(record),
        "created_at": at,
    }


def _is_int32(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


def _record_text(record: Mapping[str, Any]) -> str:
    """The record as JSON (orjson escapes NUL as \\u0000), or its repr when it is not JSON."""
    try:
        return dumps_record(record).decode()
    except (TypeError, ValueError):
        return _text(repr(dict(record)), 1_000_000)


def _store_dead_letters(connection: sa.Connection, letters: Sequence[Mapping[str, Any]]) -> bool:
    """Insert dead letters in a SAVEPOINT; False when the table refuses them (not an outage)."""
    if not letters:
        return True
    try:
        with connection.begin_nested():
            insert_dead_letters(connection, letters)
    except UNAVAILABLE_ERRORS:
        raise
    except Exception:
        return False
    return True


def insert_dead_letters(
    engine: Engine | sa.Connection, letters: Sequence[Mapping[str, Any]]
) -> int:
    """Insert dead letters (see :func:`dead_letter`); one already kept for a request id is skipped."""
    if not letters:
        return 0
    if isinstance(engine, sa.Connection):
        engine.execute(_dead_letter_insert(engine.dialect.name), list(letters))
    else:
        with engine.begin() as connection:
            connection.execute(_dead_letter_insert(connection.dialect.name), list(letters))
    return len(letters)


def _dead_letter_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(inference_dead_letter).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
    if dialect == "sqlite":
        return sqlite.insert(inference_dead_letter).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
    return sa.insert(inference_dead_letter)


def known_request_ids(engine: Engine, request_ids: Iterable[str]) -> set[str]:
    """The subset of `request_ids` present in the log."""
    ids = list(dict.fromkeys(request_ids))
    found: set[str] = set()
    with engine.connect() as connection:
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            found.update(
                connection.scalars(
                    sa.select(inference_log.c.request_id).where(
                        inference_log.c.request_id.in_(chunk)
                    )
                )
            )
    return found


def record_labels(engine: Engine, labels: Mapping[str, Any], *, at: datetime | None = None) -> int:
    """Attach ground-truth labels to logged rows by request id; returns how many rows were updated.

    Unknown request ids are ignored (see :func:`known_request_ids` to report them). A label posted
    again replaces the previous one and its time.
    """
    if not labels:
        return 0
    at = at or datetime.now(UTC)
    known = known_request_ids(engine, labels)
    if not known:
        return 0
    statement = (
        sa.update(inference_log)
        .where(inference_log.c.request_id == sa.bindparam("rid"))
        .values(label=sa.bindparam("lab"), label_ts=sa.bindparam("lts"))
    )
    params = [{"rid": rid, "lab": _plain(labels[rid]), "lts": at} for rid in labels if rid in known]
    with engine.begin() as connection:
        for start in range(0, len(params), _INSERT_CHUNK):
            connection.execute(statement, params[start : start + _INSERT_CHUNK])
    return len(params)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- reads


def _filtered(
    statement: sa.Select[Any],
    *,
    model_name: str,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
    labeled_only: bool,
) -> sa.Select[Any]:
    c = inference_log.c
    statement = statement.where(c.model_name == model_name)
    if version is not None:
        statement = statement.where(c.model_version == int(version))
    if since is not None:
        statement = statement.where(c.ts >= since)
    if until is not None:
        statement = statement.where(c.ts < until)
    if labeled_only:
        statement = statement.where(c.label_ts.is_not(None))
    return statement


def count_rows(
    engine: Engine,
    *,
    model_name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    labeled_only: bool = False,
) -> int:
    """How many logged rows match (same filters as :func:`read_window`)."""
    statement = _filtered(
        sa.select(sa.func.count()).select_from(inference_log),
        model_name=model_name,
        since=since,
        until=until,
        version=version,
        labeled_only=labeled_only,
    )
    with engine.connect() as connection:
        return int(connection.scalar(statement) or 0)


def count_labels_since(engine: Engine, *, model_name: str, since: datetime) -> int:
    """How many labels of a model's logged rows arrived after ``since`` (by ``label_ts``, not by
    when the rows were served): the evidence a retraining at ``since`` could not have seen."""
    c = inference_log.c
    statement = (
        sa.select(sa.func.count())
        .select_from(inference_log)
        .where(c.model_name == model_name, c.label_ts > since)
    )
    with engine.connect() as connection:
        return int(connection.scalar(statement) or 0)


def read_window(
    engine: Engine,
    *,
    model_name: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    target: str,
    since: datetime | None = None,
    until: datetime | None = None,
    last_n: int | None = None,
    version: int | None = None,
    labeled_only: bool = False,
    probabilities: bool = False,
) -> pd.DataFrame:
    """Logged rows of a model as a frame typed like the training data, oldest first.

    Columns: the numeric features (float64), the categorical features (object str, None when
    missing), `prediction`, `probability` (float64), the label under `target`, `model_version`
    (int64), `ts` (datetime64 UTC) and `request_id`; with `probabilities`, also `probabilities`
    (the per-class `{class: p}` dicts, object). `since` is inclusive, `until` exclusive;
    `last_n` keeps the newest n matching rows (by `ts`, then log id).

    Columnar: one query reads the blocks that may hold matching rows (Arrow IPC, decoded in
    C++), a second the labels of the matching rows, joined to them by log id.
    """
    if last_n is not None and last_n < 0:
        raise ValueError(f"last_n must be >= 0, got {last_n}")
    span = {"model_name": model_name, "since": since, "until": until, "version": version}
    with engine.connect() as connection:
        newest = _newest_since(connection, span, last_n=last_n, labeled_only=labeled_only)
        statement = _block_query(**span, newer_than=newest)
        blocks = [logblocks.decode(data) for data in _block_bytes(connection, statement)]
        label_ids, label_values = _read_labels(connection, span)
    table = logblocks.merge(blocks) if len(blocks) > 1 else (blocks or [None])[0]
    rows = _window_rows(table, label_ids, **span, last_n=last_n, labeled_only=labeled_only)
    return _window_frame(
        table,
        rows,
        label_ids=label_ids,
        label_values=label_values,
        numeric=list(numeric),
        categorical=list(categorical),
        target=target,
        probabilities=probabilities,
    )


def _read_labels(connection: sa.Connection, span: Mapping[str, Any]) -> tuple[np.ndarray, list]:
    """Log ids and labels of the window's labeled rows, aggregated in the database into one
    id list and one label list (no Python object per row until the labels themselves)."""
    if connection.dialect.name == "postgresql":
        return _postgres_labels(connection, span)
    return _sqlite_labels(connection, span)


def _postgres_labels(connection: sa.Connection, span: Mapping[str, Any]) -> tuple[np.ndarray, list]:
    c = inference_log.c
    ids = sa.func.string_agg(sa.cast(c.id, sa.Text), ",")
    labels = sa.cast(sa.func.json_agg(c.label), sa.Text)
    joined, text = connection.execute(
        _filtered(sa.select(ids, labels), **span, labeled_only=True)
    ).one()
    return _id_array(joined), orjson.loads(text) if text else []


def _sqlite_labels(connection: sa.Connection, span: Mapping[str, Any]) -> tuple[np.ndarray, list]:
    """Aggregated when every label is an integer (SQLite's text of a float is not exact),
    else row by row."""
    c = inference_log.c
    raw = sa.type_coerce(c.label, sa.types.NullType())
    not_int = sa.func.sum(sa.case((sa.func.typeof(c.label) != "integer", 1), else_=0))
    joined, text, others = connection.execute(
        _filtered(
            sa.select(sa.func.group_concat(c.id), sa.func.group_concat(raw), not_int),
            **span,
            labeled_only=True,
        )
    ).one()
    if not others:
        return _id_array(joined), _id_array(text).tolist()
    rows = connection.execute(_filtered(sa.select(c.id, raw), **span, labeled_only=True)).all()
    return np.array([r[0] for r in rows], dtype=np.int64), _decode_labels([r[1] for r in rows])


def _id_array(joined: str | None) -> np.ndarray:
    """'1,2,3' (integers the database joined with commas) as int64."""
    if not joined:
        return np.array([], dtype=np.int64)
    return np.array(joined.split(","), dtype=np.int64)


def _decode_labels(raw: list[Any]) -> list[Any]:
    """Labels as SQLite gives them (numbers as numbers, other JSON as its text): the texts
    decoded in one call, the numbers kept."""
    texts = [v for v in raw if isinstance(v, str)]
    if not texts:
        return raw
    decoded = iter(orjson.loads("[" + ",".join(texts) + "]"))
    return [next(decoded) if isinstance(v, str) else v for v in raw]


def _block_bytes(connection: sa.Connection, statement: sa.Select[Any]) -> list[Any]:
    """The `data` of the blocks `statement` selects. PostgreSQL: through `COPY ... TO STDOUT
    (FORMAT binary)`, which sends `bytea` as raw bytes (a query sends it as hex text)."""
    if connection.dialect.name != "postgresql":
        return list(connection.scalars(statement))
    query = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    buffer = io.BytesIO()
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY ({query}) TO STDOUT (FORMAT binary)", buffer)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            str(query), None, exc, connection.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()
    return _copy_binary_values(buffer.getbuffer())


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _copy_binary_values(data: memoryview) -> list[memoryview]:
    """The one field of each row of PostgreSQL's binary COPY format (header, then per row a
    16-bit field count and a 32-bit length before the bytes; a count of -1 ends it)."""
    if bytes(data[:11]) != _COPY_SIGNATURE:
        raise StoreError("COPY TO STDOUT (FORMAT binary) sent no binary COPY header")
    at = 19 + int.from_bytes(data[15:19], "big")  # signature, flags, header extension
    values = []
    while int.from_bytes(data[at : at + 2], "big", signed=True) == 1:
        size = int.from_bytes(data[at + 2 : at + 6], "big", signed=True)
        values.append(data[at + 6 : at + 6 + size])
        at += 6 + size
    return values


def _newest_since(
    connection: sa.Connection,
    span: Mapping[str, Any],
    *,
    last_n: int | None,
    labeled_only: bool,
) -> datetime | None:
    """With `last_n`, the time of the n-th newest matching row (from the rows' indexes), so that
    only the blocks holding the newest rows are read; None when fewer rows match."""
    if last_n is None or last_n == 0:
        return None
    c = inference_log.c
    statement = _filtered(sa.select(c.ts), **span, labeled_only=labeled_only)
    return connection.scalar(statement.order_by(c.ts.desc()).offset(last_n - 1).limit(1))


def _block_query(
    *,
    model_name: str,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
    newer_than: datetime | None = None,
) -> sa.Select[Any]:
    """The blocks that may hold rows of the window (their ts and version ranges overlap it);
    with `newer_than`, only those holding rows at or after that time."""
    b = inference_log_blocks.c
    statement = sa.select(b.data).where(b.model_name == model_name)
    if newer_than is not None:
        statement = statement.where(b.max_ts >= newer_than)
    if version is not None:
        statement = statement.where(b.min_version <= int(version), b.max_version >= int(version))
    if since is not None:
        statement = statement.where(b.max_ts >= since)
    if until is not None:
        statement = statement.where(b.min_ts < until)
    return statement.order_by(b.id)


def _micros(ts: datetime) -> int:
    return int(pd.Timestamp(ts).tz_convert("UTC").value // 1000)


def _window_rows(
    table: Any,
    label_ids: np.ndarray,
    *,
    model_name: str,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
    last_n: int | None,
    labeled_only: bool,
) -> np.ndarray:
    """Positions in `table` of the window's rows, ordered by (ts, id); the newest `last_n`."""
    if table is None or table.num_rows == 0:
        return np.array([], dtype=np.int64)
    ts = table.column("ts").cast("int64").to_numpy()
    ids = table.column("id").to_numpy()
    keep = np.ones(table.num_rows, dtype=bool)
    if version is not None:
        keep &= table.column("model_version").to_numpy() == int(version)
    if since is not None:
        keep &= ts >= _micros(since)
    if until is not None:
        keep &= ts < _micros(until)
    if labeled_only:
        keep &= np.isin(ids, label_ids)
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((ids[rows], ts[rows]))]
    if last_n is not None:
        rows = rows[len(rows) - min(last_n, len(rows)) :]
    return rows


def _window_frame(
    table: Any,
    rows: np.ndarray,
    *,
    label_ids: np.ndarray,
    label_values: list[Any],
    numeric: list[str],
    categorical: list[str],
    target: str,
    probabilities: bool,
) -> pd.DataFrame:
    """The window's frame from the block rows at `rows` and the labels (by log id)."""
    n = len(rows)
    present = set(table.column_names) if table is not None else set()
    picked = pa.array(rows, type=pa.int64())

    def feature(name: str) -> Any:
        key = logblocks.FEATURE_PREFIX + name
        return table.column(key) if key in present else None

    def meta(name: str) -> Any:
        return table.column(name) if n else pa.chunked_array([], type=_EMPTY_TYPES[name])

    numeric = list(dict.fromkeys(numeric))
    matrix = np.full((n, len(numeric)), math.nan, order="F")
    for j, name in enumerate(numeric):
        values = feature(name)
        if values is not None:
            matrix[:, j] = logblocks.numeric(values)[rows]
    data: dict[str, Any] = {}
    for name in categorical:
        values = feature(name)
        strings = np.full(n, None, object) if values is None else logblocks.categorical(values)
        data[name] = pd.Series(strings[rows] if values is not None else strings, dtype=object)
    data["prediction"] = logblocks.prediction_series(_take(meta("prediction"), picked))
    data["probability"] = logblocks.numeric(meta("probability"))[rows]
    ids = meta("id").to_numpy()[rows]
    data[target] = _target_series(ids, label_ids, label_values)
    data["model_version"] = meta("model_version").to_numpy()[rows].astype(np.int64)
    micros = meta("ts").cast(pa.int64()).to_numpy()[rows]
    data["ts"] = pd.to_datetime(micros, unit="us", utc=True)
    data["request_id"] = pd.Series(meta("request_id").to_numpy()[rows], dtype=object)
    if probabilities:
        chosen = _take(meta("probabilities"), picked)
        data["probabilities"] = pd.Series(logblocks.python_values(chosen), dtype=object)
    # one float block for the numeric features, the other columns appended in order
    frame = pd.DataFrame(matrix, columns=numeric, index=pd.RangeIndex(n), copy=False)
    for name, values in data.items():
        frame[name] = values.to_numpy() if isinstance(values, pd.Series) else values
    return frame


#: The meta columns' types in an empty window (no block to take them from).
_EMPTY_TYPES = {
    "id": pa.int64(),
    "prediction": pa.null(),
    "probability": pa.float64(),
    "model_version": pa.int64(),
    "ts": pa.timestamp("us", tz="UTC"),
    "request_id": pa.string(),
    "probabilities": pa.binary(),
}


def _take(column: Any, rows: Any) -> Any:
    """`column.take(rows)`, with the chunks' dictionaries unified first."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
    return column.take(rows)


def _target_series(ids: np.ndarray, label_ids: np.ndarray, label_values: list[Any]) -> pd.Series:
    """The labels of the rows `ids` (None where a row has none), typed as in training."""
    n = len(ids)
    order = np.argsort(label_ids, kind="stable")
    sorted_ids = label_ids[order]
    at = np.searchsorted(sorted_ids, ids)
    found = at < len(sorted_ids)
    found[found] = sorted_ids[at[found]] == ids[found]
    source = order[at[found]]
    ints = _int_labels(label_values) if n else None
    if ints is not None and found.all():
        return pd.Series(ints[source], dtype=np.int64)
    if ints is not None:
        values = np.full(n, math.nan)
        values[found] = ints[source].astype(np.float64)
        return pd.Series(values, dtype=np.float64)
    merged: list[Any] = [None] * n
    for position, index in zip(np.flatnonzero(found).tolist(), source.tolist(), strict=True):
        merged[position] = label_values[index]
    return logblocks.label_series(merged)


def _int_labels(values: list[Any]) -> np.ndarray | None:
    """The labels as int64 when every one is a plain int (the common case), else None."""
    if not values or not all(type(v) is int for v in values):
        return None
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return None


@dataclass(frozen=True)
class VersionRows:
    """Logged and labeled rows of one model version."""

    model_name: str
    model_version: int
    rows: int
    labeled: int


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered record as `driftloop log status` shows it (the record text left out)."""

    request_id: str | None
    model_name: str | None
    model_version: int | None
    ts: datetime | None
    error: str
    created_at: datetime


@dataclass(frozen=True)
class LogStatus:
    """What the inference log holds: rows per model version, and the dead letters."""

    versions: tuple[VersionRows, ...]
    dead_letters: int
    newest_dead_letters: tuple[DeadLetter, ...]


def read_log_status(engine: Engine, *, newest: int = 5) -> LogStatus:
    """Rows and labels per model version, the dead-letter count and the `newest` dead letters.

    Raises StoreError (naming the database, password hidden) when it cannot be read.
    """
    url = engine.url.render_as_string(hide_password=True)
    if _missing_sqlite_file(engine):
        raise StoreError(f"no inference log at {url}: the file does not exist")
    try:
        with engine.connect() as connection:
            return LogStatus(
                versions=_version_rows(connection),
                dead_letters=int(
                    connection.scalar(sa.select(sa.func.count()).select_from(inference_dead_letter))
                    or 0
                ),
                newest_dead_letters=_newest_dead_letters(connection, newest),
            )
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(
            f"cannot read the inference log at {url}: {describe_refusal(exc)}"
        ) from None


def _missing_sqlite_file(engine: Engine) -> bool:
    """A SQLite URL whose file does not exist (connecting would create an empty one)."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return False
    return not Path(database).is_file()


def _version_rows(connection: sa.Connection) -> tuple[VersionRows, ...]:
    c = inference_log.c
    statement = (
        sa.select(c.model_name, c.model_version, sa.func.count(), sa.func.count(c.label_ts))
        .group_by(c.model_name, c.model_version)
        .order_by(c.model_name, c.model_version)
    )
    return tuple(
        VersionRows(name, int(version), int(rows), int(labeled))
        for name, version, rows, labeled in connection.execute(statement)
    )


def _newest_dead_letters(connection: sa.Connection, n: int) -> tuple[DeadLetter, ...]:
    c = inference_dead_letter.c
    statement = (
        sa.select(c.request_id, c.model_name, c.model_version, c.ts, c.error, c.created_at)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(max(0, n))
    )
    return tuple(DeadLetter(*row) for row in connection.execute(statement))


def dumps_record(record: Mapping[str, Any]) -> bytes:
    """A log record as one JSON line (timestamps as ISO 8601 UTC); the spool's format."""
    return orjson.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def loads_record(line: bytes | str) -> dict[str, Any]:
    """Inverse of :func:`dumps_record`."""
    raw = orjson.loads(line)
    for key in ("ts", "label_ts"):
        if raw.get(key) is not None:
            raw[key] = datetime.fromisoformat(raw[key])
    return raw


__all__ = [
    "UNAVAILABLE_ERRORS",
    "Base",
    "DeadLetter",
    "InferenceDeadLetter",
    "InferenceLog",
    "InferenceLogBlock",
    "LogStatus",
    "StoreError",
    "VersionRows",
    "WriteOutcome",
    "count_rows",
    "current_revision",
    "dead_letter",
    "describe_refusal",
    "dumps_record",
    "inference_dead_letter",
    "inference_log_blocks",
    "inference_log",
    "insert_dead_letters",
    "insert_records",
    "is_unavailable",
    "known_request_ids",
    "loads_record",
    "log_record",
    "make_engine",
    "read_log_status",
    "read_window",
    "rebuild_blocks",
    "record_labels",
    "upgrade_database",
    "write_blocks",
    "write_log",
]
