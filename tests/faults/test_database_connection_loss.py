"""A node or registry whose PostgreSQL connections are cut (a server restart, a failover) keeps
serving.

Neither pool pings before every transaction (federation/database.py): a call that meets a
dropped connection fails once with UNAVAILABLE, which clients retry, and the pool is replaced,
so the calls after it succeed. Never INTERNAL, never a half-written change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from certfed.v1 import attestation_pb2, desk_pb2
from cli.launcher import LocalFederation
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING


@pytest.fixture
def federation(
    tmp_path: Path, postgres_url_factory: Callable[[], str]
) -> Iterator[LocalFederation]:
    local = LocalFederation(tmp_path, database_url_for=lambda _name: postgres_url_factory())
    with local:
        local.start_registry()
        local.add_node(PAYING)
        yield local


def _cut_connections(database_url: str) -> int:
    """Terminate every server process serving `database_url`'s database; how many there were."""
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (url.database,),
        ).fetchall()
    return len(rows)


def _person(sequence: int) -> attestation_pb2.IdentityBundle:
    return resident(resident_id("620102", date(1940, 1, 1), sequence), "Connection Loss")


@pytest.mark.postgres
@pytest.mark.parametrize("whose", ["node", "registry"])
def test_cut_database_connections_cost_at_most_one_retryable_failure(
    federation: LocalFederation, whose: str
) -> None:
    # Each registration asks the registry for the person's locator, which counts the
    # evaluation in the registry's database: the registry's pool is in every call too.
    database_url = (
        federation.nodes[PAYING.node_id].config.effective_database_url
        if whose == "node"
        else federation.registry_database_url
    )
    with federation.desk(PAYING.node_id, "clerk") as desk:
        desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(identity=_person(99), residence_region="370202")
        )
        assert _cut_connections(database_url) > 0
        outcomes: list[str] = []
        for sequence in range(4):
            try:
                desk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=_person(sequence), residence_region="370202"
                    ),
                )
                outcomes.append("ok")
            except grpc.RpcError as error:
                refused = error if isinstance(error, grpc.Call) else None
                outcomes.append(f"{refused.code().name}: {refused.details()}" if refused else "?")
        listed = desk.stub.ListBeneficiaries(
            desk_pb2.ListBeneficiariesRequest(page_size=100)
        ).beneficiaries
    refusals = [outcome for outcome in outcomes if outcome != "ok"]
    # The pool is replaced after the first call that meets a cut connection.
    assert len(refusals) <= 1, outcomes
    assert all(r.startswith("UNAVAILABLE:") and "try again" in r for r in refusals), refusals
    assert outcomes[-1] == "ok"
    # A refused registration wrote nothing; each accepted one is stored once.
    assert len(listed) == 1 + outcomes.count("ok")
