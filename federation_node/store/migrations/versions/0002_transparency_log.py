"""The transparency log: this node's entries, head, cached subtree roots and cosigned
checkpoints, and the verified copies of other nodes' logs.

Written by hand and self-contained. The log head is one row, created here with the empty tree
(size 0, root SHA-256 of nothing, RFC 9162 2.1.1), so every append can lock an existing row.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-25
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _big(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, autoincrement=False)


def _bytes(name: str) -> sa.Column[bytes]:
    return sa.Column(name, sa.LargeBinary(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "log_entry",
        _big("leaf_index"),
        _bytes("leaf_hash"),
        _bytes("envelope_json"),
        sa.Column("paying_region", sa.String(16), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_log_entry"),
        sa.UniqueConstraint("attestation_id", name="uq_log_entry_attestation_id"),
        sa.CheckConstraint("length(leaf_hash) = 32", name="ck_log_entry_leaf_hash_length"),
    )
    head = op.create_table(
        "log_head",
        sa.Column("head_id", sa.Integer(), nullable=False, autoincrement=False),
        _big("tree_size"),
        _bytes("root_hash"),
        _bytes("compact_state"),
        sa.PrimaryKeyConstraint("head_id", name="pk_log_head"),
        sa.CheckConstraint("head_id = 1", name="ck_log_head_single_row"),
    )
    op.bulk_insert(
        head,
        [
            {
                "head_id": 1,
                "tree_size": 0,
                "root_hash": hashlib.sha256(b"").digest(),
                "compact_state": b"",
            }
        ],
    )
    op.create_table(
        "log_subtree",
        sa.Column("level", sa.Integer(), nullable=False, autoincrement=False),
        _big("subtree_index"),
        _bytes("subtree_hash"),
        sa.PrimaryKeyConstraint("level", "subtree_index", name="pk_log_subtree"),
    )
    op.create_table(
        "log_checkpoint",
        _big("tree_size"),
        _bytes("root_hash"),
        _bytes("note"),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_log_checkpoint"),
    )
    op.create_table(
        "synced_log",
        sa.Column("origin_node_id", sa.String(64), nullable=False),
        _big("tree_size"),
        _bytes("root_hash"),
        _bytes("compact_state"),
        _bytes("checkpoint_note"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin_node_id", name="pk_synced_log"),
    )
    op.create_table(
        "synced_entry",
        sa.Column("origin_node_id", sa.String(64), nullable=False),
        _big("leaf_index"),
        _bytes("envelope_json"),
        sa.Column("paying_region", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("origin_node_id", "leaf_index", name="pk_synced_entry"),
    )


def downgrade() -> None:
    op.drop_table("synced_entry")
    op.drop_table("synced_log")
    op.drop_table("log_checkpoint")
    op.drop_table("log_subtree")
    op.drop_table("log_head")
    op.drop_table("log_entry")
