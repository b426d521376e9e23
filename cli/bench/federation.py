"""The federation `bench sync` and `bench assist` run on: a registry and two offices as real
processes, every one on its own fresh PostgreSQL database. Qingdao (residence agency and paying
office) issues attestations and certifies; Lanzhou (paying office) receives and asks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.bench.kit import PostgresServer, postgres_server
from cli.launcher import LocalFederation, NodeSpec
from federation.limits import Limits

ISSUER = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office"))
RECEIVER = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))


def bench_settings() -> dict[str, object]:
    """Node settings that lift the per-peer and per-operator rate limits.

    The benchmarks measure the exchange, not the limiter, which would cap the naive baseline's
    one call per attestation.
    """
    fields = Limits.__dataclass_fields__
    limits = {name: 0 for name in ("peer_calls_per_s", "operator_calls_per_s") if name in fields}
    return {"limits": limits} if limits else {}


def bench_registry_settings() -> dict[str, str]:
    """Registry settings for a benchmark that registers up to millions of people in one day.

    The registry's daily locator quota (a million evaluations per node by default) bounds a
    member trying identity numbers; a benchmark registering a million people would spend all of
    it, and the node keeps `locator_reserve` of it back from bulk imports for its federation
    work, so its import would stop short. The benchmarks measure the import, not the quota.
    """
    return {"locator_daily_quota": str(100_000_000)}


@contextmanager
def bench_federation(workdir: Path | None) -> Iterator[tuple[LocalFederation, PostgresServer]]:
    """The registry, ISSUER and RECEIVER started, in `workdir` or a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="certfed-bench-") as scratch:
        root = workdir or Path(scratch)
        with postgres_server(root / "pgdata", f"certfed_bench_{os.getpid()}") as postgres:
            local = LocalFederation(root / "federation", database_url_for=postgres.create_database)
            with local:
                local.registry_settings.update(bench_registry_settings())
                local.start_registry()
                for spec in (ISSUER, RECEIVER):
                    local.add_node(spec, settings=bench_settings())
                yield local, postgres
