"""Initial registry schema: nodes, their keys and certificates, directory versions, locators,
duplicate entitlements and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _utc(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(512), nullable=False),
        sa.Column("region_codes", sa.JSON(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("signing_public_key", sa.LargeBinary(), nullable=False),
        sa.Column("hpke_public_key", sa.LargeBinary(), nullable=False),
        sa.Column("tls_csr_pem", sa.LargeBinary(), nullable=False),
        sa.Column("application_digest", sa.String(64), nullable=False),
        sa.Column("application_envelope", sa.LargeBinary(), nullable=False),
        _utc("applied_at"),
        _utc("received_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(512), nullable=False),
        _utc("status_changed_at"),
    )
    op.create_index("ix_node_status", "node", ["status"])

    op.create_table(
        "node_key",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("node.node_id"), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        _utc("valid_from"),
        _utc("valid_until", nullable=True),
        _utc("revoked_at", nullable=True),
    )
    op.create_index("ix_node_key_node_id", "node_key", ["node_id"])

    op.create_table(
        "node_certificate",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("node.node_id"), nullable=False),
        sa.Column("certificate_pem", sa.LargeBinary(), nullable=False),
        sa.Column("serial_number", sa.String(64), nullable=False),
        _utc("not_before"),
        _utc("not_after"),
        _utc("issued_at"),
        _utc("superseded_at", nullable=True),
    )
    op.create_index("ix_node_certificate_node_id", "node_certificate", ["node_id"])

    op.create_table(
        "directory_version",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("envelope_json", sa.LargeBinary(), nullable=False),
        _utc("issued_at"),
        _utc("expires_at"),
    )

    op.create_table(
        "subject_locator",
        sa.Column("locator", sa.LargeBinary(32), primary_key=True),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("node.node_id"), primary_key=True),
        _utc("published_at"),
    )
    op.create_index("ix_subject_locator_node_id", "subject_locator", ["node_id"])

    op.create_table(
        "duplicate_entitlement",
        sa.Column("locator", sa.LargeBinary(32), primary_key=True),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("node.node_id"), primary_key=True),
        _utc("detected_at"),
    )
    op.create_index("ix_duplicate_entitlement_node_id", "duplicate_entitlement", ["node_id"])

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _utc("at"),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(1024), nullable=False),
        _utc("effective_at", nullable=True),
        sa.Column("directory_version", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_node_id", "audit_event", ["node_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_audit_event_node_id", "audit_event"),
        ("ix_audit_event_at", "audit_event"),
        ("ix_duplicate_entitlement_node_id", "duplicate_entitlement"),
        ("ix_subject_locator_node_id", "subject_locator"),
        ("ix_node_certificate_node_id", "node_certificate"),
        ("ix_node_key_node_id", "node_key"),
        ("ix_node_status", "node"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "audit_event",
        "duplicate_entitlement",
        "subject_locator",
        "directory_version",
        "node_certificate",
        "node_key",
        "node",
    ):
        op.drop_table(table)
