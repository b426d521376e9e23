"""Attestation deliveries queued without a copy of the attestation: outbox kind
`deliver_logged_attestation`.

Such a delivery's payload is empty: the dispatcher builds the request from the envelope as the
log holds it when it goes (links/carried_proofs.py). It is a kind of its own, not an empty
`deliver_attestation`, so that a replica of the release before, still running during a rolling
upgrade, never sends it empty: that replica cannot read the new kind, its dispatcher passes fail
until it is replaced, and a replica of this release delivers the message. `deliver_attestation`
messages, which carry their request, are still delivered as queued.

Written by hand and self-contained; the check only accepts more, so a node one release older
keeps working against it. Chained after 0018.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

CHECK = "ck_outbox_message_kind"
KINDS = (
    "request_assistance",
    "update_assistance_status",
    "deliver_attestation",
    "publish_locators",
)


def _kinds(values: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(CHECK, type_="check")
        batch.create_check_constraint(CHECK, _kinds((*KINDS, "deliver_logged_attestation")))


def downgrade() -> None:
    op.execute("DELETE FROM outbox_message WHERE kind = 'deliver_logged_attestation'")
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(CHECK, type_="check")
        batch.create_check_constraint(CHECK, _kinds(KINDS))
