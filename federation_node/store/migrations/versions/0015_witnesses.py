"""The node as a witness of other members' logs, and attestations waiting for inclusion proofs.

`witnessed_log` keeps, per log origin, the checkpoint this node last cosigned as a witness
(tlog/node_witness.py). `inclusion_wait` keeps each peer's attestation received here until it is
proven in its issuer's witnessed log (tlog/inclusion.py), and the checkpoint that proved it.

Written by hand and self-contained; additive (two new tables), so a node one release older keeps
working against it. Chained after the head that existed when it was written (0018).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witnessed_log",
        sa.Column("origin", sa.String(160), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name="pk_witnessed_log"),
    )
    op.create_table(
        "inclusion_wait",
        sa.Column("issuing_node_id", sa.String(64), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("proven_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proven_tree_size", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_note", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("issuing_node_id", "attestation_id", name="pk_inclusion_wait"),
    )
    op.create_index("ix_inclusion_wait_next_attempt_at", "inclusion_wait", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_inclusion_wait_next_attempt_at", table_name="inclusion_wait")
    op.drop_table("inclusion_wait")
    op.drop_table("witnessed_log")
