"""The daily cycle in batches: how far a day's run has gone, and whether it has finished.

`cycle_run` gains `resume_after` (the last beneficiary id whose batch committed; NULL before the
first) and `finished_at` (NULL while the day's run is under way). Runs recorded before this
revision did their whole day in one transaction, so they are finished when they started.

Written by hand and self-contained; additive (two nullable columns), so a node one release older
keeps working against it. Chained after 0013.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cycle_run") as batch:
        batch.add_column(sa.Column("resume_after", sa.String(64), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE cycle_run SET finished_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table("cycle_run") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("resume_after")
