"""The desk's lists of overpayments and of possible duplicates read only the people on them.

Each list (and the report's count of possible duplicates) read every entitlement or every person
of the roll to find the few with an overpayment to recover or flagged as possible duplicates:
at 300,000 people, 121 and 210 ms a page. Each is now indexed over those few people alone, so
the rest of the roll costs no index entry and its updates stay as cheap as before.

Written by hand and self-contained; additive, so a node one release older keeps working against
it. Building the two indexes reads the two tables once, as the first new replica starts.
Chained after 0024.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

OVERPAID = "overpayment_fen > 0"
POSSIBLE_DUPLICATE = {
    "postgresql": "possible_duplicate IS true",
    "sqlite": "possible_duplicate IS 1",
}


def upgrade() -> None:
    op.create_index(
        "ix_entitlement_overpaid",
        "entitlement",
        ["beneficiary_id"],
        postgresql_where=sa.text(OVERPAID),
        sqlite_where=sa.text(OVERPAID),
    )
    op.create_index(
        "ix_beneficiary_possible_duplicate",
        "beneficiary",
        ["beneficiary_id"],
        postgresql_where=sa.text(POSSIBLE_DUPLICATE["postgresql"]),
        sqlite_where=sa.text(POSSIBLE_DUPLICATE["sqlite"]),
    )


def downgrade() -> None:
    op.drop_index("ix_beneficiary_possible_duplicate", table_name="beneficiary")
    op.drop_index("ix_entitlement_overpaid", table_name="entitlement")
