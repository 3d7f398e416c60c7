"""drift_runs: one row per monitor run (window, verdicts, scores, alert and retrain decisions).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drift_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=False),
        sa.Column("triggered_by", sa.String(200), nullable=False),
        sa.Column("window_kind", sa.String(32), nullable=False),
        sa.Column("window_start", _ts(), nullable=True),
        sa.Column("window_end", _ts(), nullable=True),
        sa.Column("window_rows", sa.Integer(), nullable=False),
        sa.Column("labeled_rows", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dataset_drift", sa.Boolean(), nullable=True),
        sa.Column("drift_share", sa.Float(), nullable=True),
        sa.Column("drifted_features", _json(), nullable=False),
        sa.Column("scores", _json(), nullable=False),
        sa.Column("failed_checks", _json(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=True),
        sa.Column("metric", sa.String(32), nullable=True),
        sa.Column("metric_value", sa.Float(), nullable=True),
        sa.Column("performance_drop", sa.Float(), nullable=True),
        sa.Column("estimated_value", sa.Float(), nullable=True),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.Column("alert_reason", sa.Text(), nullable=False),
        sa.Column("retrain", sa.Boolean(), nullable=False),
        sa.Column("retrain_reason", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.UniqueConstraint("run_id", name="uq_drift_runs_run_id"),
    )
    op.create_index("ix_drift_runs_model_started", "drift_runs", ["model_name", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_runs_model_started", table_name="drift_runs")
    op.drop_table("drift_runs")
