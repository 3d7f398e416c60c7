"""The inference log: every served prediction with its inputs, model version and later label.

SQLAlchemy 2 typed ORM for the schema; Core statements for the bulk paths. The schema is created
and evolved by Alembic (`monitoring/migrations`), run with :func:`upgrade_database`. Query
functions return pandas frames typed like the training data (numeric features float64,
categorical features object str), so Evidently can compare them with the reference directly.

SQLite runs in WAL mode with a busy timeout and `synchronous=NORMAL` (a committed row survives a
crash or kill of the process; FULL via DRIFTLOOP_SQLITE_SYNCHRONOUS also survives power loss); PostgreSQL is the production backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
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

from driftloop.errors import DriftloopError

INFERENCE_LOG = "inference_log"
#: Columns every query frame carries besides the features and the label.
META_COLUMNS = ("request_id", "ts", "model_version", "prediction", "probability")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 10_000
#: WAL + NORMAL: a commit survives a crash or `kill -9` of the process (the WAL is written before
#: COMMIT returns); only an OS crash / power loss can drop the last commits. FULL also fsyncs each
#: commit (set DRIFTLOOP_SQLITE_SYNCHRONOUS=FULL), at ~10x the commit latency on slow disks.
_SQLITE_SYNCHRONOUS_DEFAULT = "NORMAL"
_INSERT_CHUNK = 2_000
_LOOKUP_CHUNK = 500


class StoreError(DriftloopError, RuntimeError):
    """The inference log cannot be read or written (unreachable database, missing schema, ...)."""

    transient = True


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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the inference log; SQLite gets WAL mode, a busy timeout and full sync.

    PostgreSQL connections time out after a few seconds instead of hanging when the server is
    unreachable, so the writer can fall back to its spool quickly.
    """
    options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": _json_loads,
        "pool_pre_ping": True,
    }
    backend = sa.make_url(url).get_backend_name()
    if backend == "postgresql":
        options["connect_args"] = {
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
    options.update(kwargs)
    engine = sa.create_engine(url, **options)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    mode = os.environ.get("DRIFTLOOP_SQLITE_SYNCHRONOUS", _SQLITE_SYNCHRONOUS_DEFAULT).upper()
    if mode not in {"NORMAL", "FULL", "EXTRA"}:
        raise StoreError(
            f"DRIFTLOOP_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA, got {mode!r}"
        )
    cursor.execute(f"PRAGMA synchronous={mode}")
    cursor.close()


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
    "Base",
    "InferenceLog",
    "StoreError",
    "count_rows",
    "current_revision",
    "dumps_record",
    "inference_log",
    "insert_records",
    "known_request_ids",
    "loads_record",
    "log_record",
    "make_engine",
    "read_window",
    "record_labels",
    "upgrade_database",
]
