"""inference_log: every served prediction with its inputs, model version and later label.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The next revision (e.g. 0002_drift_runs.py) sets ``down_revision = "0001"``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json(*, nullable: bool = False) -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSONB(none_as_null=nullable), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "inference_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("features", _json(), nullable=False),
        sa.Column("prediction", _json(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("probabilities", _json(nullable=True), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("label", _json(nullable=True), nullable=True),
        sa.Column("label_ts", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("request_id", name="uq_inference_log_request_id"),
    )
    op.create_index("ix_inference_log_model_ts", "inference_log", ["model_name", "ts"])
    op.create_index(
        "ix_inference_log_model_version_ts", "inference_log", ["model_name", "model_version", "ts"]
    )


def downgrade() -> None:
    op.drop_index("ix_inference_log_model_version_ts", table_name="inference_log")
    op.drop_index("ix_inference_log_model_ts", table_name="inference_log")
    op.drop_table("inference_log")
