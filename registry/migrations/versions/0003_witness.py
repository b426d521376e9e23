"""The registry as witness: the last cosigned checkpoint per log, and recorded forks.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "witnessed_checkpoint",
        sa.Column("origin", sa.String(255), primary_key=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "witness_fork",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("node.node_id"), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("cosigned_note", sa.LargeBinary(), nullable=False),
        sa.Column("offered_note", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_witness_fork_node_id", "witness_fork", ["node_id"])
    op.create_index("ix_witness_fork_detected_at", "witness_fork", ["detected_at"])


def downgrade() -> None:
    op.drop_index("ix_witness_fork_detected_at", "witness_fork")
    op.drop_index("ix_witness_fork_node_id", "witness_fork")
    op.drop_table("witness_fork")
    op.drop_table("witnessed_checkpoint")
