"""The inference log: every served prediction with its inputs, model version and later label.

SQLAlchemy 2 typed ORM for the schema; Core statements for the bulk paths. The schema is created
and evolved by Alembic (`monitoring/migrations`), run with :func:`upgrade_database`. Query
functions return pandas frames typed like the training data (numeric features float64,
categorical features object str), so Evidently can compare them with the reference directly.

SQLite runs in WAL mode with a busy timeout and `synchronous=NORMAL` by default (a committed row
survives a crash or kill of the process; `synchronous="FULL"`, the `sqlite_synchronous` setting,
also survives power loss); PostgreSQL is the production backend.

A record the database refuses (a value it cannot store, not an outage) is never lost and never
blocks the others: :func:`write_log` commits every group of records it accepts and keeps each
refused record in the `inference_dead_letter` table, as escaped JSON text.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.errors import DriftloopError
from monitoring import columnar
from monitoring.columnar import label_series as _label_series
from monitoring.columnar import to_float as _to_float
from monitoring.columnar import to_str as _to_str

_log = logging.getLogger(__name__)

INFERENCE_LOG = "inference_log"
DEAD_LETTER = "inference_dead_letter"
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
        sa.Index("ix_inference_log_model_label_seq", "model_name", "label_seq"),
        # the labeled rows only (migration 0007): a version's newest labeled rows, counted
        # and found without reading each row of the table
        sa.Index(
            "ix_inference_log_model_version_labeled_ts",
            "model_name",
            "model_version",
            "ts",
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
    #: `json` on PostgreSQL, not `jsonb`: nothing queries inside it, and parsing it into jsonb
    #: was most of the cost of a write (about 20k rows/s against 33k for json, measured)
    features: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    prediction: Mapped[Any] = mapped_column(_json_type())
    probability: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(
        _json_type(nullable=True), nullable=True
    )
    latency_ms: Mapped[float] = mapped_column(sa.Float())
    label: Mapped[Any | None] = mapped_column(_json_type(nullable=True), nullable=True)
    label_ts: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: the `label_batches` id of the call that recorded the label (see compaction)
    label_seq: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)


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


class LabelBatch(Base):
    """One call that recorded labels; its id orders label arrivals for the columnar log."""

    __tablename__ = "label_batches"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(sa.Integer())


label_batches: sa.Table = LabelBatch.__table__  # type: ignore[assignment]


class LogSegment(Base):
    """A block of one model version's log rows in columns (:mod:`monitoring.columnar`).

    Every row of the model with an id up to the largest `covered_to` is in exactly one segment;
    labels recorded by batches after `label_horizon` are read from the log itself.
    """

    __tablename__ = "log_segments"
    __table_args__ = (
        sa.UniqueConstraint(
            "model_name", "model_version", "first_id", name="uq_log_segments_first_row"
        ),
        sa.Index("ix_log_segments_model_covered", "model_name", "covered_to"),
        sa.Index("ix_log_segments_model_version_ts", "model_name", "model_version", "ts_min"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    model_name: Mapped[str] = mapped_column(sa.String(200))
    model_version: Mapped[int] = mapped_column(sa.Integer())
    first_id: Mapped[int] = mapped_column(sa.BigInteger())
    last_id: Mapped[int] = mapped_column(sa.BigInteger())
    covered_to: Mapped[int] = mapped_column(sa.BigInteger())
    rows: Mapped[int] = mapped_column(sa.Integer())
    ts_min: Mapped[datetime] = mapped_column(UTCDateTime())
    ts_max: Mapped[datetime] = mapped_column(UTCDateTime())
    label_horizon: Mapped[int] = mapped_column(sa.BigInteger())
    numeric: Mapped[list[str]] = mapped_column(sa.JSON())
    categorical: Mapped[list[str]] = mapped_column(sa.JSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())


log_segments: sa.Table = LogSegment.__table__  # type: ignore[assignment]
#: A segment's description without its bytes: what plans, merges and label refreshes read.
_SEGMENT_META = tuple(
    log_segments.c[name]
    for name in (
        "id",
        "model_version",
        "first_id",
        "last_id",
        "covered_to",
        "rows",
        "ts_min",
        "ts_max",
        "label_horizon",
        "numeric",
        "categorical",
    )
)

#: The columns a log record (a plain dict) carries; `id` is assigned by the database, and
#: `label_seq` by :func:`record_labels`.
RECORD_KEYS = tuple(c.name for c in inference_log.columns if c.name not in ("id", "label_seq"))


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


#: The PostgreSQL advisory lock (transaction level) that makes concurrent migrations wait for each
#: other: without it, processes that start together on a fresh database all but one fail.
_MIGRATION_LOCK = 0x64726966746C6F67  # "driftlog"


def upgrade_database(url: str, revision: str = "head") -> None:
    """Create or migrate the driftloop tables in the database at `url` (idempotent; processes
    migrating one database at once take turns)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with _sqlite_file_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # replicas starting at once: one at a time
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except sa.exc.OperationalError as exc:
        raise StoreError(
            f"cannot migrate the inference log at {_safe_url(url)}: {exc.orig}"
        ) from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive flock on `<database file>.migrate-lock` while SQLite migrates (its DDL runs
    outside a transaction, so two processes would both create the tables); nothing otherwise."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    try:
        handle = open(f"{database}.migrate-lock", "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StoreError(f"cannot migrate the inference log at {database}: {exc}") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


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
    """Insert log records in one transaction (executemany, chunked); returns how many were given.

    With `ignore_duplicates`, rows whose request_id is already logged are skipped (spool replay).
    """
    if not records:
        return 0
    rows = list(records)
    if isinstance(engine, sa.Connection):
        _insert_rows(engine, rows, ignore_duplicates)
    else:
        with engine.begin() as connection:
            _insert_rows(connection, rows, ignore_duplicates)
    return len(rows)


def _insert_rows(
    connection: sa.Connection, rows: list[Mapping[str, Any]], ignore_duplicates: bool
) -> None:
    """Insert records (a missing key is NULL)."""
    if _copies(connection):
        _copy_rows(connection, rows, ignore_duplicates)
        return
    statement = _insert_statement(connection.dialect.name, ignore_duplicates=ignore_duplicates)
    for start in range(0, len(rows), _INSERT_CHUNK):
        connection.execute(statement, [_complete(r) for r in rows[start : start + _INSERT_CHUNK]])


# PostgreSQL through psycopg2: COPY, since executemany is one round trip per row (2.4k rows/s
# measured for the log's rows). The rows are serialized while the server parses them (the
# payload is a stream read by COPY). With `ignore_duplicates`, a duplicate request id makes the
# COPY fail inside a SAVEPOINT, and the rows then go through a session-local staging table and
# one INSERT ... ON CONFLICT DO NOTHING (a spool replay: rare, and slower).
_STAGING = "driftloop_log_staging"
_COPY_COLUMNS = ", ".join(RECORD_KEYS)
_UNIQUE_VIOLATION = "23505"


def _copies(connection: sa.Connection) -> bool:
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg2"


def _copy_rows(
    connection: sa.Connection, rows: list[Mapping[str, Any]], ignore_duplicates: bool
) -> None:
    if not rows:
        return
    if not ignore_duplicates:
        _copy_into(connection, INFERENCE_LOG, rows)
        return
    try:
        with connection.begin_nested():
            _copy_into(connection, INFERENCE_LOG, rows)
        return
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "pgcode", None) != _UNIQUE_VIOLATION:
            raise
    connection.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS"
        f" SELECT {_COPY_COLUMNS} FROM {INFERENCE_LOG} WITH NO DATA"
    )
    _copy_into(connection, _STAGING, rows)
    connection.exec_driver_sql(
        f"INSERT INTO {INFERENCE_LOG} ({_COPY_COLUMNS}) SELECT {_COPY_COLUMNS} FROM {_STAGING}"
        " ON CONFLICT (request_id) DO NOTHING"
    )
    connection.exec_driver_sql(f"TRUNCATE {_STAGING}")


def _copy_into(connection: sa.Connection, table: str, rows: list[Mapping[str, Any]]) -> None:
    """COPY rows into `table`; the driver's errors come out as SQLAlchemy's (with `.orig`)."""
    statement = f"COPY {table} ({_COPY_COLUMNS}) FROM STDIN"
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.dbapi_connection.cursor()
    stream = _CopyStream(rows)
    try:
        cursor.copy_expert(statement, stream, size=1 << 16)
    except dbapi.Error as exc:
        if stream.error is not None:  # a record we could not write: refused, as a bind error is
            raise sa.exc.StatementError(str(stream.error), statement, None, stream.error) from None
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from None
    finally:
        cursor.close()


class _CopyStream(io.TextIOBase):
    """The rows as COPY text lines, produced as the driver reads them."""

    _BATCH = 256

    def __init__(self, rows: list[Mapping[str, Any]]) -> None:
        self._rows = rows
        self._next = 0
        self.error: Exception | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        if self._next >= len(self._rows):
            return ""
        if size is None or size < 0:
            stop = len(self._rows)
        else:
            stop = min(len(self._rows), self._next + self._BATCH)
        try:
            text = "".join(map(_copy_line, self._rows[self._next : stop]))
        except Exception as exc:  # the driver turns it into QueryCanceled; keep the cause
            self.error = exc
            raise
        self._next = stop
        return text

    readline = read


_NULL = "\\N"


def _copy_line(row: Mapping[str, Any]) -> str:
    """One record as a line of COPY's text format (NULL is \\N; a missing key is NULL)."""
    get = row.get
    probability, probabilities = get("probability"), get("probabilities")
    label, label_ts = get("label"), get("label_ts")
    return (
        f"{_copy_text(get('request_id'))}\t{_copy_time('ts', get('ts'))}\t"
        f"{_copy_text(get('model_name'))}\t{int(get('model_version'))}\t"
        f"{_copy_json(get('features'))}\t{_copy_json(get('prediction'))}\t"
        f"{_NULL if probability is None else repr(float(probability))}\t"
        f"{_NULL if probabilities is None else _copy_json(probabilities)}\t"
        f"{float(get('latency_ms'))!r}\t{_NULL if label is None else _copy_json(label)}\t"
        f"{_NULL if label_ts is None else _copy_time('label_ts', label_ts)}\n"
    )


def _copy_json(value: Any) -> str:
    # orjson escapes control characters, so only a backslash needs COPY's escaping
    text = _json_dumps(value)
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_text(value: Any) -> str:
    text = value if type(value) is str else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def _copy_time(key: str, value: Any) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"naive datetime {key}={value!r}: pass a timezone-aware UTC timestamp")
    return orjson.dumps(value)[1:-1].decode()  # RFC 3339, as isoformat() but 10x faster


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
    rows = [r for group in groups for r in group]
    try:
        with connection.begin():
            _insert_rows(connection, rows, ignore_duplicates)
        return WriteOutcome()
    except Exception as exc:
        if is_unavailable(exc):
            raise
    at = datetime.now(UTC)
    with connection.begin():
        refused = _insert_isolated(connection, groups, ignore_duplicates)
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
) -> dict[int, str]:
    """Insert each group all or nothing in SAVEPOINTs, in order; the refused groups and why."""
    refused: dict[int, str] = {}

    def attempt(low: int, high: int) -> None:
        rows = [r for group in groups[low:high] for r in group]
        try:
            with connection.begin_nested():
                _insert_rows(connection, rows, ignore_duplicates)
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
    again replaces the previous one and its time. Each call is one `label_batches` row, whose id
    the updated rows carry in `label_seq` (how a columnar read finds labels newer than a segment).
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
        .values(
            label=sa.bindparam("lab"), label_ts=sa.bindparam("lts"), label_seq=sa.bindparam("seq")
        )
    )
    with engine.begin() as connection:
        batch = connection.execute(
            sa.insert(label_batches)
            .values(created_at=datetime.now(UTC), rows=len(known))
            .returning(label_batches.c.id)
        ).scalar_one()
        params = [
            {"rid": rid, "lab": _plain(labels[rid]), "lts": at, "seq": batch}
            for rid in labels
            if rid in known
        ]
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
    by_primary_key: bool = False,
    upto_id: int | None = None,
) -> sa.Select[Any]:
    """``statement`` limited to one model's rows (and the optional filters). With
    ``by_primary_key`` the model name is compared as an expression (`model_name || ''`), so the
    database finds the rows by the primary key, not by the model's (model_name, ts) index."""
    c = inference_log.c
    name = (c.model_name + "") if by_primary_key else c.model_name
    statement = statement.where(name == model_name)
    if version is not None:
        statement = statement.where(c.model_version == int(version))
    if since is not None:
        statement = statement.where(c.ts >= since)
    if until is not None:
        statement = statement.where(c.ts < until)
    if labeled_only:
        statement = statement.where(c.label_ts.is_not(None))
    if upto_id is not None:
        statement = statement.where(c.id <= int(upto_id))
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


@dataclass(frozen=True)
class LogWindow:
    """A window of the inference log as another process reads it: the log's URL and the
    filters of :func:`read_window` (``since`` inclusive, ``until`` exclusive, the newest
    ``last_n`` rows, one served ``version``, rows logged with an id up to ``upto_id``)."""

    database_url: str
    model_name: str
    since: datetime | None = None
    until: datetime | None = None
    last_n: int | None = None
    version: int | None = None
    upto_id: int | None = None


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
    columnar: bool = True,
    upto_id: int | None = None,
    request_ids: bool = True,
) -> pd.DataFrame:
    """Logged rows of a model as a frame typed like the training data, oldest first.

    Columns: the numeric features (float64), the categorical features (object str, None when
    missing), `prediction`, `probability` (float64), the label under `target`, `model_version`
    (int64), `ts` (datetime64 UTC) and `request_id`; with `probabilities`, also `probabilities`
    (the per-class `{class: p}` dicts, object). `since` is inclusive, `until` exclusive;
    `last_n` keeps the newest n matching rows. `upto_id` keeps the rows logged with an id up
    to it (:func:`last_log_id`), so reads made at different times see the same window.
    `request_ids=False` leaves out `request_id` (a string per row that a caller judging the
    window's outputs does not need); no features asked for (``numeric=categorical=()``)
    leaves them out, and their columns are not decompressed.

    Rows that compaction (:func:`compact_log`) has put in segments are read from those, the
    rest from the log's JSON; the frame is the same either way. `columnar=False` reads only
    the JSON. When the segments cannot answer (they lack a feature asked for, or hold fewer
    rows than the log says the window has), the whole window is read from the JSON.
    """
    if last_n is not None and last_n < 0:
        raise ValueError(f"last_n must be >= 0, got {last_n}")
    query = _WindowQuery(
        model_name=model_name,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        target=target,
        since=since,
        until=until,
        last_n=last_n,
        version=version,
        labeled_only=labeled_only,
        probabilities=probabilities,
        upto_id=upto_id,
        request_ids=request_ids,
    )
    if columnar and last_n != 0:
        frame = _read_columnar(engine, query)
        if frame is not None:
            return frame
    return _read_json(engine, query)


@dataclass(frozen=True)
class _WindowQuery:
    """The arguments of :func:`read_window`."""

    model_name: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    since: datetime | None
    until: datetime | None
    last_n: int | None
    version: int | None
    labeled_only: bool
    probabilities: bool
    upto_id: int | None = None
    request_ids: bool = True

    def filtered(self, statement: sa.Select[Any], *, since: datetime | None = None) -> Any:
        return _filtered(
            statement,
            model_name=self.model_name,
            since=since or self.since,
            until=self.until,
            version=self.version,
            labeled_only=self.labeled_only,
            upto_id=self.upto_id,
        )


def _read_json(engine: Engine, query: _WindowQuery) -> pd.DataFrame:
    """The window decoded from the log's JSON (the reference read)."""
    c = inference_log.c
    probabilities, last_n = query.probabilities, query.last_n
    columns = [
        c.request_id,
        c.ts,
        c.model_version,
        c.features,
        c.prediction,
        c.probability,
        c.label,
        *([c.probabilities] if probabilities else []),
    ]
    statement = query.filtered(sa.select(*columns))
    if last_n is not None:
        statement = statement.order_by(c.ts.desc(), c.id.desc()).limit(last_n)
    else:
        statement = statement.order_by(c.ts, c.id)
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    if last_n is not None:
        rows.reverse()
    frame = _typed_frame(
        rows,
        numeric=list(query.numeric),
        categorical=list(query.categorical),
        target=query.target,
        probabilities=probabilities,
    )
    return frame if query.request_ids else frame.drop(columns=["request_id"])


def _typed_frame(
    rows: Sequence[Any],
    *,
    numeric: list[str],
    categorical: list[str],
    target: str,
    probabilities: bool = False,
) -> pd.DataFrame:
    n = len(rows)
    data: dict[str, Any] = {}
    features = [row.features or {} for row in rows]
    for name in numeric:
        data[name] = np.fromiter(
            (_to_float(f.get(name)) for f in features), dtype=np.float64, count=n
        )
    for name in categorical:
        data[name] = pd.Series([_to_str(f.get(name)) for f in features], dtype=object)
    data["prediction"] = _label_series([row.prediction for row in rows])
    data["probability"] = np.fromiter((_to_float(row.probability) for row in rows), np.float64, n)
    data[target] = _label_series([row.label for row in rows])
    data["model_version"] = np.fromiter((row.model_version for row in rows), np.int64, n)
    data["ts"] = pd.to_datetime([row.ts for row in rows], utc=True)
    data["request_id"] = pd.Series([row.request_id for row in rows], dtype=object)
    if probabilities:
        data["probabilities"] = pd.Series([row.probabilities for row in rows], dtype=object)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n))
    if n == 0:
        frame["ts"] = pd.Series([], dtype="datetime64[ns, UTC]")
    return frame


# --------------------------------------------------------------------------- columnar log

#: Rows per segment: a read is a few decompressions, and compaction holds one segment's decoded
#: rows in memory at a time.
SEGMENT_ROWS = 100_000
#: How long compaction waits for PostgreSQL transactions that may still hold log ids to end.
SETTLE_TIMEOUT_SECONDS = 30.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class CompactionOutcome:
    """What one :func:`compact_log` run did."""

    model_name: str
    #: rows put into new segments, and how many segments they made
    rows: int
    segments: int
    #: older segments rewritten with labels that arrived after them
    refreshed: int
    #: every row of the model with an id up to this is in exactly one segment
    covered_to: int
    #: False when PostgreSQL transactions that may hold log ids outlived the settle timeout
    #: (the rows past the old coverage then wait for the next run)
    settled: bool = True
    #: True when another compaction committed the same rows first (this run stopped there)
    raced: bool = False
    #: small segments of one version merged into fuller ones (how many were replaced)
    merged: int = 0


def compact_log(
    engine: Engine,
    *,
    model_name: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    segment_rows: int = SEGMENT_ROWS,
    settle_timeout: float = SETTLE_TIMEOUT_SECONDS,
) -> CompactionOutcome:
    """Put a model's log rows that no segment holds yet into columnar segments, and rewrite the
    segments whose rows got labels since they were built.

    Off the writer path: it reads committed rows and writes only `log_segments`. It takes only
    rows no transaction can still add below (SQLite commits one writer at a time; on PostgreSQL
    it waits for every transaction open when it read the highest id to end). Each group of
    `segment_rows` rows commits on its own, so a large backlog is compacted in bounded memory,
    and two compactions of the same rows cannot both commit them (a unique first row per
    segment).
    """
    if segment_rows < 1:
        raise ValueError(f"segment_rows must be >= 1, got {segment_rows}")
    numeric, categorical = list(numeric), list(categorical)
    covered = _covered_to(engine, model_name)
    high, horizon, settled = _settled_high_water(engine, settle_timeout)
    if not settled:
        high = covered
    made = rows = 0
    raced = False
    while covered < high:
        chunk = _rows_after(engine, model_name, after=covered, upto=high, limit=segment_rows)
        end = high if len(chunk.ids) < segment_rows else int(chunk.ids[-1])
        try:
            made += _store_segments(
                engine, model_name, chunk, numeric, categorical, covered_to=end, horizon=horizon
            )
        except sa.exc.IntegrityError:
            raced = True
            break
        rows += len(chunk.ids)
        covered = end
    refreshed = 0 if raced else _refresh_labels(engine, model_name, horizon=horizon)
    merged = _merge_small_segments(engine, model_name, segment_rows) if made else 0
    if rows:
        _vacuum_log(engine)
    return CompactionOutcome(
        model_name=model_name,
        rows=rows,
        segments=made,
        refreshed=refreshed,
        covered_to=_covered_to(engine, model_name),
        settled=settled,
        raced=raced,
        merged=merged,
    )


# Every columnar read counts the window's rows in the log (its guard against a row missing from
# the segments). On pages PostgreSQL has not marked all-visible that count visits every row in
# the heap: 0.62 s for 1M fresh rows against 0.06 s by an index-only scan after VACUUM
# (measured). Autovacuum comes late on an insert-only log (after 20% new rows by default) or not
# at all, so compaction, which has just read those pages, vacuums the log. It also analyzes a
# log never analyzed, or changed since by autovacuum's own rule (50 rows + 10% rows): with
# no statistics, the read of the rows past the segments is a sequential scan (0.13 s at 1M).
_ANALYZE_ROWS, _ANALYZE_FRACTION = 50, 0.1


def _vacuum_log(engine: Engine) -> None:
    """VACUUM the log after a compaction on PostgreSQL (ANALYZE too when its statistics are
    missing or stale), skipped if another VACUUM holds the table; a failure only costs speed."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            never, changed, tuples = connection.execute(
                sa.text(
                    "SELECT s.last_analyze IS NULL AND s.last_autoanalyze IS NULL,"
                    " s.n_mod_since_analyze, greatest(c.reltuples, 0) FROM"
                    " pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                    f" WHERE s.relid = '{INFERENCE_LOG}'::regclass"
                )
            ).one()
            stale = never or changed > _ANALYZE_ROWS + _ANALYZE_FRACTION * tuples
            options = "SKIP_LOCKED, ANALYZE" if stale else "SKIP_LOCKED"
            connection.exec_driver_sql(f"VACUUM ({options}) {INFERENCE_LOG}")
    except sa.exc.DBAPIError as exc:
        _log.warning("could not VACUUM %s after compaction: %s", INFERENCE_LOG, exc)


def _covered_to(engine: Engine, model_name: str) -> int:
    s = log_segments.c
    statement = sa.select(sa.func.max(s.covered_to)).where(s.model_name == model_name)
    with engine.connect() as connection:
        return int(connection.scalar(statement) or 0)


def _settled_high_water(engine: Engine, timeout: float) -> tuple[int, int, bool]:
    """The highest log id and label batch every later row or batch will exceed, and whether the
    transactions that could still commit below them have ended within `timeout`."""
    highest = sa.select(sa.func.coalesce(sa.func.max(inference_log.c.id), 0)).scalar_subquery()
    newest = sa.select(sa.func.coalesce(sa.func.max(label_batches.c.id), 0)).scalar_subquery()
    with engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            high, horizon = connection.execute(sa.select(highest, newest)).one()
            return int(high), int(horizon), True
        high, horizon, snapshot = connection.execute(
            sa.select(highest, newest, sa.text("pg_current_snapshot()::text"))
        ).one()
        deadline = time.monotonic() + timeout
        settled = _wait_for_transactions(connection, snapshot, timeout)
        if settled:
            # A transaction gets its id when it writes its first row, just after it took that
            # row's log id: one caught in between is in no snapshot yet. Waiting for the
            # transactions open now as well covers it (and the read-time count checks anyway).
            later = connection.execute(sa.text("SELECT pg_current_snapshot()::text")).scalar()
            connection.rollback()
            settled = _wait_for_transactions(
                connection, str(later), max(0.0, deadline - time.monotonic())
            )
    return int(high), int(horizon), settled


def _wait_for_transactions(connection: sa.Connection, snapshot: str, timeout: float) -> bool:
    """Wait until no transaction in progress at `snapshot` still is (ids are allocated before
    commit, so one of them may still commit a row below the highest id seen)."""
    check = sa.text(
        "SELECT coalesce(bool_and(pg_xact_status(x) <> 'in progress'), true)"
        " FROM pg_snapshot_xip(CAST(:snapshot AS pg_snapshot)) AS x"
    )
    deadline = time.monotonic() + timeout
    while True:
        done = bool(connection.execute(check, {"snapshot": snapshot}).scalar())
        connection.rollback()
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _raw_columns(dialect: str) -> list[Any]:
    """The log's columns for a block: the time as microseconds (PostgreSQL) or SQLite's stored
    text, the features as the stored JSON text (decoded in one pass)."""
    c = inference_log.c
    if dialect == "postgresql":
        ts = sa.cast(sa.func.extract("epoch", c.ts) * 1_000_000, sa.BigInteger)
    else:
        ts = sa.type_coerce(c.ts, sa.String)
    return [
        c.id,
        c.request_id,
        ts.label("ts_raw"),
        c.model_version,
        sa.type_coerce(c.features, sa.String).label("features_raw"),
        c.prediction,
        c.probability,
        c.probabilities,
        c.label,
        c.label_ts.is_not(None).label("labeled"),
    ]


def _raw_rows(connection: sa.Connection, statement: sa.Select[Any]) -> columnar.RawRows:
    """The rows of `statement` (built on :func:`_raw_columns`) column by column."""
    rows = connection.execute(statement).all()
    if not rows:
        return columnar.RawRows(*([] for _ in range(10)))  # type: ignore[arg-type]
    ids, rids, ts, versions, features, predictions, probability, probabilities, labels, labeled = (
        zip(*rows, strict=True)
    )
    return columnar.RawRows(
        ids=ids,
        ts_us=_microseconds(ts),
        versions=versions,
        request_ids=rids,
        features=[f if isinstance(f, dict) else _json_loads(f) for f in features],
        predictions=predictions,
        probability=probability,
        probabilities=probabilities,
        labels=labels,
        labeled=labeled,
    )


def _microseconds(values: Sequence[Any]) -> np.ndarray:
    """Timestamps as microseconds since the epoch: PostgreSQL's numbers, or SQLite's stored
    naive-UTC text ('2026-01-01 00:00:00.000000'), parsed by numpy in one pass."""
    if not values or not isinstance(values[0], str):
        return np.fromiter((int(v) for v in values), np.int64, len(values))
    try:
        return np.array(values, dtype="datetime64[us]").astype(np.int64)
    except ValueError:
        naive = datetime(1970, 1, 1)
        parsed = (datetime.fromisoformat(v) for v in values)
        return np.fromiter(((d - naive) // _MICROSECOND for d in parsed), np.int64, len(values))


def _rows_after(
    engine: Engine, model_name: str, *, after: int, upto: int, limit: int
) -> columnar.RawRows:
    c = inference_log.c
    statement = (
        sa.select(*_raw_columns(engine.dialect.name))
        .where(c.model_name == model_name, c.id > after, c.id <= upto)
        .order_by(c.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return _raw_rows(connection, statement)


def _store_segments(
    engine: Engine,
    model_name: str,
    rows: columnar.RawRows,
    numeric: list[str],
    categorical: list[str],
    *,
    covered_to: int,
    horizon: int,
) -> int:
    """Insert one segment per model version of `rows` (in one transaction); how many."""
    everything = columnar.block_from_raw(rows, numeric=numeric, categorical=categorical)
    now = datetime.now(UTC)
    segments = []
    for version in np.unique(everything.versions):
        block = everything.take(np.flatnonzero(everything.versions == version))
        segments.append(
            {
                "model_name": model_name,
                "model_version": int(version),
                "first_id": int(block.ids[0]),
                "last_id": int(block.ids[-1]),
                "covered_to": covered_to,
                "rows": len(block),
                "ts_min": _EPOCH + timedelta(microseconds=int(block.ts_us.min())),
                "ts_max": _EPOCH + timedelta(microseconds=int(block.ts_us.max())),
                "label_horizon": horizon,
                "numeric": numeric,
                "categorical": categorical,
                "created_at": now,
                "data": columnar.encode_segment(block),
            }
        )
    if segments:
        with engine.begin() as connection:
            connection.execute(sa.insert(log_segments), segments)
    return len(segments)


# Each compaction stores the rows logged since the last one, so a monitor running every hour
# on light traffic leaves a segment per run, and a read pays per segment: 200,000 rows read at
# 2.4M rows/s from segments of 100,000 rows and at 455k rows/s from segments of 1,000
# (measured). So compaction merges consecutive small segments of a version (same features)
# into one of up to `segment_rows` rows, under a new id: a read that planned on the old ones
# finds them gone and plans again. Two merges of the same segments cannot both commit (each
# deletes them all first, or gives up), and the merged segment keeps the lowest label horizon
# of its parts, so the labels recorded since are applied at read time until a refresh.
def _merge_small_segments(engine: Engine, model_name: str, segment_rows: int) -> int:
    """Merge runs of small consecutive segments of each version; how many were replaced."""
    s = log_segments.c
    with engine.connect() as connection:
        segments = connection.execute(
            sa.select(*_SEGMENT_META)
            .where(s.model_name == model_name)
            .order_by(s.model_version, s.first_id)
        ).all()
    replaced = 0
    for run in _mergeable_runs(segments, segment_rows):
        replaced += _merge_run(engine, model_name, run)
    return replaced


def _mergeable_runs(segments: Sequence[Any], segment_rows: int) -> list[list[Any]]:
    """Runs of 2 or more consecutive segments (by version, then first row) of one version and
    the same features, each smaller than `segment_rows`, of `segment_rows` rows at most."""
    runs: list[list[Any]] = []
    run: list[Any] = []
    for segment in segments:
        fits = (
            run
            and segment.model_version == run[0].model_version
            and list(segment.numeric) == list(run[0].numeric)
            and list(segment.categorical) == list(run[0].categorical)
            and sum(int(r.rows) for r in run) + int(segment.rows) <= segment_rows
        )
        if not fits:  # a full segment ends a run too (it is never merged)
            if len(run) > 1:
                runs.append(run)
            run = []
        if int(segment.rows) < segment_rows:
            run.append(segment)
    if len(run) > 1:
        runs.append(run)
    return runs


def _merge_run(engine: Engine, model_name: str, run: list[Any]) -> int:
    """Replace `run` by one segment; 0 when another compaction changed it first."""
    ids = [int(segment.id) for segment in run]
    with engine.connect() as connection:
        stored = _segment_data(connection, ids)
    if len(stored) != len(ids):
        return 0
    first = run[0]
    numeric, categorical = list(first.numeric), list(first.categorical)
    block = columnar.concat_blocks(
        [
            columnar.decode_segment(
                stored.pop(i), numeric=numeric, categorical=categorical, probabilities=True
            )
            for i in ids
        ],
        probabilities=True,
    )
    merged = {
        "model_name": model_name,
        "model_version": int(first.model_version),
        "first_id": int(first.first_id),
        "last_id": int(run[-1].last_id),
        "covered_to": max(int(segment.covered_to) for segment in run),
        "rows": len(block),
        "ts_min": min(segment.ts_min for segment in run),
        "ts_max": max(segment.ts_max for segment in run),
        "label_horizon": min(int(segment.label_horizon) for segment in run),
        "numeric": numeric,
        "categorical": categorical,
        "created_at": datetime.now(UTC),
        "data": columnar.encode_segment(block),
    }
    try:
        with engine.begin() as connection:
            gone = connection.execute(sa.delete(log_segments).where(log_segments.c.id.in_(ids)))
            if gone.rowcount != len(ids):
                raise _SegmentsChanged("another compaction merged these segments first")
            connection.execute(sa.insert(log_segments), [merged])
    except _SegmentsChanged:
        return 0
    return len(ids)


def _late_labels(
    connection: sa.Connection, model_name: str, *, after: int, upto: int, version: int | None
) -> list[Any]:
    """(id, label, label_seq) of the model's rows up to `upto` labeled by batches after `after`."""
    c = inference_log.c
    statement = sa.select(c.id, c.label, c.label_seq).where(
        c.model_name == model_name, c.label_seq > after, c.id <= upto
    )
    if version is not None:
        statement = statement.where(c.model_version == int(version))
    return list(connection.execute(statement.order_by(c.id)))


def _refresh_labels(engine: Engine, model_name: str, *, horizon: int) -> int:
    """Rewrite the segments whose rows got labels after them; how many were rewritten."""
    s = log_segments.c
    with engine.connect() as connection:
        stale = connection.execute(
            sa.select(*_SEGMENT_META).where(s.model_name == model_name, s.label_horizon < horizon)
        ).all()
        if not stale:
            return 0
        upto = max(int(row.last_id) for row in stale)
        after = min(int(row.label_horizon) for row in stale)
        late = _late_labels(connection, model_name, after=after, upto=upto, version=None)
    if not late:
        _advance_horizon(engine, [int(row.id) for row in stale], horizon)
        return 0
    ids = np.fromiter((r.id for r in late), np.int64, len(late))
    refreshed = 0
    for segment in stale:
        lo, hi = np.searchsorted(ids, [segment.first_id, segment.last_id + 1])
        mine = [r for r in late[lo:hi] if r.label_seq > segment.label_horizon]
        if mine:
            _rewrite_segment(engine, segment, mine, horizon)
            refreshed += 1
        else:
            _advance_horizon(engine, [int(segment.id)], horizon)
    return refreshed


def _rewrite_segment(engine: Engine, segment: Any, late: list[Any], horizon: int) -> None:
    with engine.begin() as connection:
        data = connection.scalar(
            sa.select(log_segments.c.data).where(log_segments.c.id == segment.id)
        )
        if data is None:
            return
        block = columnar.decode_segment(
            data, numeric=segment.numeric, categorical=segment.categorical, probabilities=True
        )
        ids = np.fromiter((r.id for r in late), np.int64, len(late))
        block = columnar.with_labels(block, ids, [r.label for r in late])
        connection.execute(
            sa.update(log_segments)
            .where(log_segments.c.id == segment.id)
            .values(data=columnar.encode_segment(block), label_horizon=horizon)
        )


def _advance_horizon(engine: Engine, segment_ids: list[int], horizon: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(log_segments)
            .where(log_segments.c.id.in_(segment_ids), log_segments.c.label_horizon < horizon)
            .values(label_horizon=horizon)
        )


@dataclass(frozen=True)
class _SegmentPlan:
    """The segments that answer a window: those it overlaps, the log id they cover to, the
    window's lower time bound (for `last_n`) and how many rows the log says it has."""

    chosen: list[Any]
    covered: int
    since: datetime | None
    expected: int


def _plan_segments(connection: sa.Connection, query: _WindowQuery) -> _SegmentPlan | None:
    """None when the segments cannot answer the window (no segments, a feature they lack)."""
    s = log_segments.c
    segments = connection.execute(
        sa.select(*_SEGMENT_META).where(s.model_name == query.model_name)
    ).all()
    if not segments:
        return None
    covered = max(int(row.covered_to) for row in segments)
    since = _last_n_since(connection, query)
    expected = int(
        connection.scalar(
            query.filtered(sa.select(sa.func.count()).select_from(inference_log), since=since)
        )
        or 0
    )
    chosen = [row for row in segments if _overlaps(row, query, since)]
    if any(not _has_features(row, query) for row in chosen):
        return None
    return _SegmentPlan(sorted(chosen, key=lambda row: int(row.first_id)), covered, since, expected)


def _too_few(query: _WindowQuery, got: int, expected: int) -> bool:
    if got < expected:
        _log.warning(
            "the columnar log of %s holds fewer rows than the log for this window: read from JSON",
            query.model_name,
        )
        return True
    return False


def _read_columnar(engine: Engine, query: _WindowQuery) -> pd.DataFrame | None:
    """The window from segments plus the JSON of the rows after them; None when the segments
    cannot answer it (no segments, a feature they lack, fewer rows than the log counts)."""
    return _replanned(lambda: _read_columnar_once(engine, query))


def _read_columnar_once(engine: Engine, query: _WindowQuery) -> pd.DataFrame | None:
    with engine.connect() as connection:
        plan = _plan_segments(connection, query)
        if plan is None:
            return None
        if plan.expected == 0:  # no row in the window (no label yet, say): decode no segment
            return _read_json(engine, query)
        # the tail first (after the count, as before), so the columns are allocated once
        tail = _tail_rows(connection, query, plan)
        builder = columnar.BlockBuilder(
            sum(int(row.rows) for row in plan.chosen) + len(tail.ids),
            numeric=query.numeric,
            categorical=query.categorical,
            probabilities=query.probabilities,
        )
        for part in _segment_blocks(connection, query, plan):
            builder.append(part)
    if tail.ids:
        builder.append(
            columnar.block_from_raw(tail, numeric=query.numeric, categorical=query.categorical)
        )
    if _too_few(query, len(builder), plan.expected):
        return None
    if not plan.chosen and not tail.ids:
        return _read_json(engine, query)
    block = _ordered(builder.finish())
    if query.last_n is not None and len(block) > query.last_n:
        block = block.take(np.arange(len(block) - query.last_n, len(block)))
    return columnar.block_frame(
        block,
        target=query.target,
        probabilities=query.probabilities,
        request_ids=query.request_ids,
    )


def read_window_columns(
    engine: Engine,
    *,
    model_name: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    last_n: int | None = None,
    version: int | None = None,
    upto_id: int | None = None,
) -> pd.DataFrame:
    """Only some feature columns of a window (and `prediction` when asked): the columns of
    :func:`read_window`'s frame for the same window, in its row order, without its other
    columns. Segments are fetched a few at a time and cut to these columns as they come, so
    memory holds little beyond the result: what a task checking a few columns of a large window
    reads. Without usable segments it reads the JSON, as :func:`read_window` does.
    """
    if last_n is not None and last_n < 0:
        raise ValueError(f"last_n must be >= 0, got {last_n}")
    query = _WindowQuery(
        model_name=model_name,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        target=_NO_TARGET,
        since=since,
        until=until,
        last_n=last_n,
        version=version,
        labeled_only=False,
        probabilities=False,
        upto_id=upto_id,
    )
    wanted = [*numeric, *categorical, *(["prediction"] if prediction else [])]
    parts: list[columnar.Columns] = []
    if last_n != 0:
        parts = _replanned(lambda: _column_parts(engine, query, prediction=prediction)) or []
    if not parts:
        frame = read_window(
            engine,
            model_name=model_name,
            numeric=numeric,
            categorical=categorical,
            target=_NO_TARGET,
            since=since,
            until=until,
            last_n=last_n,
            version=version,
            columnar=False,
            upto_id=upto_id,
        )
        return frame[wanted]
    return columnar.columns_frame(parts, last_n=last_n)


def _column_parts(
    engine: Engine, query: _WindowQuery, *, prediction: bool
) -> list[columnar.Columns]:
    """The window's columns from segments and the tail, in parts; none when the segments
    cannot answer it."""
    with engine.connect() as connection:
        plan = _plan_segments(connection, query)
        if plan is None:
            return []
        parts = list(_segment_columns(connection, query, plan, prediction=prediction))
        tail = _tail_rows(connection, query, plan)
    if tail.ids:
        block = columnar.block_from_raw(
            tail, numeric=list(query.numeric), categorical=list(query.categorical)
        )
        parts.append(columnar.columns_of(block, prediction=prediction))
    if _too_few(query, sum(len(p) for p in parts), plan.expected):
        return []
    return parts


def last_log_id(engine: Engine) -> int:
    """The highest id in the log (0 when it is empty): `upto_id` for reads that must see the
    same window however many rows are logged meanwhile."""
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.max(inference_log.c.id))) or 0)


#: The label column's name in a read that returns no label.
_NO_TARGET = "__label__"
#: Segments fetched per query by reads that stream them (bounds the bytes held at once).
_SEGMENTS_PER_FETCH = 4


def _segment_columns(
    connection: sa.Connection, query: _WindowQuery, plan: _SegmentPlan, *, prediction: bool
) -> Iterator[columnar.Columns]:
    lo_us, hi_us = _bounds_us(plan.since, query.until)
    for _, data in _stored_segments(connection, plan.chosen):
        part = columnar.decode_columns(
            data, numeric=query.numeric, categorical=query.categorical, prediction=prediction
        )
        keep = _inside(part.ts_us, lo_us, hi_us, part.ids, query.upto_id)
        yield part if keep is None else part.take(np.flatnonzero(keep))


def _stored_segments(
    connection: sa.Connection, chosen: list[Any], *, ahead: bool = False
) -> Iterator[tuple[Any, bytes | memoryview]]:
    """Each chosen segment with its stored bytes, fetched a few segments per query so a large
    window's bytes are never all held at once.

    With `ahead`, a thread fetches the next few while the caller decodes these (the drivers
    release the GIL while they wait for the database): one more batch of bytes in memory, for
    a read that holds the whole window anyway. The caller must not use `connection` until the
    iteration ends.
    """
    batches = [
        chosen[k : k + _SEGMENTS_PER_FETCH] for k in range(0, len(chosen), _SEGMENTS_PER_FETCH)
    ]
    if not ahead or len(batches) < 2:
        for batch in batches:
            yield from _paired(batch, _segment_data(connection, _ids(batch)))
        return
    with ThreadPoolExecutor(1, thread_name_prefix="driftloop-segments") as pool:
        pending = pool.submit(_segment_data, connection, _ids(batches[0]))
        for k, batch in enumerate(batches):
            stored = pending.result()
            if k + 1 < len(batches):
                pending = pool.submit(_segment_data, connection, _ids(batches[k + 1]))
            yield from _paired(batch, stored)


def _ids(segments: list[Any]) -> list[int]:
    return [int(row.id) for row in segments]


def _paired(
    batch: list[Any], stored: dict[int, bytes | memoryview]
) -> Iterator[tuple[Any, bytes | memoryview]]:
    for segment in batch:
        data = stored.pop(int(segment.id), None)
        if data is None:
            raise _SegmentsChanged(f"segment {int(segment.id)} was merged away during the read")
        yield segment, data


class _SegmentsChanged(Exception):
    """A segment a read planned on was merged into another before its bytes were fetched."""


#: How many times a read plans again when compaction merged its segments meanwhile (then JSON).
_READ_ATTEMPTS = 3


def _replanned(read: Any) -> Any:
    """`read()` again while compaction merges the segments it planned on; None after
    `_READ_ATTEMPTS` tries (the caller then reads the JSON)."""
    for _ in range(_READ_ATTEMPTS):
        try:
            return read()
        except _SegmentsChanged as exc:
            _log.info("reading the columnar log again: %s", exc)
    return None


def _bounds_us(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    lo = None if since is None else (since - _EPOCH) // _MICROSECOND
    hi = None if until is None else (until - _EPOCH) // _MICROSECOND
    return lo, hi


def _inside(
    ts_us: np.ndarray,
    lo_us: int | None,
    hi_us: int | None,
    ids: np.ndarray,
    upto_id: int | None,
) -> np.ndarray | None:
    """Which rows lie in [lo, hi) with an id up to `upto_id` (None: all of them)."""
    keep = np.ones(len(ts_us), dtype=bool)
    if lo_us is not None:
        keep &= ts_us >= lo_us
    if hi_us is not None:
        keep &= ts_us < hi_us
    if upto_id is not None:
        keep &= ids <= upto_id
    return None if keep.all() else keep


def _tail_rows(connection: sa.Connection, query: _WindowQuery, plan: _SegmentPlan) -> Any:
    statement = _tail_statement(
        query, since=plan.since, covered=plan.covered, dialect=connection.dialect.name
    )
    return _raw_rows(connection, statement)


def _tail_statement(
    query: _WindowQuery, *, since: datetime | None, covered: int, dialect: str
) -> Any:
    """The window's rows past the segments, found by the primary key: the model name is
    compared as an expression (`model_name || ''`), or SQLite would walk the model's whole
    (model_name, ts) index to find the few rows past the coverage."""
    statement = _filtered(
        sa.select(*_raw_columns(dialect)).where(inference_log.c.id > covered),
        model_name=query.model_name,
        since=since,
        until=query.until,
        version=query.version,
        labeled_only=query.labeled_only,
        by_primary_key=True,
        upto_id=query.upto_id,
    )
    return statement.order_by(inference_log.c.id)


def _last_n_since(connection: sa.Connection, query: _WindowQuery) -> datetime | None:
    """For `last_n`, the timestamp of the n-th newest matching row (rows before it are not
    needed); otherwise `since`."""
    if query.last_n is None:
        return query.since
    c = inference_log.c
    nth = connection.scalar(
        query.filtered(sa.select(c.ts))
        .order_by(c.ts.desc(), c.id.desc())
        .offset(query.last_n - 1)
        .limit(1)
    )
    return query.since if nth is None else nth


def _overlaps(segment: Any, query: _WindowQuery, since: datetime | None) -> bool:
    if query.version is not None and int(segment.model_version) != int(query.version):
        return False
    if query.upto_id is not None and int(segment.first_id) > query.upto_id:
        return False
    if since is not None and segment.ts_max < since:
        return False
    return not (query.until is not None and segment.ts_min >= query.until)


def _has_features(segment: Any, query: _WindowQuery) -> bool:
    return set(query.numeric) <= set(segment.numeric) and set(query.categorical) <= set(
        segment.categorical
    )


def _segment_blocks(
    connection: sa.Connection, query: _WindowQuery, plan: _SegmentPlan
) -> Iterator[columnar.Block]:
    """The chosen segments' rows inside the window, with the labels that arrived after them,
    a segment at a time (`connection` is busy until the iteration ends)."""
    chosen = plan.chosen
    if not chosen:
        return
    late = _late_labels(
        connection,
        query.model_name,
        after=min(int(row.label_horizon) for row in chosen),
        upto=plan.covered,
        version=query.version,
    )
    late_ids = np.fromiter((r.id for r in late), np.int64, len(late))
    lo_us, hi_us = _bounds_us(plan.since, query.until)
    for segment, data in _stored_segments(connection, chosen, ahead=True):
        block = columnar.decode_segment(
            data,
            numeric=query.numeric,
            categorical=query.categorical,
            probabilities=query.probabilities,
            request_ids=query.request_ids,
        )
        lo, hi = np.searchsorted(late_ids, [segment.first_id, segment.last_id + 1])
        mine = [r for r in late[lo:hi] if r.label_seq > segment.label_horizon]
        if mine:
            ids = np.fromiter((r.id for r in mine), np.int64, len(mine))
            block = columnar.with_labels(block, ids, [r.label for r in mine])
        keep = _inside(block.ts_us, lo_us, hi_us, block.ids, query.upto_id)
        if query.labeled_only:
            keep = block.labeled if keep is None else keep & block.labeled
        yield block if keep is None or keep.all() else block.take(np.flatnonzero(keep))


def _segment_data(connection: sa.Connection, ids: list[int]) -> dict[int, bytes | memoryview]:
    """The stored bytes of segments by id. On PostgreSQL through psycopg2 by a binary COPY:
    a SELECT sends bytea as hex text, half the speed, and the bytes are most of a read."""
    s = log_segments.c
    if not _copies(connection):
        rows = connection.execute(sa.select(s.id, s.data).where(s.id.in_(ids)))
        return {int(i): data for i, data in rows}
    listed = ", ".join(str(int(i)) for i in ids)
    sink = _Messages()
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(
            f"COPY (SELECT id, data FROM log_segments WHERE id IN ({listed}))"
            " TO STDOUT (FORMAT binary)",
            sink,
        )
    finally:
        cursor.close()
    return dict(_binary_copy_rows(sink.parts))


class _Messages:
    """A COPY TO sink that keeps what the driver writes as it comes. psycopg2 writes each of
    PostgreSQL's CopyData messages, and the server sends one per row, so a segment's bytes are
    read as a view of its message: a file object would copy them as it grew (0.50-0.69 s
    against 0.31-0.40 s for the 194 MB of 1M rows, measured)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _binary_copy_rows(parts: Iterable[bytes]) -> Iterator[tuple[int, memoryview]]:
    """(id, data) tuples of a binary COPY of two columns, bigint and bytea (PostgreSQL's
    documented format: a header, then per tuple a field count and length-prefixed fields),
    from the pieces it came in. A field inside one piece is a view of it; one across pieces is
    joined."""
    pieces = iter(parts)
    view, at = memoryview(b""), 0

    def have(n: int) -> None:
        nonlocal view, at
        while len(view) - at < n:
            piece = next(pieces, None)
            if piece is None:
                raise StoreError("PostgreSQL's binary COPY of log segments ended inside a row")
            view = memoryview(bytes(view[at:]) + bytes(piece) if len(view) > at else piece)
            at = 0

    have(19)
    if bytes(view[at : at + 11]) != _COPY_SIGNATURE:
        raise StoreError("PostgreSQL's binary COPY of log segments has no COPY header")
    extension = struct.unpack_from("!I", view, at + 15)[0]
    have(19 + extension)
    at += 19 + extension
    while True:
        have(2)
        (fields,) = struct.unpack_from("!h", view, at)
        at += 2
        if fields == -1:
            return
        have(16)
        id_len, segment_id = struct.unpack_from("!iq", view, at)
        at += 4 + id_len
        (data_len,) = struct.unpack_from("!i", view, at)
        at += 4
        have(data_len)
        yield segment_id, view[at : at + data_len]
        at += data_len


def _ordered(block: columnar.Block) -> columnar.Block:
    """Rows by (ts, id), as the log is read."""
    order = columnar.row_order(block.ts_us, block.ids)
    return block if order is None else block.take(order)


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
    "LogStatus",
    "LogWindow",
    "StoreError",
    "VersionRows",
    "WriteOutcome",
    "CompactionOutcome",
    "compact_log",
    "count_rows",
    "current_revision",
    "dead_letter",
    "describe_refusal",
    "dumps_record",
    "inference_dead_letter",
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
    "record_labels",
    "upgrade_database",
    "write_log",
]
