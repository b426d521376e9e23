"""Attestations are found by person through an index, and NULLs no longer fill two others.

Each attestation a paying office receives, and each certification a clerk enters, asks for the
person's last applied certification and, for an end of entitlement, who reported it: both by
`beneficiary_id`, which had no index, so each read every attestation the office holds (about 70
ms at 600,000 attestations, the data matches of a city's year). It is indexed now, over the rows
that name a beneficiary: an agency's attestations for other offices name none.

Two indexes held mostly NULLs: `request_id`, which no query reads (a request's attestation is
found through its certification), is dropped; `corrects_attestation_id`, set only on corrections,
now indexes only the rows that set it. A bulk issue of data matches wrote an entry into each for
every attestation.

Written by hand and self-contained. A node one release older keeps working against this schema:
it reads neither dropped entry. Building the new index locks the table against writes for the
time it takes (seconds per million attestations), as every upgrade that adds an index does.
Chained after 0020.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BY_PERSON = "ix_attestation_beneficiary_id"
BY_REQUEST = "ix_attestation_request_id"
BY_CORRECTED = "ix_attestation_corrects_attestation_id"


def _create(name: str, column: str, *, only_set: bool) -> None:
    predicate = sa.text(f"{column} IS NOT NULL") if only_set else None
    op.create_index(
        name,
        "attestation",
        [column],
        postgresql_where=predicate,
        sqlite_where=predicate,
    )


def upgrade() -> None:
    _create(BY_PERSON, "beneficiary_id", only_set=True)
    op.drop_index(BY_REQUEST, table_name="attestation")
    op.drop_index(BY_CORRECTED, table_name="attestation")
    _create(BY_CORRECTED, "corrects_attestation_id", only_set=True)


def downgrade() -> None:
    op.drop_index(BY_CORRECTED, table_name="attestation")
    _create(BY_CORRECTED, "corrects_attestation_id", only_set=False)
    _create(BY_REQUEST, "request_id", only_set=False)
    op.drop_index(BY_PERSON, table_name="attestation")
