"""log_segments: a columnar copy of the inference log, built off the writer path by compaction.

On PostgreSQL, `inference_log.features` becomes `json` (was `jsonb`): cheaper to write.

Also `label_batches` and `inference_log.label_seq`: every call that records labels takes the
next batch number, so a reader knows which labels arrived after a segment was built.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # json, not jsonb: nothing queries inside the features, and jsonb's parse was most of
        # the cost of a write (this rewrites the table once)
        op.alter_column(
            "inference_log", "features", type_=sa.JSON(), postgresql_using="features::json"
        )
    op.add_column("inference_log", sa.Column("label_seq", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_inference_log_model_label_seq", "inference_log", ["model_name", "label_seq"]
    )
    op.create_table(
        "label_batches",
        _id(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
    )
    op.create_table(
        "log_segments",
        _id(),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("covered_to", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("ts_min", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ts_max", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label_horizon", sa.BigInteger(), nullable=False),
        sa.Column("numeric", sa.JSON(), nullable=False),
        sa.Column("categorical", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint(
            "model_name", "model_version", "first_id", name="uq_log_segments_first_row"
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        # the data is lz4 already: TOAST's own compression would only cost time on every read
        op.execute("ALTER TABLE log_segments ALTER COLUMN data SET STORAGE EXTERNAL")
    op.create_index("ix_log_segments_model_covered", "log_segments", ["model_name", "covered_to"])
    op.create_index(
        "ix_log_segments_model_version_ts",
        "log_segments",
        ["model_name", "model_version", "ts_min"],
    )


def downgrade() -> None:
    op.drop_index("ix_log_segments_model_version_ts", table_name="log_segments")
    op.drop_index("ix_log_segments_model_covered", table_name="log_segments")
    op.drop_table("log_segments")
    op.drop_table("label_batches")
    op.drop_index("ix_inference_log_model_label_seq", table_name="inference_log")
    op.drop_column("inference_log", "label_seq")
    if op.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        op.alter_column(
            "inference_log",
            "features",
            type_=postgresql.JSONB(),
            postgresql_using="features::jsonb",
        )
