"""The paying office's year: entitlements, data signals, payment instructions, reminders and the
daily cycle's runs.

Written by hand and self-contained. Every beneficiary registered before this migration gets an
active entitlement with a monthly amount of 0 fen, which the office corrects from its roll.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _beneficiary(table: str, *, nullable: bool = False) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("beneficiary_id", sa.String(64), nullable=nullable),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name=f"fk_{table}_beneficiary_id_beneficiary",
        ),
    ]


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"ck_{table}_{column}")


def upgrade() -> None:
    op.create_table(
        "entitlement",
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("monthly_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        _when("state_since"),
        sa.Column("termination_pending_review", sa.Boolean(), nullable=False),
        sa.Column("pending_status", sa.String(32), nullable=True),
        _when("pending_effective_at", nullable=True),
        sa.Column("withheld_from_month", sa.String(7), nullable=True),
        sa.Column("overpayment_fen", sa.BigInteger(), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("beneficiary_id", name="pk_entitlement"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_entitlement_beneficiary_id_beneficiary",
        ),
        _one_of("entitlement", "state", ("active", "due", "warning", "suspended", "terminated")),
        sa.CheckConstraint(
            "monthly_amount_fen >= 0", name="ck_entitlement_monthly_amount_fen_not_negative"
        ),
    )
    op.create_index(
        "ix_entitlement_state_beneficiary_id", "entitlement", ["state", "beneficiary_id"]
    )
    op.execute(
        "INSERT INTO entitlement (beneficiary_id, monthly_amount_fen, state, state_since, "
        "termination_pending_review, overpayment_fen, updated_at) "
        "SELECT beneficiary_id, 0, 'active', created_at, false, 0, updated_at FROM beneficiary"
    )

    op.create_table(
        "data_signal",
        sa.Column("signal_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_record_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        *_beneficiary("data_signal", nullable=True),
        _when("observed_at"),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=True),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        _when("recorded_at"),
        sa.PrimaryKeyConstraint("signal_id", name="pk_data_signal"),
        sa.UniqueConstraint(
            "source", "source_record_id", name="uq_data_signal_source_source_record_id"
        ),
        _one_of("data_signal", "outcome", ("applied", "unknown_person", "ignored")),
    )
    op.create_index("ix_data_signal_beneficiary_id", "data_signal", ["beneficiary_id"])

    op.create_table(
        "payment_instruction",
        sa.Column("instruction_id", sa.String(64), nullable=False),
        *_beneficiary("payment_instruction"),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("effective_month", sa.String(7), nullable=False),
        sa.Column("back_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("back_pay_months", sa.Integer(), nullable=False),
        sa.Column("overpayment_fen", sa.BigInteger(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("instruction_id", name="pk_payment_instruction"),
        sa.UniqueConstraint(
            "beneficiary_id",
            "effective_month",
            "action",
            name="uq_payment_instruction_beneficiary_id_effective_month_action",
        ),
        _one_of("payment_instruction", "action", ("suspend", "resume", "terminate")),
    )
    op.create_index(
        "ix_payment_instruction_effective_month_instruction_id",
        "payment_instruction",
        ["effective_month", "instruction_id"],
    )

    op.create_table(
        "reminder",
        sa.Column("reminder_id", sa.String(64), nullable=False),
        *_beneficiary("reminder"),
        sa.Column("kind", sa.String(32), nullable=False),
        _when("expires_at"),
        sa.Column("offset_days", sa.Integer(), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        _when("acknowledged_at", nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("reminder_id", name="pk_reminder"),
        sa.UniqueConstraint(
            "beneficiary_id",
            "expires_at",
            "offset_days",
            name="uq_reminder_beneficiary_id_expires_at_offset_days",
        ),
        _one_of("reminder", "kind", ("due", "warning", "overdue")),
    )
    op.create_index(
        "ix_reminder_acknowledged_reminder_id", "reminder", ["acknowledged", "reminder_id"]
    )

    op.create_table(
        "cycle_run",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        _when("started_at"),
        sa.Column("became_due", sa.Integer(), nullable=False),
        sa.Column("requests_sent", sa.Integer(), nullable=False),
        sa.Column("reminders_queued", sa.Integer(), nullable=False),
        sa.Column("warned", sa.Integer(), nullable=False),
        sa.Column("suspended", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_cycle_run"),
    )


def downgrade() -> None:
    op.drop_table("cycle_run")
    op.drop_index("ix_reminder_acknowledged_reminder_id", table_name="reminder")
    op.drop_table("reminder")
    op.drop_index(
        "ix_payment_instruction_effective_month_instruction_id", table_name="payment_instruction"
    )
    op.drop_table("payment_instruction")
    op.drop_index("ix_data_signal_beneficiary_id", table_name="data_signal")
    op.drop_table("data_signal")
    op.drop_index("ix_entitlement_state_beneficiary_id", table_name="entitlement")
    op.drop_table("entitlement")
