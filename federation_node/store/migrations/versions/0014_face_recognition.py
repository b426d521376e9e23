"""Face-recognition results from a provider's app or kiosk, and employers' batch lists.

`face_recognition` keeps each result once per (provider, provider_reference): the ones that
certified a person, and the ones below the policy's thresholds that list the person for another
channel (offices/face_recognition.py). `employer_batch` and `employer_batch_row` hold a unit's
batch list of retirees, pending until a reviewer approves or rejects it as a whole
(offices/employer_batch.py).

Written by hand and self-contained; additive (new tables), so a node one release older keeps
working against it. Chained after 0020.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_recognition",
        sa.Column("face_recognition_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("provider_reference", sa.String(128), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("liveness_score", sa.Float(), nullable=False),
        sa.Column("match_score", sa.Float(), nullable=False),
        sa.Column("helper_relation", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=True),
        sa.Column("valid_until_then", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("face_recognition_id", name="pk_face_recognition"),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_face_recognition_beneficiary_id_beneficiary",
        ),
        sa.UniqueConstraint(
            "provider", "provider_reference", name="uq_face_recognition_provider_provider_reference"
        ),
        sa.CheckConstraint(
            "outcome IN ('certified', 'below_threshold', 'ignored')",
            name="ck_face_recognition_outcome",
        ),
    )
    op.create_index("ix_face_recognition_beneficiary_id", "face_recognition", ["beneficiary_id"])
    op.create_table(
        "employer_batch",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("uploaded_by", sa.String(80), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("issued", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_employer_batch"),
        sa.CheckConstraint(
            "state IN ('pending', 'approved', 'rejected')", name="ck_employer_batch_state"
        ),
    )
    op.create_table(
        "employer_batch_row",
        sa.Column("row_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("beneficiary_id", sa.String(64), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certification_id", sa.String(64), nullable=True),
        sa.Column("skipped_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("row_id", name="pk_employer_batch_row"),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["employer_batch.batch_id"],
            name="fk_employer_batch_row_batch_id_employer_batch",
        ),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.beneficiary_id"],
            name="fk_employer_batch_row_beneficiary_id_beneficiary",
        ),
    )
    op.create_index("ix_employer_batch_row_batch_id", "employer_batch_row", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_employer_batch_row_batch_id", table_name="employer_batch_row")
    op.drop_table("employer_batch_row")
    op.drop_table("employer_batch")
    op.drop_index("ix_face_recognition_beneficiary_id", table_name="face_recognition")
    op.drop_table("face_recognition")
