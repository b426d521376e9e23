"""Feed accounts and alive signals held for a second person.

`operator` gains `feed_sources`: the sources a feed account (role `feed`) may record signals
for; empty for every other operator. `pending_signal` holds alive signals a person entered at
the desk until another person approves or rejects them.

Written by hand and self-contained; additive (a column with a default, a new table), so a node
one release older keeps working against it. Chained after 0011.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "operator", sa.Column("feed_sources", sa.JSON(), nullable=False, server_default="[]")
    )
    op.create_table(
        "pending_signal",
        sa.Column("pending_signal_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_record_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_by", sa.String(80), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pending_signal_id", name="pk_pending_signal"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_pending_signal_beneficiary_id_beneficiary",
        ),
        sa.UniqueConstraint(
            "source", "source_record_id", name="uq_pending_signal_source_source_record_id"
        ),
        sa.CheckConstraint(
            "decision IN ('pending', 'applied', 'rejected')", name="ck_pending_signal_decision"
        ),
    )
    op.create_index("ix_pending_signal_beneficiary_id", "pending_signal", ["beneficiary_id"])


def downgrade() -> None:
    op.drop_index("ix_pending_signal_beneficiary_id", table_name="pending_signal")
    op.drop_table("pending_signal")
    with op.batch_alter_table("operator") as batch:
        batch.drop_column("feed_sources")
