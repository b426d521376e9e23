"""Corrections: an attestation may supersede an earlier one of the same issuer.

`attestation.corrects_attestation_id` and `certification.corrects_attestation_id` (nullable,
additive) name the attestation a correction supersedes; the old attestation is never edited.
`attestation_review.reason` accepts `correction` and `restores-entitlement`: a peer's correction,
and a peer's certification of a person released from prison or reappearing, wait for this
office's reviewer. A node one release older keeps working against this schema: it never writes
the new columns, and the wider check only accepts more.

Written by hand and self-contained. Chained after 0012 (feed accounts); the lead re-chains it
after the other migrations of the session.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CHECK = "ck_attestation_review_reason"
REASONS = ("walk-in-not-allowed", "negative-without-request", "not-our-request")


def _reasons(values: tuple[str, ...]) -> str:
    return f"reason IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.add_column("attestation", sa.Column("corrects_attestation_id", sa.String(64), nullable=True))
    op.create_index(
        "ix_attestation_corrects_attestation_id", "attestation", ["corrects_attestation_id"]
    )
    op.add_column(
        "certification", sa.Column("corrects_attestation_id", sa.String(64), nullable=True)
    )
    with op.batch_alter_table("attestation_review") as batch:
        batch.drop_constraint(CHECK, type_="check")
        batch.create_check_constraint(
            CHECK, _reasons((*REASONS, "correction", "restores-entitlement"))
        )


def downgrade() -> None:
    with op.batch_alter_table("attestation_review") as batch:
        batch.drop_constraint(CHECK, type_="check")
        batch.create_check_constraint(CHECK, _reasons(REASONS))
    with op.batch_alter_table("certification") as batch:
        batch.drop_column("corrects_attestation_id")
    op.drop_index("ix_attestation_corrects_attestation_id", table_name="attestation")
    with op.batch_alter_table("attestation") as batch:
        batch.drop_column("corrects_attestation_id")
