"""`certfed bench sync`: bulk log sync between two nodes against the naive baseline.

`bench_sync` starts a registry and two nodes as processes over mutual TLS on 127.0.0.1 with a
PostgreSQL store (cli.bench.federation), issues N real signed attestations into the issuing
node's log through the log store's bulk path, waits for the registry witness to cosign a
checkpoint of all N, then runs `certfed sync` as the receiving node, in its own process, and
times it end to end: fetched, verified (checkpoint signatures, consistency proofs and the
recomputed root) and persisted. In the same run it times the naive way on a sample: one call per
attestation (GetEntries of one entry), one Ed25519 verification against the directory per
attestation, and one insert and commit per attestation.

Signing is setup, not part of any figure: every one of the N entries is a distinct attestation
with its own id and its own signature (the log refuses an attestation id twice), signed in
worker processes on all cores.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from certfed.v1 import attestation_pb2, common_pb2, federation_pb2, federation_pb2_grpc
from cli.bench.federation import ISSUER, RECEIVER, bench_federation
from cli.bench.kit import Headline, peak_rss_mb
from cli.launcher import LocalFederation, wait_until
from federation.directory import verify_directory
from federation.timestamps import to_timestamp
from federation.transport import node_tls_name, secure_channel
from federation_node.ids import new_id
from federation_node.keystore import KeyPaths, load_keys
from federation_node.offices.signing_pool import worker_pool
from federation_node.store import db, log_store
from federation_node.store.log_store import Head, NewEntry
from federation_node.store.models import SyncedEntry
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse
from signing.keys import SigningKey

SIGNING_CHUNK = 5_000
# Signed chunks waiting for the store, per signing process.
IN_FLIGHT_PER_WORKER = 2
Progress = Callable[[int, int], None]


# Issuing many real attestations.


def _signed_chunk(
    key_pem: bytes, issuer: str, paying: str, paying_region: str, count: int
) -> list[NewEntry]:
    key = SigningKey.from_pem(key_pem)
    now = datetime.now(UTC)
    observed = now - timedelta(hours=1)
    entries = []
    for _ in range(count):
        attestation_id = new_id()
        attestation = attestation_pb2.CertificationAttestation(
            attestation_id=attestation_id,
            subject_locator=secrets.token_bytes(32),
            paying_region=paying_region,
            paying_node_id=paying,
            issuing_node_id=issuer,
            certifying_region="370200",
            certifying_agency="Qingdao centre",
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(observed),
            valid_until=to_timestamp(observed + relativedelta(months=12)),
            evidence_digests=[secrets.token_bytes(32)],
            clerk_id="bench-clerk",
            reviewer_id="bench-reviewer",
            issued_at=to_timestamp(now),
        )
        envelope = dsse.sign(
            attestation.SerializeToString(deterministic=True), dsse.ATTESTATION_PAYLOAD_TYPE, key
        )
        entries.append(NewEntry(attestation_id, envelope.to_json(), paying_region))
    return entries


def issue_signed_attestations(
    engine: Engine,
    issuer: str,
    key: SigningKey,
    count: int,
    *,
    paying: str = RECEIVER.node_id,
    paying_region: str = RECEIVER.region_codes[0],
    progress: Progress | None = None,
) -> Head:
    """Sign `count` distinct attestations as `issuer` and append them to its log in bulk."""
    sizes = [min(SIGNING_CHUNK, count - done) for done in range(0, count, SIGNING_CHUNK)]
    pem = key.to_pem()
    head: Head | None = None
    done = 0
    workers = max(1, min(os.cpu_count() or 1, len(sizes)))
    # Spawned, never forked: the caller (a test, a benchmark) runs gRPC and other threads.
    with worker_pool(workers) as pool:
        # A bounded window of chunks in flight: signed chunks wait for the store in memory, so
        # submitting all of them at once (pool.map) held up to the whole run in memory when the
        # store was the slower side, and memory grew with N.
        pending: deque[Future[list[NewEntry]]] = deque()
        queued = iter(sizes)

        def submit_next() -> None:
            size = next(queued, None)
            if size is not None:
                pending.append(pool.submit(_signed_chunk, pem, issuer, paying, paying_region, size))

        for _ in range(IN_FLIGHT_PER_WORKER * workers):
            submit_next()
        while pending:
            chunk = pending.popleft().result()
            submit_next()
            with db.session_scope(engine) as session:
                head = log_store.append_many(session, chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, count)
    if head is None:
        with db.session_scope(engine) as session:
            return log_store.head(session)
    return head


# The bulk sync and the naive baseline.


@dataclass(frozen=True)
class SyncFigures(Headline):
    """The headline is the bulk sync against the naive baseline, with the peak memory of the
    syncing process (`certfed sync`, which did the work measured); the other fields say the
    same in the sync's own words, and more."""

    entries: int
    entries_per_s: float
    issuer_peak_rss_mb: float
    syncer_peak_rss_mb: float
    naive_entries: int
    naive_seconds: float
    naive_entries_per_s: float
    # Where the naive baseline's time goes: the call, the signature check, the insert + commit.
    naive_call_s: float
    naive_verify_s: float
    naive_store_s: float
    speedup: float
    signing_seconds: float
    database: str


def _naive_baseline(
    local: LocalFederation, origin: str, receiver: str, count: int
) -> tuple[float, float, float]:
    """Seconds spent calling, verifying and storing `count` entries one at a time."""
    config = local.nodes[receiver].config
    keys = load_keys(config, KeyPaths(config.data_dir))
    directory = verify_directory(
        local.fetch_directory(), keys.root_public_key, now=datetime.now(UTC)
    )
    engine = db.create_engine_for(config.effective_database_url)
    label = f"naive.{origin}"
    channel = secure_channel(
        f"127.0.0.1:{local.nodes[origin].federation_port}",
        node_tls_name(origin),
        keys.tls.channel_credentials(),
        max_message_bytes=local.limits.max_message_bytes,
    )
    stub = federation_pb2_grpc.FederationServiceStub(channel)
    try:
        spent = [0.0, 0.0, 0.0]
        for index in range(count):
            started = time.perf_counter()
            response = next(
                iter(
                    stub.GetEntries(
                        federation_pb2.GetEntriesRequest(start=index, end=index + 1), timeout=10
                    )
                )
            )
            entry = response.entries[0]
            fetched = time.perf_counter()
            verify_attestation_envelope(
                dsse.Envelope.from_json(entry.envelope_json),
                directory,
                now=datetime.now(UTC),
                max_clock_skew=timedelta(minutes=5),
            )
            verified = time.perf_counter()
            with db.session_scope(engine) as session:
                session.add(
                    SyncedEntry(
                        origin_node_id=label,
                        leaf_index=index,
                        envelope_json=entry.envelope_json,
                        paying_region=entry.paying_region,
                    )
                )
            stored = time.perf_counter()
            spent[0] += fetched - started
            spent[1] += verified - fetched
            spent[2] += stored - verified
        with db.session_scope(engine) as session:
            session.execute(delete(SyncedEntry).where(SyncedEntry.origin_node_id == label))  # type: ignore[arg-type]
        return spent[0], spent[1], spent[2]
    finally:
        channel.close()
        engine.dispose()


def _run_sync_process(config_path: Path, origin: str) -> tuple[dict[str, Any], float]:
    """Run `certfed sync --json` as its own process; its JSON result and peak RSS in MiB."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "sync",
            "--from",
            origin,
            "--config",
            str(config_path),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    output = process.stdout.read()
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"certfed sync exited with {process.returncode}: {(output + errors).decode()[-2000:]}"
        )
    # ru_maxrss is in KiB on Linux.
    return json.loads(output), usage.ru_maxrss / 1024


def _await_cosigned(local: LocalFederation, size: int) -> None:
    issuer = local.nodes[ISSUER.node_id]
    engine = db.create_engine_for(issuer.config.effective_database_url)
    try:

        def cosigned() -> bool:
            with db.session_scope(engine) as session:
                latest = log_store.latest_checkpoint(session)
            return latest is not None and latest.tree_size >= size

        wait_until(cosigned, 120, f"a cosigned checkpoint of {size} entries")
    finally:
        engine.dispose()


def bench_sync(
    entries: int,
    *,
    naive_sample: int,
    workdir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SyncFigures:
    with bench_federation(workdir) as (local, postgres):
        issuer = local.nodes[ISSUER.node_id]
        engine = db.create_engine_for(issuer.config.effective_database_url)
        signing_started = time.perf_counter()
        try:
            key = SigningKey.load(KeyPaths(issuer.config.data_dir).signing_key)
            issue_signed_attestations(
                engine,
                ISSUER.node_id,
                key,
                entries,
                progress=(lambda d, t: progress("issue", d, t)) if progress else None,
            )
        finally:
            engine.dispose()
        signing_seconds = time.perf_counter() - signing_started
        _await_cosigned(local, entries)
        sample = min(entries, naive_sample)
        naive_call_s, naive_verify_s, naive_store_s = _naive_baseline(
            local, ISSUER.node_id, RECEIVER.node_id, sample
        )
        naive_seconds = naive_call_s + naive_verify_s + naive_store_s
        result, syncer_rss = _run_sync_process(
            local.nodes[RECEIVER.node_id].config_path, ISSUER.node_id
        )
        issuer_process = issuer.process
        assert issuer_process is not None
        issuer_rss = peak_rss_mb(issuer_process.pid)
    seconds = float(result["seconds"])
    synced = int(result["entries"])
    rate = synced / seconds if seconds else 0.0
    naive_rate = sample / naive_seconds if naive_seconds else 0.0
    headline = Headline.measure(synced, seconds, sample, naive_seconds)
    return SyncFigures(
        **{**headline, "peak_rss_mib": round(syncer_rss, 1)},
        entries=synced,
        entries_per_s=round(rate, 1),
        issuer_peak_rss_mb=round(issuer_rss, 1),
        syncer_peak_rss_mb=round(syncer_rss, 1),
        naive_entries=sample,
        naive_seconds=round(naive_seconds, 3),
        naive_entries_per_s=round(naive_rate, 1),
        naive_call_s=round(naive_call_s, 3),
        naive_verify_s=round(naive_verify_s, 3),
        naive_store_s=round(naive_store_s, 3),
        speedup=round(rate / naive_rate, 1) if naive_rate else 0.0,
        signing_seconds=round(signing_seconds, 1),
        database=postgres.source,
    )
