"""Attestations kept for review: received attestations this office did not ask for (or that
report a death, imprisonment or disappearance nobody here asked about), stored with why they were
held and what this office's reviewer decided.

Written by hand and self-contained; additive (a new table), so a node one release older keeps
working against it. Chained after 0009 (operator sign-in).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

REASONS = ("walk-in-not-allowed", "negative-without-request", "not-our-request")
DECISIONS = ("pending", "applied", "dismissed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.create_table(
        "attestation_review",
        sa.Column("review_id", sa.String(64), nullable=False),
        sa.Column("issuing_node_id", sa.String(64), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name="pk_attestation_review"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_attestation_review_beneficiary_id_beneficiary",
        ),
        sa.UniqueConstraint(
            "issuing_node_id",
            "attestation_id",
            name="uq_attestation_review_issuing_node_id_attestation_id",
        ),
        sa.CheckConstraint(_one_of("reason", REASONS), name="ck_attestation_review_reason"),
        sa.CheckConstraint(_one_of("decision", DECISIONS), name="ck_attestation_review_decision"),
    )
    op.create_index(
        "ix_attestation_review_beneficiary_id", "attestation_review", ["beneficiary_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_attestation_review_beneficiary_id", table_name="attestation_review")
    op.drop_table("attestation_review")
