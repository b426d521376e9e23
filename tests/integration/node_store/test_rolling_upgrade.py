"""A rolling upgrade: while one replica already runs the next release, a replica of the previous
release starts on the database the next release migrated, and works on it (schema changes are
additive, so a release runs on the schema of the next one)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from federation_node.store import beneficiaries
from federation_node.store.db import migrate, session_scope
from tests.integration.node_store.conftest import register

# A revision this release does not know: what the next release's migration would leave.
NEXT_RELEASE = "9999_next_release"


def _versions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            row[0] for row in connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        ]


def test_a_database_migrated_by_a_newer_release_is_left_as_it_is(
    store_url: str, engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE alembic_version SET version_num = :v"), {"v": NEXT_RELEASE}
        )
    migrate(store_url)
    assert _versions(engine) == [NEXT_RELEASE]
    beneficiary = register(engine)
    with session_scope(engine) as session:
        found = beneficiaries.get(session, beneficiary.beneficiary_id)
    assert found.subject_locator == beneficiary.subject_locator
