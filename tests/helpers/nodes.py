"""The offices the integration, fault and security tests start, one definition each.

A test that needs an office in a role of its own still writes its NodeSpec; these are the ones
several files share. Import under the role a test gives them (`LANZHOU as PAYING`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.launcher import LocalFederation, NodeSpec

LANZHOU = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
# Qingdao both certifies (residence agency) and pays; QINGDAO_AGENCY only certifies.
QINGDAO = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office"))
QINGDAO_AGENCY = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency",))
FOSHAN = NodeSpec("foshan", "Foshan office", ("440600",), ("paying_office",))
DATONG = NodeSpec("datong", "Datong centre", ("140200",), ("residence_agency",))
MACAU = NodeSpec("macau-desk", "Macau SSF desk", ("MO",), ("partner_liaison",))


def database_url_for(request: pytest.FixtureRequest) -> Callable[[str], str] | None:
    """For a fixture parametrised over "sqlite" and "postgres": None (each node its own SQLite
    file), or a fresh database on the test session's PostgreSQL server for each node."""
    if request.param != "postgres":
        return None
    factory: Callable[[], str] = request.getfixturevalue("postgres_url_factory")
    return lambda _node_id: factory()


@contextmanager
def offices_with_policy(
    workdir: Path,
    urls: Callable[[str], str] | None,
    paying: NodeSpec,
    policy: str,
    *others: NodeSpec,
) -> Iterator[LocalFederation]:
    """A registry, `paying` started with `policy` as its policy.toml, then `others`.

    The server's own daily cycle is off: these tests run the cycle on the days they choose.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(workdir, database_url_for=urls) as local:
            local.start_registry()
            office = local.add_node(paying, start=False)
            (office.config.data_dir / "policy.toml").write_text(policy, encoding="utf-8")
            local.start_node(paying.node_id)
            for other in others:
                local.add_node(other)
            yield local
