"""Locator evaluations per node and UTC day, counted against the node's daily quota.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "locator_evaluation_day",
        sa.Column(
            "node_id",
            sa.String(64),
            sa.ForeignKey("node.node_id"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("evaluated", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_locator_evaluation_day_node_id", "locator_evaluation_day", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_locator_evaluation_day_node_id", "locator_evaluation_day")
    op.drop_table("locator_evaluation_day")
