"""The audit chain is searched by subject and by actor through indexes.

An auditor's page of the chain filtered by subject (what happened to this person) or by actor
(what this operator did) read every record, newest first: at 2,000,000 records, 300-550 ms and
about 130 ms a page on PostgreSQL. Both are indexed with the sequence, so a page and its count
read only the matching records.

Written by hand and self-contained; additive, so a node one release older keeps working against
it. Building the indexes holds writes to the chain for the time it takes, once, as the first new
replica starts. Chained after 0022.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_audit_record_subject_id_seq": ["subject_id", "seq"],
    "ix_audit_record_actor_seq": ["actor", "seq"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_record", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_record")
