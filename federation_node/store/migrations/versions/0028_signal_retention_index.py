"""The retention's daily delete of data signals reads only the signals past their period.

`delete_signals` (signals older than `retention.signal_days`, unmatched ones older than
`retention.unmatched_signal_days`) had no index on `recorded_at`, so every day's cycle read the
whole table: 0.41 s at 5,000,000 signals with the table cached, and a province's feeds keep tens
of millions for the five years of the default period. On PostgreSQL the index is a BRIN index
(signals are recorded in time order, so each range of the table covers a short span of days):
a few kilobytes, almost nothing per insert, and the same delete in 8 ms. SQLite gets a B-tree.

Written by hand and self-contained; additive, so a node one release older keeps working against
it. Building it reads the table once, as the first new replica starts. Chained after 0027.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_data_signal_recorded_at", "data_signal", ["recorded_at"], postgresql_using="brin"
    )


def downgrade() -> None:
    op.drop_index("ix_data_signal_recorded_at", table_name="data_signal")
