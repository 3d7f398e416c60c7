"""shadow_predictions: what the `challenger` version answered on live requests.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _json(*, nullable: bool) -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSONB(none_as_null=nullable), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "shadow_predictions",
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
        sa.Column("prediction", _json(nullable=False), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("probabilities", _json(nullable=True), nullable=True),
        sa.UniqueConstraint("request_id", "model_version", name="uq_shadow_request_version"),
    )
    op.create_index(
        "ix_shadow_model_version_ts", "shadow_predictions", ["model_name", "model_version", "ts"]
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_model_version_ts", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
