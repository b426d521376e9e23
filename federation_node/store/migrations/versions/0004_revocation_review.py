"""Revocation review: received attestations signed by a key that was revoked since.

Revision ID: 0004
Revises: 0003
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocation_review",
        sa.Column("attestation_id", sa.String(64), nullable=False),
        sa.Column("issuing_node_id", sa.String(64), nullable=False),
        sa.Column("signing_key_id", sa.String(128), nullable=False),
        sa.Column("finding", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revocation_reason", sa.Text(), nullable=False),
        sa.Column("directory_version", sa.BigInteger(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "finding IN ('refused-after-revocation', 'signed-by-since-revoked-key')",
            name="ck_revocation_review_finding",
        ),
        sa.ForeignKeyConstraint(
            ["attestation_id"],
            ["attestation.attestation_id"],
            name="fk_revocation_review_attestation_id_attestation",
        ),
        sa.PrimaryKeyConstraint("attestation_id", name="pk_revocation_review"),
    )


def downgrade() -> None:
    op.drop_table("revocation_review")
