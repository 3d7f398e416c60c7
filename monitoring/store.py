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
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    rows = [_complete(r) for r in records]
    if isinstance(engine, sa.Connection):
        _insert_rows(engine, rows, ignore_duplicates)
    else:
        with engine.begin() as connection:
            _insert_rows(connection, rows, ignore_duplicates)
    return len(rows)


def _insert_rows(
    connection: sa.Connection, rows: list[dict[str, Any]], ignore_duplicates: bool
) -> None:
    statement = _insert_statement(connection.dialect.name, ignore_duplicates=ignore_duplicates)
    for start in range(0, len(rows), _INSERT_CHUNK):
        connection.execute(statement, rows[start : start + _INSERT_CHUNK])


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
        rows = [_complete(r) for group in groups[low:high] for r in group]
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
    `last_n` keeps the newest n matching rows.
    """
    c = inference_log.c
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
    statement = _filtered(
        sa.select(*columns),
        model_name=model_name,
        since=since,
        until=until,
        version=version,
        labeled_only=labeled_only,
    )
    if last_n is not None:
        if last_n < 0:
            raise ValueError(f"last_n must be >= 0, got {last_n}")
        statement = statement.order_by(c.ts.desc(), c.id.desc()).limit(last_n)
    else:
        statement = statement.order_by(c.ts, c.id)
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    if last_n is not None:
        rows.reverse()
    return _typed_frame(
        rows,
        numeric=list(numeric),
        categorical=list(categorical),
        target=target,
        probabilities=probabilities,
    )


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


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _label_series(values: list[Any]) -> pd.Series:
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
    "StoreError",
    "VersionRows",
    "WriteOutcome",
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
