"""Running totals of the rows the metrics count, kept by the writers.

The metrics scrape counted every attestation issued and every feed row at each scrape, a cost
that grows with the years kept, and the totals went down when retention deleted old rows,
which Prometheus reads as a counter reset. `tally` keeps the two totals (store/tally.py),
started here from the rows there are now.

Written by hand and self-contained; additive. A replica one release older keeps working against
it but does not add to the totals: what it writes while the replicas are replaced is missing
from them. Chained after 0021.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tally",
        sa.Column("counter", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO tally (counter, label, total) "
        "SELECT 'attestations_issued', CAST(method AS VARCHAR(64)), COUNT(*) FROM attestation "
        "WHERE direction = 'issued' GROUP BY method"
    )
    op.execute(
        "INSERT INTO tally (counter, label, total) "
        "SELECT 'feed_rows', outcome, COUNT(*) FROM data_signal GROUP BY outcome"
    )


def downgrade() -> None:
    op.drop_table("tally")
