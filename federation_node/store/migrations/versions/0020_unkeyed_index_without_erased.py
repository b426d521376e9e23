"""The index of people without a roll key leaves out the erased.

An erased person keeps no identity to key, so `roll_key` stays NULL for good; in the partial
index of people without one (0018), every erasure added a row that the look for people to key,
which runs before each feed batch, walked and dropped again. The index now holds only people
whose sealed identity is still there: those a node can key.

Written by hand and self-contained; the index is recreated under the same name, so a node one
release older (whose query the old predicate served) keeps working against it. Chained after
0019.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INDEX = "ix_beneficiary_without_roll_key"


def _recreate(predicate: str) -> None:
    op.drop_index(INDEX, table_name="beneficiary")
    op.create_index(
        INDEX,
        "beneficiary",
        ["beneficiary_id"],
        postgresql_where=sa.text(predicate),
        sqlite_where=sa.text(predicate),
    )


def upgrade() -> None:
    _recreate("roll_key IS NULL AND length(sealed_identity) > 0")


def downgrade() -> None:
    _recreate("roll_key IS NULL")
