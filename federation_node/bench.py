"""Benchmarks on real processes: bulk log sync against the naive baseline; assistance trips.

`bench_sync` starts a registry and two nodes as processes over mutual TLS on 127.0.0.1 with a
PostgreSQL store (the server `DATABASE_URL` names, or one started from the `pgserver` package),
issues N real signed attestations into the issuing node's log through the log store's bulk path,
waits for the registry witness to cosign a checkpoint of all N, then runs `certfed sync` as the
receiving node, in its own process, and times it end to end: fetched, verified (checkpoint
signatures, consistency proofs and the recomputed root) and persisted. In the same run it times
the naive way on a sample: one call per attestation (GetEntries of one entry), one Ed25519
verification against the directory per attestation, and one insert and commit per attestation.

Signing is setup, not part of any figure: every one of the N entries is a distinct attestation
with its own id and its own signature (the log refuses an attestation id twice), signed in
worker processes on all cores.

`bench_assist` drives assistance requests through two nodes' desks with C clients at once and
reports p50/p95/p99 latency and throughput of the full round trip.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from dateutil.relativedelta import relativedelta
from psycopg import sql
from sqlalchemy import delete
from sqlalchemy.engine import Engine, make_url

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2
from federation_node import db, log_store
from federation_node.attestation import verify_attestation_envelope
from federation_node.ids import new_id
from federation_node.keystore import KeyPaths
from federation_node.launcher import LocalFederation, NodeSpec, wait_until
from federation_node.log_store import Head, NewEntry
from federation_node.models import SyncedEntry
from registry.timestamps import to_timestamp
from signing import dsse
from signing.keys import SigningKey

ISSUER = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office"))
RECEIVER = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
SIGNING_CHUNK = 5_000
# The assist benchmark sees progress by polling the desks: from poll_s, growing by this factor up
# to MAX_POLL_S, so 50 waiting clients do not load the nodes they measure. A latency figure may
# therefore overshoot the true one by up to about a third of itself (at most MAX_POLL_S).
POLL_GROWTH = 1.3
MAX_POLL_S = 0.05
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
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = pool.map(
            _signed_chunk,
            [pem] * len(sizes),
            [issuer] * len(sizes),
            [paying] * len(sizes),
            [paying_region] * len(sizes),
            sizes,
        )
        for chunk in chunks:
            with db.session_scope(engine) as session:
                head = log_store.append_many(session, chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, count)
    if head is None:
        with db.session_scope(engine) as session:
            return log_store.head(session)
    return head


# PostgreSQL for the benchmark.


@contextmanager
def postgres_server(workdir: Path) -> Iterator[Callable[[str], str]]:
    """A function giving a fresh database URL per name, on DATABASE_URL's server or pgserver's."""
    given = os.environ.get("DATABASE_URL")
    server: Any = None
    if given:
        base = make_url(given).set(drivername="postgresql+psycopg")
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver

        server = pgserver.get_server(  # type: ignore[attr-defined]
            workdir / "pgdata", cleanup_mode="stop"
        )
        raw = make_url(server.get_uri())
        base = raw.set(drivername="postgresql+psycopg")
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    prefix = f"certfed_bench_{os.getpid()}"
    created: list[str] = []

    def database_for(name: str) -> str:
        database = f"{prefix}_{name.replace('-', '_')}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        created.append(database)
        return base.set(database=database).render_as_string(hide_password=False)

    try:
        yield database_for
    finally:
        try:
            with psycopg.connect(admin, autocommit=True) as connection:
                for database in created:
                    connection.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(database)
                        )
                    )
        finally:
            if server is not None:
                server.cleanup()


# Measurements.


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a running process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass(frozen=True)
class SyncFigures:
    entries: int
    seconds: float
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
    from certfed.v1 import federation_pb2_grpc
    from federation_node.keystore import load_keys
    from registry.directory import verify_directory
    from registry.transport import node_tls_name, secure_channel

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
            "federation_node.cli",
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


def bench_sync(
    entries: int,
    *,
    naive_sample: int,
    workdir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SyncFigures:
    with tempfile.TemporaryDirectory(prefix="certfed-bench-") as scratch:
        root = workdir or Path(scratch)
        with postgres_server(root) as database_for:
            local = LocalFederation(root / "federation", database_url_for=database_for)
            with local:
                local.start_registry()
                # The benchmark measures the log exchange, not the per-peer rate limiter, which
                # would cap the naive baseline's one call per attestation.
                for spec in (ISSUER, RECEIVER):
                    local.add_node(spec, settings=_bench_settings())
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
        return SyncFigures(
            entries=synced,
            seconds=round(seconds, 3),
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
            database="DATABASE_URL" if os.environ.get("DATABASE_URL") else "pgserver",
        )


def _bench_settings() -> dict[str, object]:
    from registry.limits import Limits

    fields = Limits.__dataclass_fields__
    limits = {name: 0 for name in ("peer_calls_per_s", "operator_calls_per_s") if name in fields}
    return {"limits": limits} if limits else {}


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


def figures_json(figures: object) -> str:
    return json.dumps(asdict(figures), indent=2)  # type: ignore[call-overload]


def own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Assistance round trips.


@dataclass(frozen=True)
class AssistFigures:
    concurrency: int
    requests: int
    completed: int
    seconds: float
    round_trips_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    database: str


def _person(number: int) -> attestation_pb2.IdentityBundle:
    from signing.identity import resident_id_check_character

    born = datetime(1930, 1, 1) + timedelta(days=number // 1000)
    prefix = f"620102{born:%Y%m%d}{number % 1000:03d}"
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=prefix + resident_id_check_character(prefix),
        full_name="Bench Person",
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    position = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[position]


class _Desks:
    """One worker's desk clients: the paying clerk, and the residence clerk and reviewer."""

    def __init__(self, local: LocalFederation) -> None:
        self.paying_clerk = local.desk(RECEIVER.node_id, "clerk")
        self.residence_clerk = local.desk(ISSUER.node_id, "clerk")
        self.reviewer = local.desk(ISSUER.node_id, "reviewer")

    def close(self) -> None:
        for client in (self.paying_clerk, self.residence_clerk, self.reviewer):
            client.close()


def _round_trip(desks: _Desks, beneficiary_id: str, poll_s: float) -> float:
    """One assistance request, start to applied; returns its latency in seconds."""
    deadline = to_timestamp(datetime.now(UTC) + timedelta(days=20))
    started = time.perf_counter()
    request_id = desks.paying_clerk.call(
        "RequestCertification",
        desk_pb2.RequestCertificationRequest(beneficiary_id=beneficiary_id, deadline=deadline),
    ).request.request_id
    lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    pause = poll_s
    while True:
        try:
            desks.residence_clerk.call("GetAssistanceRequest", lookup)
            break
        except grpc.RpcError as error:
            # NOT_FOUND until the paying office's outbox has delivered the request.
            if not isinstance(error, grpc.Call) or error.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            time.sleep(pause)
            pause = min(pause * POLL_GROWTH, MAX_POLL_S)
    certification_id = desks.residence_clerk.call(
        "RecordCertification",
        desk_pb2.RecordCertificationRequest(
            request_id=request_id,
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(datetime.now(UTC)),
            evidence_digests=[secrets.token_bytes(32)],
        ),
    ).certification.certification_id
    desks.reviewer.call(
        "ApproveCertification",
        desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
    )
    completed = common_pb2.ASSISTANCE_STATUS_COMPLETED
    # Applied at the paying office: the attestation was delivered, verified against the
    # directory and stored, and the request it answers is completed there.
    pause = poll_s
    while desks.paying_clerk.call("GetAssistanceRequest", lookup).request.status != completed:
        time.sleep(pause)
        pause = min(pause * POLL_GROWTH, MAX_POLL_S)
    return time.perf_counter() - started


def _register(local: LocalFederation, count: int, concurrency: int) -> list[str]:
    def register(numbers: range) -> list[str]:
        with local.desk(RECEIVER.node_id, "clerk") as desk:
            return [
                desk.call(
                    "RegisterBeneficiary",
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=_person(number), residence_region="370202"
                    ),
                ).beneficiary.beneficiary_id
                for number in numbers
            ]

    workers = max(1, min(concurrency, 8))
    slices = [range(start, count, workers) for start in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [bid for chunk in pool.map(register, slices) for bid in chunk]


def bench_assist(
    concurrency: int,
    requests: int,
    *,
    poll_s: float = 0.002,
    workdir: Path | None = None,
) -> AssistFigures:
    """`requests` round trips, `concurrency` at a time; latency percentiles and throughput."""
    with tempfile.TemporaryDirectory(prefix="certfed-bench-") as scratch:
        root = workdir or Path(scratch)
        with postgres_server(root) as database_for:
            local = LocalFederation(root / "federation", database_url_for=database_for)
            with local:
                local.start_registry()
                for spec in (ISSUER, RECEIVER):
                    local.add_node(spec, settings=_bench_settings())
                beneficiaries: queue.Queue[str] = queue.Queue()
                for beneficiary_id in _register(local, requests, concurrency):
                    beneficiaries.put(beneficiary_id)
                latencies: list[float] = []
                failures: list[BaseException] = []
                lock = threading.Lock()

                def worker() -> None:
                    desks = _Desks(local)
                    try:
                        while True:
                            try:
                                beneficiary_id = beneficiaries.get_nowait()
                            except queue.Empty:
                                return
                            try:
                                latency = _round_trip(desks, beneficiary_id, poll_s)
                            except Exception as error:
                                with lock:
                                    failures.append(error)
                                continue
                            with lock:
                                latencies.append(latency)
                    finally:
                        desks.close()

                threads = [threading.Thread(target=worker) for _ in range(concurrency)]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {requests} round trips failed, first: {failures[0]!r}"
        )
    ordered = sorted(latencies)
    return AssistFigures(
        concurrency=concurrency,
        requests=requests,
        completed=len(ordered),
        seconds=round(seconds, 3),
        round_trips_per_s=round(len(ordered) / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 1),
        p95_ms=round(_percentile(ordered, 0.95) * 1000, 1),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 1),
        max_ms=round(ordered[-1] * 1000, 1) if ordered else 0.0,
        database="DATABASE_URL" if os.environ.get("DATABASE_URL") else "pgserver",
    )
