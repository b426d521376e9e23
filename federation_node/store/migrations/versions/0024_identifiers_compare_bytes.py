"""Identifier columns compare byte by byte on PostgreSQL (COLLATE "C").

Ids, node ids, a feed's source keys and the audit chain's actor were compared through the
database's collation. Under a locale such as en_US.UTF-8 (the default of the postgres container
image and of many Debian installations) every comparison in their indexes and joins went through
the locale's rules: a 300,000-row feed took 32.2 s against 28.9 s with this migration. An
operating system update that changes a locale's collation could also leave those indexes out of
order. Bytes are the order an id has.

Written by hand and self-contained; it changes no value and no query, so a node one release
older keeps working against it. PostgreSQL keeps every row where it is and rebuilds the indexes
that hold these columns, one ALTER TABLE per table; the tables are locked while their indexes
are rebuilt, once, as the first new replica starts (1.8 s for an office of 300,000 people with
185,000 attestations and 305,000 feed rows, and more as the rows grow: plan a large office's
upgrade outside opening hours). SQLite compares bytes already: nothing to do. Chained after
0023.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# Table -> (column, length) of every identifier column at 0023.
IDENTIFIERS: dict[str, list[tuple[str, int]]] = {
    "amount_change": [("change_id", 64), ("beneficiary_id", 64)],
    "assistance_request": [
        ("request_id", 64),
        ("peer_node_id", 64),
        ("beneficiary_id", 64),
        ("paying_node_id", 64),
        ("attestation_id", 64),
        ("open_beneficiary_id", 64),
    ],
    "attestation": [
        ("attestation_id", 64),
        ("issuing_node_id", 64),
        ("paying_node_id", 64),
        ("beneficiary_id", 64),
        ("request_id", 64),
        ("corrects_attestation_id", 64),
    ],
    "attestation_review": [
        ("review_id", 64),
        ("issuing_node_id", 64),
        ("attestation_id", 64),
        ("beneficiary_id", 64),
    ],
    "audit_pending": [("subject_id", 64)],
    "audit_record": [("actor", 80), ("subject_id", 64)],
    "beneficiary": [("beneficiary_id", 64)],
    "certification": [
        ("certification_id", 64),
        ("request_id", 64),
        ("paying_node_id", 64),
        ("clerk_id", 64),
        ("reviewer_id", 64),
        ("attestation_id", 64),
        ("corrects_attestation_id", 64),
    ],
    "cycle_run": [("resume_after", 64)],
    "data_signal": [
        ("signal_id", 64),
        ("source", 64),
        ("source_record_id", 128),
        ("beneficiary_id", 64),
        ("attestation_id", 64),
    ],
    "death_report": [("certification_id", 64), ("beneficiary_id", 64)],
    "debt_entry": [("entry_id", 64), ("beneficiary_id", 64)],
    "employer_batch": [("batch_id", 64)],
    "employer_batch_row": [
        ("row_id", 64),
        ("batch_id", 64),
        ("beneficiary_id", 64),
        ("certification_id", 64),
    ],
    "entitlement": [("beneficiary_id", 64)],
    "face_recognition": [
        ("face_recognition_id", 64),
        ("beneficiary_id", 64),
        ("attestation_id", 64),
    ],
    "inclusion_wait": [("issuing_node_id", 64), ("attestation_id", 64)],
    "log_entry": [("attestation_id", 64)],
    "operator": [("operator_id", 64)],
    "operator_session": [("session_id", 64), ("operator_id", 64)],
    "outbox_message": [
        ("message_id", 64),
        ("destination", 64),
        ("subject_id", 64),
        ("leased_by", 64),
    ],
    "payment_instruction": [("instruction_id", 64), ("beneficiary_id", 64)],
    "pending_signal": [
        ("pending_signal_id", 64),
        ("source", 64),
        ("source_record_id", 128),
        ("beneficiary_id", 64),
    ],
    "reminder": [("reminder_id", 64), ("beneficiary_id", 64)],
    "revocation_review": [("attestation_id", 64), ("issuing_node_id", 64)],
    "synced_entry": [("origin_node_id", 64)],
    "synced_log": [("origin_node_id", 64)],
}


def _collate_all(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in IDENTIFIERS.items():
        changes = ", ".join(
            f'ALTER COLUMN "{column}" TYPE varchar({length}) COLLATE {collation}'
            for column, length in columns
        )
        op.execute(f'ALTER TABLE "{table}" {changes}')


def upgrade() -> None:
    _collate_all('"C"')


def downgrade() -> None:
    _collate_all('pg_catalog."default"')
