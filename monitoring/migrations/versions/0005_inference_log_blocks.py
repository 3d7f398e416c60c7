"""inference_log_blocks: the log's immutable columns as Arrow IPC blocks, for columnar reads;
a partial index of the labeled rows, so the reads' label query never touches the rows.

Existing rows are copied into blocks here (nothing in `inference_log` changes), so every logged
row is in exactly one block from this revision on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_log_blocks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("min_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_version", sa.Integer(), nullable=False),
        sa.Column("max_version", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index(
        "ix_inference_log_blocks_model_ts", "inference_log_blocks", ["model_name", "max_ts"]
    )
    op.create_index(
        "ix_inference_log_labeled",
        "inference_log",
        ["model_name", "ts", "model_version", "label", "id", "label_ts"],
        sqlite_where=sa.text("label_ts IS NOT NULL"),
        postgresql_where=sa.text("label_ts IS NOT NULL"),
    )
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        # the blocks are lz4-compressed already: no second compression by TOAST
        op.execute("ALTER TABLE inference_log_blocks ALTER COLUMN data SET STORAGE EXTERNAL")
    _backfill(connection)


def _backfill(connection: sa.Connection) -> None:
    """Blocks of the rows logged before this revision, in id order, chunk by chunk."""
    from monitoring.store import rebuild_blocks

    rebuild_blocks(connection)


def downgrade() -> None:
    op.drop_index("ix_inference_log_labeled", table_name="inference_log")
    op.drop_index("ix_inference_log_blocks_model_ts", table_name="inference_log_blocks")
    op.drop_table("inference_log_blocks")
