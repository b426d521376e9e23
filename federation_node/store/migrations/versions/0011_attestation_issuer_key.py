"""Attestations keyed by (attestation id, issuing node), and walk-ins several offices claim.

An attestation id is its issuer's: another member delivering an attestation under an id it saw
in someone else's log is stored beside the genuine one, never in its place. The primary key of
`attestation` becomes (attestation_id, issuing_node_id), and `revocation_review`, which refers
to it, follows. A node one release older keeps working against this schema: it reads and writes
the same columns, and a key that is wider only accepts more.

PostgreSQL changes the keys in place (the foreign key is dropped first: it depends on the old
primary key); SQLite cannot alter a key, so the batch operations rebuild the two tables, the
referring one without its foreign key while the referred one is rebuilt.

`certification.also_paying` (nullable, additive) names the other offices a walk-in goes to when
several published the person's locator.

Written by hand and self-contained. Chained after 0010 (attestation review).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_revocation_review_attestation_id_attestation"


def _rekey(key: list[str]) -> None:
    with op.batch_alter_table("revocation_review") as batch:
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")
    with op.batch_alter_table("attestation") as batch:
        batch.drop_constraint("pk_attestation", type_="primary")
        batch.create_primary_key("pk_attestation", key)
    with op.batch_alter_table("revocation_review") as batch:
        batch.drop_constraint("pk_revocation_review", type_="primary")
        batch.create_primary_key("pk_revocation_review", key)
        batch.create_foreign_key(FOREIGN_KEY, "attestation", key, key)


def upgrade() -> None:
    _rekey(["attestation_id", "issuing_node_id"])
    with op.batch_alter_table("certification") as batch:
        batch.add_column(sa.Column("also_paying", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certification") as batch:
        batch.drop_column("also_paying")
    # Fails on a database that holds one id from two issuers, as it should: that data does not
    # fit the older key.
    _rekey(["attestation_id"])
