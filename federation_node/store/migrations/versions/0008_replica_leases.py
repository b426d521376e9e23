"""Outbox leases owned by a dispatcher replica, and the log head's knowledge of its witness.

`outbox_message.leased_by` names the replica holding a message's lease, so a restarted replica
releases what its previous incarnation held instead of waiting for the lease to run out.
`log_head.witnessed_size` is the largest size the registry witness is known to have cosigned,
and `log_head.awaiting_witness` is set by a restore until the witness has answered: appends are
refused while the log is shorter than what the witness cosigned, or unconfirmed after a restore.

Written by hand and self-contained. Chained after 0007 (the roll).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_message", sa.Column("leased_by", sa.String(64), nullable=True))
    op.add_column(
        "log_head",
        sa.Column("witnessed_size", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "log_head",
        sa.Column("awaiting_witness", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("log_head") as batch:
        batch.drop_column("awaiting_witness")
        batch.drop_column("witnessed_size")
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_column("leased_by")
