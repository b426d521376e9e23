"""The report's count of the roll kept as a running total instead of counted on each view.

The desk's report counted every person on the roll each time it was shown: about 50 ms at a
million people, the one page of the desk that still grew with the office. The roll's total is
kept in `tally` (counter `roll`, label `people`) by the writers, started here from the people
there are, and recounted by each day's cycle (store/tally.py).

Written by hand and self-contained; additive. A replica one release older keeps working against
it but does not add the people it registers to the total; the next day's cycle corrects it.
Chained after 0026.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Started afresh from the rows, whatever a row of that name held.
    op.execute("DELETE FROM tally WHERE counter = 'roll'")
    op.execute(
        "INSERT INTO tally (counter, label, total) "
        "SELECT 'roll', 'people', COUNT(*) FROM beneficiary"
    )


def downgrade() -> None:
    op.execute("DELETE FROM tally WHERE counter = 'roll'")
