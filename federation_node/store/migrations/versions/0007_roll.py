"""The paying office's roll: each beneficiary's pension scheme and first payment month, monthly
amount changes awaiting a reviewer, and the payment months closed by a bank file's export.

Written by hand and self-contained. Chained after 0006 (evidence).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMES = ("employee", "resident", "public_service")
AMOUNT_CHANGE_STATES = ("proposed", "approved", "rejected", "superseded")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    # SQLite adds a column with its CHECK in one ALTER TABLE; it cannot add a constraint later.
    op.add_column(
        "beneficiary",
        sa.Column(
            "scheme",
            sa.String(32),
            sa.CheckConstraint(_one_of("scheme", SCHEMES), name="ck_beneficiary_scheme"),
            nullable=True,
        ),
    )
    op.add_column("beneficiary", sa.Column("payment_start_month", sa.String(7), nullable=True))
    op.create_table(
        "amount_change",
        sa.Column("change_id", sa.String(64), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("previous_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("proposed_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("proposed_by", sa.String(80), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(80), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_reason", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("change_id", name="pk_amount_change"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_amount_change_beneficiary_id_beneficiary",
        ),
        sa.CheckConstraint(_one_of("state", AMOUNT_CHANGE_STATES), name="ck_amount_change_state"),
        sa.CheckConstraint(
            "proposed_amount_fen >= 0", name="ck_amount_change_proposed_amount_fen_not_negative"
        ),
    )
    op.create_index("ix_amount_change_beneficiary_id", "amount_change", ["beneficiary_id"])
    op.create_index("ix_amount_change_state_change_id", "amount_change", ["state", "change_id"])
    op.create_table(
        "closed_month",
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("closed_by", sa.String(80), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month", name="pk_closed_month"),
    )


def downgrade() -> None:
    op.drop_table("closed_month")
    op.drop_index("ix_amount_change_state_change_id", table_name="amount_change")
    op.drop_index("ix_amount_change_beneficiary_id", table_name="amount_change")
    op.drop_table("amount_change")
    with op.batch_alter_table("beneficiary") as batch:
        batch.drop_column("payment_start_month")
        batch.drop_column("scheme")
