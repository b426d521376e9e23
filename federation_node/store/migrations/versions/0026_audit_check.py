"""How far the audit chain has been verified, so the audit page checks only what is new.

The node verified the whole hash chain on every view of the audit page (and on every page of
its CSV export): about 30 µs a record, three seconds a page at 100,000 records. `audit_check`
keeps where the last check ended and the hash it saw there; a view verifies only the records
added since, and a background pass re-reads the whole chain every
`audit_full_check_interval_s` (store/audit_check.py).

Written by hand and self-contained; additive, so a node one release older keeps working
against it (it verifies the whole chain itself). The row starts at record 0, never verified:
the first background pass after the upgrade verifies the whole chain once. Chained after 0025.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    table = op.create_table(
        "audit_check",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("through_seq", sa.Integer(), nullable=False),
        sa.Column("through_hash", sa.String(64), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_pass_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_pass_through", sa.Integer(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("problems_dropped", sa.Boolean(), nullable=False),
    )
    op.bulk_insert(
        table,
        [
            {
                "name": "chain",
                "through_seq": 0,
                "through_hash": GENESIS_HASH,
                "full_pass_through": 0,
                "problems": [],
                "problems_dropped": False,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("audit_check")
