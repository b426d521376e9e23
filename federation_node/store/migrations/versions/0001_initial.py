"""The node's first schema: beneficiaries, assistance requests, certifications, attestations,
outbox, operators and the audit chain.

Written by hand and self-contained (it imports nothing from the application), so it creates the
same tables however the models change later. Constraint names follow the naming convention in
federation_node.store.models.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(64), nullable=nullable)


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"ck_{table}_{column}")


_OUTBOUND_INBOUND = ("outbound", "inbound")
_ASSISTANCE_STATES = ("queued", "received", "accepted", "scheduled", "declined", "completed")


def upgrade() -> None:
    op.create_table(
        "beneficiary",
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("subject_locator", sa.LargeBinary(), nullable=False),
        sa.Column("identity_type", sa.String(32), nullable=False),
        sa.Column("masked_identity_number", sa.String(32), nullable=False),
        sa.Column("sealed_identity", sa.LargeBinary(), nullable=False),
        sa.Column("residence_region", sa.String(16), nullable=False),
        sa.Column("paying_region", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        _when("status_effective_at", nullable=True),
        _when("valid_until", nullable=True),
        sa.Column("possible_duplicate", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("beneficiary_id", name="pk_beneficiary"),
        sa.UniqueConstraint("subject_locator", name="uq_beneficiary_subject_locator"),
        sa.CheckConstraint(
            "length(subject_locator) = 32", name="ck_beneficiary_subject_locator_length"
        ),
        _one_of("beneficiary", "identity_type", ("resident_id", "hkid", "macau_bir", "passport")),
        _one_of("beneficiary", "status", ("active", "deceased", "imprisoned", "declared_missing")),
    )

    op.create_table(
        "assistance_request",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(32), nullable=False),
        sa.Column("peer_node_id", sa.String(64), nullable=False),
        _id("beneficiary_id", nullable=True),
        sa.Column("subject_locator", sa.LargeBinary(), nullable=False),
        sa.Column("paying_node_id", sa.String(64), nullable=False),
        sa.Column("paying_region", sa.String(16), nullable=False),
        sa.Column("residence_region", sa.String(16), nullable=False),
        sa.Column("sealed_identity", sa.LargeBinary(), nullable=True),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        _when("deadline"),
        sa.Column("acceptable_methods", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        _when("scheduled_for", nullable=True),
        sa.Column("status_sequence", sa.Integer(), nullable=False),
        _id("attestation_id", nullable=True),
        _id("open_beneficiary_id", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("request_id", name="pk_assistance_request"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_assistance_request_beneficiary_id_beneficiary",
        ),
        sa.UniqueConstraint(
            "open_beneficiary_id", name="uq_assistance_request_open_beneficiary_id"
        ),
        _one_of("assistance_request", "direction", _OUTBOUND_INBOUND),
        _one_of("assistance_request", "status", _ASSISTANCE_STATES),
    )
    op.create_index(
        "ix_assistance_request_beneficiary_id", "assistance_request", ["beneficiary_id"]
    )
    op.create_index(
        "ix_assistance_request_direction_status_request_id",
        "assistance_request",
        ["direction", "status", "request_id"],
    )

    op.create_table(
        "certification",
        sa.Column("certification_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        _id("request_id", nullable=True),
        sa.Column("subject_locator", sa.LargeBinary(), nullable=False),
        sa.Column("paying_node_id", sa.String(64), nullable=False),
        sa.Column("paying_region", sa.String(16), nullable=False),
        sa.Column("certifying_region", sa.String(16), nullable=False),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        _when("observed_at"),
        sa.Column("evidence_digests", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _id("clerk_id"),
        _id("reviewer_id", nullable=True),
        _when("recorded_at"),
        _when("reviewed_at", nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=False),
        _id("attestation_id", nullable=True),
        sa.PrimaryKeyConstraint("certification_id", name="pk_certification"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["assistance_request.request_id"],
            name="fk_certification_request_id_assistance_request",
        ),
        _one_of("certification", "status", ("awaiting_review", "approved", "rejected")),
    )
    op.create_index("ix_certification_request_id", "certification", ["request_id"])
    op.create_index(
        "ix_certification_status_certification_id",
        "certification",
        ["status", "certification_id"],
    )

    op.create_table(
        "attestation",
        sa.Column("attestation_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(32), nullable=False),
        sa.Column("envelope_json", sa.LargeBinary(), nullable=False),
        sa.Column("issuing_node_id", sa.String(64), nullable=False),
        sa.Column("paying_node_id", sa.String(64), nullable=False),
        sa.Column("subject_locator", sa.LargeBinary(), nullable=False),
        _id("beneficiary_id", nullable=True),
        _id("request_id", nullable=True),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        _when("observed_at"),
        _when("valid_until"),
        sa.Column("signing_key_id", sa.String(128), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        _when("stored_at"),
        sa.PrimaryKeyConstraint("attestation_id", name="pk_attestation"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_attestation_beneficiary_id_beneficiary",
        ),
        _one_of("attestation", "direction", ("issued", "received")),
    )
    op.create_index("ix_attestation_subject_locator", "attestation", ["subject_locator"])
    op.create_index("ix_attestation_request_id", "attestation", ["request_id"])
    op.create_index(
        "ix_attestation_direction_attestation_id", "attestation", ["direction", "attestation_id"]
    )

    op.create_table(
        "outbox_message",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        _id("subject_id"),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=False),
        _when("created_at"),
        _when("delivered_at", nullable=True),
        _when("retried_at", nullable=True),
        sa.PrimaryKeyConstraint("message_id", name="pk_outbox_message"),
        _one_of(
            "outbox_message",
            "kind",
            (
                "request_assistance",
                "update_assistance_status",
                "deliver_attestation",
                "publish_locators",
            ),
        ),
        _one_of("outbox_message", "state", ("pending", "delivered", "dead")),
    )
    op.create_index(
        "ix_outbox_message_state_next_attempt_at",
        "outbox_message",
        ["state", "next_attempt_at"],
    )

    op.create_table(
        "operator",
        sa.Column("operator_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("token_salt", sa.LargeBinary(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("disabled_at", nullable=True),
        sa.PrimaryKeyConstraint("operator_id", name="pk_operator"),
    )

    op.create_table(
        "audit_record",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        _id("subject_id"),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_record"),
    )


def downgrade() -> None:
    op.drop_table("audit_record")
    op.drop_table("operator")
    op.drop_index("ix_outbox_message_state_next_attempt_at", table_name="outbox_message")
    op.drop_table("outbox_message")
    op.drop_index("ix_attestation_direction_attestation_id", table_name="attestation")
    op.drop_index("ix_attestation_request_id", table_name="attestation")
    op.drop_index("ix_attestation_subject_locator", table_name="attestation")
    op.drop_table("attestation")
    op.drop_index("ix_certification_status_certification_id", table_name="certification")
    op.drop_index("ix_certification_request_id", table_name="certification")
    op.drop_table("certification")
    op.drop_index(
        "ix_assistance_request_direction_status_request_id", table_name="assistance_request"
    )
    op.drop_index("ix_assistance_request_beneficiary_id", table_name="assistance_request")
    op.drop_table("assistance_request")
    op.drop_table("beneficiary")
