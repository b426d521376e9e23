"""Overpayment recovery (fraud findings and recoveries, one line each) and death reports.

`debt_entry` holds what a person owes beyond the overpayment their entitlement carries (a fraud
finding: the amount obtained and the policy's fine on it) and what was recovered (amount, method,
date, reference, who recorded it). Lines are never edited (offices/recovery.py).
`death_report` holds who reported a death recorded at the desk (family, unit, village) and
whether within their report window.

Written by hand and self-contained; additive (a new table), so a node one release older keeps
working against it. Chained after 0016.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "debt_entry",
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("fine_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_debt_entry"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_debt_entry_beneficiary_id_beneficiary",
        ),
        sa.CheckConstraint("kind IN ('fraud', 'recovery')", name="ck_debt_entry_kind"),
        sa.CheckConstraint(
            "method IN ('bank_return', 'repayment', 'withholding')", name="ck_debt_entry_method"
        ),
        sa.CheckConstraint("amount_fen > 0", name="ck_debt_entry_amount_fen_positive"),
        sa.CheckConstraint("fine_fen >= 0", name="ck_debt_entry_fine_fen_not_negative"),
    )
    op.create_index("ix_debt_entry_beneficiary_id", "debt_entry", ["beneficiary_id"])
    op.create_table(
        "death_report",
        sa.Column("certification_id", sa.String(64), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=True),
        sa.Column("reporter", sa.String(32), nullable=False),
        sa.Column("died_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("days_taken", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("certification_id", name="pk_death_report"),
        sa.ForeignKeyConstraint(
            ["certification_id"],
            ["certification.certification_id"],
            name="fk_death_report_certification_id_certification",
        ),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_death_report_beneficiary_id_beneficiary",
        ),
        sa.CheckConstraint(
            "reporter IN ('family', 'unit', 'village')", name="ck_death_report_reporter"
        ),
    )
    op.create_index(
        "ix_death_report_late_certification_id", "death_report", ["late", "certification_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_death_report_late_certification_id", table_name="death_report")
    op.drop_table("death_report")
    op.drop_index("ix_debt_entry_beneficiary_id", table_name="debt_entry")
    op.drop_table("debt_entry")
