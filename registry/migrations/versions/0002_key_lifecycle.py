"""Key and membership lifecycle: a reason on revoked signing keys, and root key rotations.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("node_key") as batch:
        batch.add_column(
            sa.Column("revocation_reason", sa.String(512), nullable=False, server_default="")
        )
    op.create_table(
        "root_statement",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("key_id", sa.String(64), nullable=False, unique=True),
        sa.Column("previous_key_id", sa.String(64), nullable=False),
        sa.Column("envelope_json", sa.LargeBinary(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("root_statement")
    with op.batch_alter_table("node_key") as batch:
        batch.drop_column("revocation_reason")
