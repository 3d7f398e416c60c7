"""The `drift_runs` table: one row per monitor run (who, when, window, verdicts, scores, actions).

The policy functions read the history back as :class:`monitoring.policy.RunRecord` items; the
serving process and the Prometheus exporter read the latest row per model.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from monitoring.incidents import Incident
from monitoring.policy import RunRecord
from monitoring.store import Base, UTCDateTime, _json_type, inference_log

DRIFT_RUNS = "drift_runs"


class DriftRun(Base):
    """One monitor run and what it decided."""

    __tablename__ = DRIFT_RUNS
    __table_args__ = (
        sa.UniqueConstraint("run_id", name="uq_drift_runs_run_id"),
        sa.Index("ix_drift_runs_model_started", "model_name", "started_at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(sa.String(64))
    model_name: Mapped[str] = mapped_column(sa.String(200))
    model_version: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    triggered_by: Mapped[str] = mapped_column(sa.String(200))
    window_kind: Mapped[str] = mapped_column(sa.String(32))
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_rows: Mapped[int] = mapped_column(sa.Integer())
    labeled_rows: Mapped[int] = mapped_column(sa.Integer())
    status: Mapped[str] = mapped_column(sa.String(32))
    dataset_drift: Mapped[bool | None] = mapped_column(sa.Boolean(), nullable=True)
    drift_share: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    drifted_features: Mapped[list[str]] = mapped_column(_json_type())
    scores: Mapped[dict[str, Any]] = mapped_column(_json_type())
    failed_checks: Mapped[list[str]] = mapped_column(_json_type())
    condition: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)
    metric: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    metric_value: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    performance_drop: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    estimated_value: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    alerted: Mapped[bool] = mapped_column(sa.Boolean())
    alert_reason: Mapped[str] = mapped_column(sa.Text())
    retrain: Mapped[bool] = mapped_column(sa.Boolean())
    retrain_reason: Mapped[str] = mapped_column(sa.Text())
    details: Mapped[dict[str, Any]] = mapped_column(_json_type())
    #: none / warning / critical (monitoring.incidents.severity_of)
    severity: Mapped[str] = mapped_column(sa.String(16), server_default="none")
    #: the incident open after this run (monitoring.incidents.Incident.to_dict), or NULL
    incident: Mapped[dict[str, Any] | None] = mapped_column(
        _json_type(nullable=True), nullable=True
    )
    incident_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    #: opened / escalated / calmed / resolved, or NULL
    incident_event: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    #: promoted / refused / deferred / failed, set by the retraining this run started
    retrain_outcome: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    estimated_low: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    estimated_high: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    #: the primary metric measured on this run's window once its labels arrived
    realized_value: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)


drift_runs: sa.Table = DriftRun.__table__  # type: ignore[assignment]


def new_run_id() -> str:
    return uuid.uuid4().hex


def record_run(engine: Engine, row: Mapping[str, Any]) -> str:
    """Insert one run (a mapping of the column names); returns its run_id."""
    values = {"run_id": new_run_id(), **row}
    with engine.begin() as conn:
        conn.execute(sa.insert(drift_runs).values(**values))
    return values["run_id"]


def history(engine: Engine, model_name: str, *, since: datetime) -> list[RunRecord]:
    """Earlier runs of a model since a time, oldest first, as policy history items."""
    c = drift_runs.c
    query = (
        sa.select(
            c.started_at,
            c.status,
            c.condition,
            c.alerted,
            c.retrain,
            c.severity,
            c.incident,
            c.retrain_outcome,
            c.model_version,
            c.retrain_reason,
            c.performance_drop,
        )
        .where(c.model_name == model_name, c.started_at >= since)
        .order_by(c.started_at)
    )
    with engine.connect() as conn:
        return [
            RunRecord(
                r[0],
                r[1],
                r[2],
                bool(r[3]),
                bool(r[4]),
                r[5] or "none",
                Incident.from_dict(r[6]),
                r[7],
                r[8],
                r[9] or "",
                r[10],
            )
            for r in conn.execute(query)
        ]


def awaiting_realization(
    engine: Engine, model_name: str, version: int, *, before: datetime, limit: int = 5
) -> list[dict[str, Any]]:
    """Runs of a version whose estimate has no realized value yet, oldest first."""
    c = drift_runs.c
    query = (
        sa.select(c.run_id, c.window_start, c.window_end, c.estimated_value, c.metric)
        .where(
            c.model_name == model_name,
            c.model_version == version,
            c.estimated_value.is_not(None),
            c.realized_value.is_(None),
            c.window_start.is_not(None),
            c.started_at < before,
        )
        .order_by(c.started_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def record_realized(engine: Engine, run_id: str, value: float) -> None:
    """The metric measured on a run's window once its labels arrived."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(drift_runs).where(drift_runs.c.run_id == run_id).values(realized_value=value)
        )


def estimation_errors(engine: Engine, model_name: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs with both an estimate and its realized value (estimate minus realized)."""
    c = drift_runs.c
    query = (
        sa.select(c.started_at, c.model_version, c.metric, c.estimated_value, c.realized_value)
        .where(
            c.model_name == model_name,
            c.estimated_value.is_not(None),
            c.realized_value.is_not(None),
        )
        .order_by(c.started_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["error"] = row["estimated_value"] - row["realized_value"]
    return rows


def follow_up_tried(engine: Engine, model_name: str, version: int, *, prefix: str) -> bool:
    """Whether a follow-up retraining (reason starting with ``prefix``) already started for
    windows of this version (a deferred one does not count)."""
    c = drift_runs.c
    query = (
        sa.select(sa.func.count())
        .select_from(drift_runs)
        .where(
            c.model_name == model_name,
            c.model_version == version,
            c.retrain.is_(True),
            c.retrain_reason.like(f"{prefix}%"),
            sa.or_(c.retrain_outcome.is_(None), c.retrain_outcome != "deferred"),
        )
    )
    with engine.connect() as conn:
        return bool(conn.scalar(query))


def record_retrain_outcome(engine: Engine, run_id: str, outcome: str) -> bool:
    """What became of the retraining a run started (promoted, refused, deferred, failed);
    False when no run has that id (a retraining started by hand)."""
    if not run_id:
        return False
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(drift_runs)
            .where(drift_runs.c.run_id == run_id)
            .values(retrain_outcome=outcome)
        )
    return bool(done.rowcount)


def incident_of(engine: Engine, run_id: str) -> str | None:
    """The incident a run belonged to (None: no such run, or it found nothing wrong)."""
    if not run_id:
        return None
    query = sa.select(drift_runs.c.incident_id).where(drift_runs.c.run_id == run_id)
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def recent_history(
    engine: Engine, model_name: str, *, now: datetime, days: float = 7
) -> list[RunRecord]:
    """The runs of the last ``days``, and all runs of the incident still open (however old:
    its retraining budget and refusals count for as long as it lasts)."""
    since = now - timedelta(days=days)
    latest = latest_run(engine, model_name)
    open_incident = Incident.from_dict(latest["incident"]) if latest else None
    if open_incident is not None and open_incident.opened_at < since:
        since = open_incident.opened_at
    return history(engine, model_name, since=since)


def latest_run(engine: Engine, model_name: str) -> dict[str, Any] | None:
    """The newest run of a model as a dict, or None."""
    query = (
        sa.select(drift_runs)
        .where(drift_runs.c.model_name == model_name)
        .order_by(drift_runs.c.started_at.desc(), drift_runs.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def list_runs(engine: Engine, model_name: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest runs of a model, newest first."""
    query = (
        sa.select(drift_runs)
        .where(drift_runs.c.model_name == model_name)
        .order_by(drift_runs.c.started_at.desc(), drift_runs.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def latest_served_version(engine: Engine, model_name: str) -> int | None:
    """The model version of the newest row in the inference log (None when nothing is logged)."""
    query = (
        sa.select(inference_log.c.model_version)
        .where(inference_log.c.model_name == model_name)
        .order_by(inference_log.c.ts.desc(), inference_log.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()
