"""The roll index feed rows are matched through: `beneficiary.roll_key`.

A nullable, unique column, and a partial index on the rows still without one. The key is HMAC
of the person's locator input under a key of the node's own (rules/feed_records.py). The
migration cannot compute it (it needs the node's key and each sealed identity opened), so rows
written before it stay NULL until the node fills them in as it starts, or before its next feed
batch (offices/roll.py `fill_roll_keys`).

Written by hand and self-contained; additive (a nullable column), so a node one release older
keeps working against it. Chained after 0017.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("beneficiary") as batch:
        batch.add_column(sa.Column("roll_key", sa.LargeBinary(), nullable=True))
        batch.create_unique_constraint("uq_beneficiary_roll_key", ["roll_key"])
    op.create_index(
        "ix_beneficiary_without_roll_key",
        "beneficiary",
        ["beneficiary_id"],
        postgresql_where=sa.text("roll_key IS NULL"),
        sqlite_where=sa.text("roll_key IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_beneficiary_without_roll_key", table_name="beneficiary")
    with op.batch_alter_table("beneficiary") as batch:
        batch.drop_constraint("uq_beneficiary_roll_key", type_="unique")
        batch.drop_column("roll_key")
