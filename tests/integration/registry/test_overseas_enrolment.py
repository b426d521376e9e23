"""An overseas post (consulate, embassy) enrols with the countries it serves and is published in
the directory; codes it cannot serve, and a country under another role, are refused at enrolment
naming the code, and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from certfed.v1 import common_pb2
from federation.directory import verify_directory
from federation.errors import InvalidInputError
from federation.roles import role_values
from registry.db import create_engine_for
from signing.keys import VerifyKey

if TYPE_CHECKING:
    from conftest import EnrolledFactory, NodeFactory, RunningRegistry


def _root_key(registry: RunningRegistry) -> VerifyKey:
    return VerifyKey.from_raw(bytes.fromhex(registry.config.paths.root_public_key.read_text()))


COUNTS = {
    "node": "SELECT count(*) FROM node",
    "node_key": "SELECT count(*) FROM node_key",
    "audit_event": "SELECT count(*) FROM audit_event",
}


def _row_counts(registry: RunningRegistry) -> dict[str, int]:
    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with engine.connect() as connection:
            return {
                name: int(connection.execute(sa.text(query)).scalar_one())
                for name, query in COUNTS.items()
            }
    finally:
        engine.dispose()


def test_an_overseas_post_is_enrolled_and_published_with_its_countries(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    enrolled_node("ottawa-embassy", region_codes=("CA", "ZW"), roles=("overseas_post",))
    with registry.anonymous() as anonymous:
        envelope = anonymous.get_directory(0)
    assert envelope is not None
    directory = verify_directory(envelope, _root_key(registry), now=datetime.now(UTC))
    post = directory.active_node("ottawa-embassy")
    assert list(post.region_codes) == ["CA", "ZW"]
    assert list(post.roles) == [common_pb2.ROLE_OVERSEAS_POST]
    assert directory.route("ZW").node_id == "ottawa-embassy"


@pytest.mark.parametrize(
    ("codes", "roles", "field", "says"),
    [
        (["CA", "MO"], ["overseas_post"], "region_codes[1]", "special region"),
        (["CN"], ["overseas_post"], "region_codes[0]", "mainland"),
        (["440600"], ["overseas_post"], "region_codes[0]", "not an ISO 3166-1"),
        (["XQ"], ["overseas_post"], "region_codes[0]", "not an ISO 3166-1"),
        (["370200", "CA"], ["residence_agency"], "region_codes[1]", "overseas_post"),
    ],
)
def test_a_code_the_role_cannot_serve_is_refused_and_nothing_is_written(
    registry: RunningRegistry,
    make_node: NodeFactory,
    codes: list[str],
    roles: list[str],
    field: str,
    says: str,
) -> None:
    node = make_node("ottawa-embassy")
    before = _row_counts(registry)
    with registry.anonymous() as anonymous, pytest.raises(InvalidInputError) as refused:
        anonymous.enrol(node.application(region_codes=codes, roles=role_values(roles)))
    assert refused.value.field.endswith(field)
    assert says in str(refused.value)
    assert _row_counts(registry) == before
