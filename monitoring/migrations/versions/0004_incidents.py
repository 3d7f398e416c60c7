"""drift_runs: severity, incidents, what became of a retraining, the estimate's band.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("drift_runs") as batch:
        batch.add_column(
            sa.Column("severity", sa.String(16), nullable=False, server_default="none")
        )
        batch.add_column(sa.Column("incident", _json(), nullable=True))
        batch.add_column(sa.Column("incident_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("incident_event", sa.String(16), nullable=True))
        batch.add_column(sa.Column("retrain_outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("estimated_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("estimated_high", sa.Float(), nullable=True))
        batch.add_column(sa.Column("realized_value", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("drift_runs") as batch:
        for name in (
            "realized_value",
            "estimated_high",
            "estimated_low",
            "retrain_outcome",
            "incident_event",
            "incident_id",
            "incident",
            "severity",
        ):
            batch.drop_column(name)
