"""`certfed bench issue`: attestations built, signed, stored, queued for a remote paying office
and appended to the transparency log through the node's issuing path, in batches, against the
one-at-a-time path, both measured in the same run.

Starts PostgreSQL (the server DATABASE_URL names, or one from `pgserver`; SQLite with `sqlite`)
and a registry as a real process, and enrols two offices through it: Qingdao issues, Lanzhou
pays. Qingdao's roles are composed in this process on its own database with its own keys, as
its node process composes them (the node is not started, so nothing else writes to its log).

The one-at-a-time path is `Issuer.issue` with one attestation per transaction, the path a
reviewer's approval takes. The batch path is the bulk issuing path: `Issuer.sign_soon` hands
the next batch of findings to the worker processes, which build, serialise and sign the
attestations, while `Issuer.store_signed` stores, queues and logs the previous one in its own
transaction (COPY on PostgreSQL, one log-head lock per batch).
Every attestation is distinct (its own id, subject and evidence). Prints attestations/s of
both, their ratio, the rate over the first and the last tenth of the run (the cost per
attestation must not grow with the log) and peak memory; asserts nothing about time.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from certfed.v1 import common_pb2
from cli.bench.federation import ISSUER, RECEIVER
from cli.bench.kit import Headline, bench_workdir, own_peak_rss_mib, postgres_server
from cli.launcher import LocalFederation
from federation.logs import configure_logging
from federation.registry_client import RegistryClient
from federation_node.keystore import KeyPaths, load_keys
from federation_node.links.directory_client import DirectoryClient
from federation_node.locators import Locators
from federation_node.offices.issuing import Finding, PendingBatch
from federation_node.offices.node import Node, compose_node
from federation_node.rules.policy import load_policy
from federation_node.store.db import create_engine_for, migrate, session_scope

DEFAULT_BATCH = 5_000
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IssueBenchFigures(Headline):
    attestations: int
    batch_size: int
    database: str
    baseline_attestations: int
    baseline_seconds: float
    # The batch path's rate over the first and the last tenth of the attestations: equal when
    # the cost per attestation does not grow with the log.
    first_tenth_per_s: float
    last_tenth_per_s: float
    # This process's peak memory after the first tenth, and at the end: equal when memory
    # does not grow with N.
    peak_rss_first_tenth_mib: float
    log_size: int
    queued_for_paying_office: int

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("batch size", f"{self.batch_size:,}"),
            *self.headline_rows(
                "attestations",
                f"one at a time, {self.baseline_attestations:,} attestations",
            ),
            (
                "attestations/s, first / last tenth",
                f"{self.first_tenth_per_s:,.0f} / {self.last_tenth_per_s:,.0f}",
            ),
            (
                "peak RSS after the first tenth / at the end",
                f"{self.peak_rss_first_tenth_mib:,.0f} / {self.peak_rss_mib:,.0f} MiB",
            ),
            ("log size", f"{self.log_size:,}"),
            ("queued for the paying office", f"{self.queued_for_paying_office:,}"),
        ]


@contextmanager
def _issuing_office(folder: Path, sqlite: bool) -> Iterator[tuple[Node, str]]:
    """Qingdao's roles composed here on its fresh database; the database's description."""
    with ExitStack() as stack:
        postgres = (
            None
            if sqlite
            else stack.enter_context(
                postgres_server(folder / "pgdata", f"certfed_bench_issue_{os.getpid()}")
            )
        )
        local = stack.enter_context(
            LocalFederation(
                folder / "federation",
                database_url_for=postgres.create_database if postgres else None,
                log_level="warning",
            )
        )
        local.start_registry()
        handle = local.add_node(ISSUER, start=False)
        local.add_node(RECEIVER, start=False)
        paths = KeyPaths(handle.config.data_dir)
        keys = load_keys(handle.config, paths)
        registry = RegistryClient(
            handle.config.registry_endpoint, keys.tls.channel_credentials(), local.limits
        )
        stack.callback(registry.close)
        directory = DirectoryClient(
            registry.get_directory_update, keys.root_public_key, paths.directory_cache
        )
        directory.refresh()
        url = handle.config.effective_database_url
        migrate(url)
        engine = create_engine_for(url)
        stack.callback(engine.dispose)
        config = dataclasses.replace(handle.config, database_url=url)
        node = compose_node(
            config,
            keys,
            engine,
            directory,
            load_policy(config.policy_file),
            lambda _: [],
            locators=Locators(registry.evaluate_locators),
        )
        yield node, f"PostgreSQL ({postgres.source})" if postgres else "SQLite"


def _findings(count: int, now: datetime) -> Iterator[Finding]:
    """Distinct data matches about people Lanzhou pays, each with its own subject and evidence."""
    observed = now - timedelta(hours=1)
    for _ in range(count):
        yield Finding(
            subject_locator=secrets.token_bytes(32),
            paying_node_id=RECEIVER.node_id,
            paying_region=RECEIVER.region_codes[0],
            certifying_region=ISSUER.region_codes[0],
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=observed,
            evidence_digests=[secrets.token_bytes(32)],
            clerk_id="bench-feed",
            reviewer_id="policy:data-match",
        )


def _one_at_a_time(node: Node, count: int) -> float:
    """Seconds to issue `count` attestations, one per transaction."""
    issuer = node.issuer
    started = time.perf_counter()
    for finding in _findings(count, datetime.now(UTC)):
        now = datetime.now(UTC)
        with session_scope(node.context.engine) as session:
            issuer.issue(session, [(issuer.attestation(finding, now), None)], now=now)
    return time.perf_counter() - started


@dataclass
class _Run:
    seconds: float = 0.0
    first_tenth_per_s: float = 0.0
    last_tenth_per_s: float = 0.0
    rss_first_tenth_mib: float = 0.0


def _in_batches(node: Node, count: int, batch_size: int, progress: Progress | None) -> _Run:
    """Issue `count` attestations a batch per transaction, the next batch signed meanwhile."""
    issuer = node.issuer
    tenth = max(1, count // 10)
    run = _Run()

    def build(size: int) -> PendingBatch:
        now = datetime.now(UTC)
        return issuer.sign_soon([(finding, None) for finding in _findings(size, now)], now)

    sizes = iter([min(batch_size, count - done) for done in range(0, count, batch_size)])
    started = time.perf_counter()
    # (attestations done, seconds) at each batch's commit.
    marks: list[tuple[int, float]] = [(0, 0.0)]
    first = next(sizes, None)
    pending = build(first) if first else None
    while pending is not None:
        signed = pending.signed()
        following = next(sizes, None)
        pending = build(following) if following else None
        with session_scope(node.context.engine) as session:
            issuer.store_signed(session, signed, datetime.now(UTC))
        done = marks[-1][0] + len(signed.rows)
        marks.append((done, time.perf_counter() - started))
        if marks[-2][0] < tenth <= done:
            run.rss_first_tenth_mib = own_peak_rss_mib()
        if progress is not None:
            progress(done, count)
    run.seconds = marks[-1][1]
    # The batch boundaries nearest the first and the last tenth.
    early = next(mark for mark in marks if mark[0] >= tenth)
    late = max((mark for mark in marks if mark[0] <= count - tenth), default=marks[0])
    run.first_tenth_per_s = early[0] / early[1] if early[1] else 0.0
    span = run.seconds - late[1]
    run.last_tenth_per_s = (count - late[0]) / span if span else 0.0
    return run


def bench_issue(
    *,
    attestations: int,
    batch_size: int = DEFAULT_BATCH,
    baseline_attestations: int,
    sqlite: bool = False,
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> IssueBenchFigures:
    # This process is the issuing node here: its log lines go to stderr, and only warnings,
    # as for the other benchmarks' nodes (stdout carries the figures).
    configure_logging("bench", "warning")
    sample = min(attestations, baseline_attestations)
    with bench_workdir(workdir, "issue") as folder, _issuing_office(folder, sqlite) as office:
        node, database = office
        # The workers start once in a node's life: not part of either figure.
        node.issuer.warm_up()
        # As a node process does once it has started (federation_node/server.py): what exists
        # now lives as long as the process, and no full collection needs to scan it again.
        gc.freeze()
        baseline_seconds = _one_at_a_time(node, sample)
        run = _in_batches(node, attestations, batch_size, progress)
        with session_scope(node.context.engine) as session:
            log_size = session.execute(text("SELECT tree_size FROM log_head")).scalar_one()
            queued = session.execute(text("SELECT count(*) FROM outbox_message")).scalar_one()
    return IssueBenchFigures(
        **Headline.measure(attestations, run.seconds, sample, baseline_seconds),
        attestations=attestations,
        batch_size=batch_size,
        database=database,
        baseline_attestations=sample,
        baseline_seconds=round(baseline_seconds, 3),
        first_tenth_per_s=round(run.first_tenth_per_s, 1),
        last_tenth_per_s=round(run.last_tenth_per_s, 1),
        peak_rss_first_tenth_mib=round(run.rss_first_tenth_mib, 1),
        log_size=int(log_size),
        queued_for_paying_office=int(queued),
    )
