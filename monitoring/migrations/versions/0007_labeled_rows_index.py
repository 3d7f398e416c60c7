"""A partial index of the labeled rows: (model_name, model_version, ts) where label_ts is set.

The monitor reads a version's newest labeled rows every run. Without it, finding them (the
n-th newest labeled row, the count) walks the version's (model_name, model_version, ts) index
and looks up every row in the table to test its label: 12 s for a 10M-row SQLite log with no
labels yet, against under 0.1 s with it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAME = "ix_inference_log_model_version_labeled_ts"
LABELED = sa.text("label_ts IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        NAME,
        "inference_log",
        ["model_name", "model_version", "ts"],
        sqlite_where=LABELED,
        postgresql_where=LABELED,
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="inference_log")
