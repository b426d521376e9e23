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
reports p50/p95/p99 latency and throughput of the full round trip, the CPU time every process
spent per round trip, and, in the same run and at the same concurrency, the floor: the cheapest
authenticated desk call's rate and CPU. The ratio between the two says how many such calls one
round trip costs; the cores divided by the CPU per round trip say what throughput the machine
allows at that cost.
"""

from __future__ import annotations

import itertools
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from dateutil.relativedelta import relativedelta
from psycopg import sql
from sqlalchemy import delete
from sqlalchemy.engine import Engine, make_url

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp
from federation_node.ids import new_id
from federation_node.keystore import KeyPaths
from federation_node.store import db, log_store
from federation_node.store.log_store import Head, NewEntry
from federation_node.store.models import SyncedEntry
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse
from signing.keys import SigningKey

ISSUER = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office"))
RECEIVER = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
SIGNING_CHUNK = 5_000
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


@dataclass(frozen=True)
class _Postgres:
    """The benchmark's PostgreSQL: fresh databases by name, and the server's processes."""

    database_for: Callable[[str], str]
    data_dir: Path | None

    def postmaster_pid(self) -> int | None:
        """The server's main process when the benchmark started it (pgserver), else None."""
        if self.data_dir is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None


@contextmanager
def postgres_server(workdir: Path) -> Iterator[_Postgres]:
    """Fresh databases per name, on DATABASE_URL's server or one pgserver starts in workdir."""
    given = os.environ.get("DATABASE_URL")
    server: Any = None
    data_dir: Path | None = None
    if given:
        base = make_url(given).set(drivername="postgresql+psycopg")
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver

        data_dir = workdir / "pgdata"
        server = pgserver.get_server(  # type: ignore[attr-defined]
            data_dir, cleanup_mode="stop"
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
        yield _Postgres(database_for, data_dir)
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
    from federation.directory import verify_directory
    from federation.transport import node_tls_name, secure_channel
    from federation_node.keystore import load_keys

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


def bench_sync(
    entries: int,
    *,
    naive_sample: int,
    workdir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SyncFigures:
    with tempfile.TemporaryDirectory(prefix="certfed-bench-") as scratch:
        root = workdir or Path(scratch)
        with postgres_server(root) as postgres:
            local = LocalFederation(root / "federation", database_url_for=postgres.database_for)
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
    from federation.limits import Limits

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
    # The median of each phase: the paying clerk's request call, until it is in the residence
    # inbox, the clerk's record call, the reviewer's approval call, until applied at the paying
    # office (delivered, verified, stored, request completed) and confirmed.
    phase_p50_ms: dict[str, float]
    # CPU time of every process of the federation (registry, both nodes, PostgreSQL when the
    # benchmark started it, this driving process) per completed round trip.
    cpu_ms_per_round_trip: float
    cpu_ms_by_process: dict[str, float]
    # The whole machine's busy fraction over all cores meanwhile (1.0: every core busy).
    machine_busy: float
    # Desk calls the driving clerks made per round trip, their watchers' listings included.
    desk_calls_per_round_trip: float
    # The floor, measured in the same run at the same concurrency: the cheapest authenticated
    # desk call (WhoAmI), its rate and CPU across the processes.
    floor_calls_per_s: float
    floor_cpu_ms_per_call: float
    # What this machine's cores allow at the measured CPU cost: cores * 1000 / cpu ms.
    cpu_bound_round_trips_per_s: float
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


class _Watcher(threading.Thread):
    """One clerk's screen, refreshed every `interval_s` while someone waits on it.

    The benchmark's workers wait for their request to arrive in the residence agency's inbox and
    for it to leave the paying office's list of open requests. One listing per interval serves
    every waiting worker, as a clerk's screen does, instead of one lookup per worker. A request
    counts as gone only from a listing started after the worker began to wait, so a listing in
    flight when the request was made cannot report it gone. A latency figure may overshoot the
    true one by up to two intervals (one per wait).
    """

    def __init__(
        self,
        desk: DeskClient,
        listings: Sequence[desk_pb2.ListAssistanceRequestsRequest],
        interval_s: float,
    ) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self._desk = desk
        self._listings = listings
        self._interval_s = interval_s
        self._lock = threading.Condition()
        # request id -> (waiting for presence?, monotonic time the wait began, event)
        self._waiting: dict[str, tuple[bool, float, threading.Event]] = {}
        self._stopping = False
        self.error: BaseException | None = None

    def wait(self, request_id: str, *, present: bool, timeout_s: float) -> None:
        """Until `request_id` is listed (present) or no longer listed (not present)."""
        event = threading.Event()
        with self._lock:
            self._waiting[request_id] = (present, time.monotonic(), event)
            self._lock.notify()
        if not event.wait(timeout_s):
            with self._lock:
                self._waiting.pop(request_id, None)
            state = "listed" if present else "off the list"
            raise TimeoutError(f"request {request_id} not {state} within {timeout_s} s")
        if self.error is not None:
            raise RuntimeError("the benchmark's desk watcher failed") from self.error

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self.join(timeout=10)

    def _listed(self) -> set[str]:
        listed: set[str] = set()
        for listing in self._listings:
            request = desk_pb2.ListAssistanceRequestsRequest()
            request.CopyFrom(listing)
            while True:
                response = self._desk.stub.ListAssistanceRequests(request)
                listed.update(summary.request_id for summary in response.requests)
                if not response.next_page_token:
                    break
                request.page_token = response.next_page_token
        return listed

    def run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._waiting and not self._stopping:
                        self._lock.wait()
                    if self._stopping:
                        return
                started = time.monotonic()
                listed = self._listed()
                with self._lock:
                    for request_id, (present, since, event) in list(self._waiting.items()):
                        if present:
                            done = request_id in listed
                        else:
                            done = since < started and request_id not in listed
                        if done:
                            event.set()
                            del self._waiting[request_id]
                time.sleep(self._interval_s)
        except BaseException as error:
            self.error = error
            with self._lock:
                for _, _, event in self._waiting.values():
                    event.set()
                self._waiting.clear()


# Requests the paying office still waits on; the benchmark neither schedules nor declines.
_OPEN = (common_pb2.ASSISTANCE_STATUS_QUEUED, common_pb2.ASSISTANCE_STATUS_RECEIVED)
WAIT_TIMEOUT_S = 120.0


class _Desks:
    """The clerks of one run: the paying clerk, the residence clerk and a reviewer per worker,
    and the two shared screens (the residence inbox, the paying office's open requests)."""

    def __init__(self, local: LocalFederation, interval_s: float) -> None:
        self._local = local
        self.calls = itertools.count()
        self.inbox = _Watcher(
            self._desk(ISSUER.node_id, "clerk"),
            [
                desk_pb2.ListAssistanceRequestsRequest(
                    direction=desk_pb2.DIRECTION_INBOUND,
                    status=common_pb2.ASSISTANCE_STATUS_RECEIVED,
                    page_size=local.limits.max_page_size,
                )
            ],
            interval_s,
        )
        self.open_requests = _Watcher(
            self._desk(RECEIVER.node_id, "clerk"),
            [
                desk_pb2.ListAssistanceRequestsRequest(
                    direction=desk_pb2.DIRECTION_OUTBOUND,
                    status=status,
                    page_size=local.limits.max_page_size,
                )
                for status in _OPEN
            ],
            interval_s,
        )
        self.inbox.start()
        self.open_requests.start()

    def _desk(self, node_id: str, operator: str) -> DeskClient:
        desk = self._local.desk(node_id, operator)
        desk.on_call = lambda: next(self.calls)
        return desk

    def worker(self) -> tuple[DeskClient, DeskClient, DeskClient]:
        return (
            self._desk(RECEIVER.node_id, "clerk"),
            self._desk(ISSUER.node_id, "clerk"),
            self._desk(ISSUER.node_id, "reviewer"),
        )

    def close(self) -> None:
        self.inbox.stop()
        self.open_requests.stop()


# The phases of a round trip, in order, as the figures name them.
PHASES = ("request", "to_inbox", "record", "approve", "to_applied")


def _round_trip(
    desks: _Desks, clerks: tuple[DeskClient, DeskClient, DeskClient], beneficiary_id: str
) -> list[float]:
    """One assistance request, start to applied; the seconds each of PHASES took."""
    paying_clerk, residence_clerk, reviewer = clerks
    deadline = to_timestamp(datetime.now(UTC) + timedelta(days=20))
    marks = [time.perf_counter()]
    request_id = paying_clerk.stub.RequestCertification(
        desk_pb2.RequestCertificationRequest(beneficiary_id=beneficiary_id, deadline=deadline),
    ).request.request_id
    marks.append(time.perf_counter())
    # In the residence agency's inbox once the paying office's outbox has delivered it.
    desks.inbox.wait(request_id, present=True, timeout_s=WAIT_TIMEOUT_S)
    marks.append(time.perf_counter())
    certification_id = residence_clerk.stub.RecordCertification(
        desk_pb2.RecordCertificationRequest(
            request_id=request_id,
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(datetime.now(UTC)),
            evidence_digests=[secrets.token_bytes(32)],
        ),
    ).certification.certification_id
    marks.append(time.perf_counter())
    reviewer.stub.ApproveCertification(
        desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
    )
    marks.append(time.perf_counter())
    # Applied at the paying office: the attestation was delivered, verified against the
    # directory and stored, and the request it answers is completed there.
    lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    while True:
        desks.open_requests.wait(request_id, present=False, timeout_s=WAIT_TIMEOUT_S)
        status = paying_clerk.stub.GetAssistanceRequest(lookup).request.status
        if status == common_pb2.ASSISTANCE_STATUS_COMPLETED:
            marks.append(time.perf_counter())
            return [later - earlier for earlier, later in itertools.pairwise(marks)]
        if status not in _OPEN:
            name = common_pb2.AssistanceStatus.Name(status)
            raise RuntimeError(f"request {request_id} ended {name}, not completed")


def _register(local: LocalFederation, count: int) -> list[str]:
    """`count` beneficiaries of the paying office living in Qingdao, in bulk registrations."""
    registered: list[str] = []
    with local.desk(RECEIVER.node_id, "clerk") as desk:
        step = min(local.limits.max_repeated, 1_000)
        for start in range(0, count, step):
            batch = [
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=_person(number), residence_region="370202"
                )
                for number in range(start, min(count, start + step))
            ]
            response = desk.stub.RegisterBeneficiaries(
                desk_pb2.RegisterBeneficiariesRequest(beneficiaries=batch),
            )
            registered.extend(b.beneficiary_id for b in response.beneficiaries)
    return registered


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, 0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # proc(5): utime and stime are fields 14 and 15; fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _machine_busy_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, over all cores (proc(5))."""
    first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    ticks = [int(value) for value in first[1:]]
    # user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    idle = ticks[3] + ticks[4]
    total = sum(ticks[:8])
    hertz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hertz, total / hertz


class _CpuMeter:
    """CPU seconds spent by named groups of processes between `start` and `stop`, and how busy
    the whole machine was meanwhile (other work on a shared machine shows up there)."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self.machine_busy = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: _process_cpu_s(pid) for pid in pids}
            for name, pids in self._groups().items()
        }

    def start(self) -> None:
        self._before = self._read()
        self._machine = _machine_busy_s()

    def stop(self) -> dict[str, float]:
        after = self._read()
        busy, total = _machine_busy_s()
        spent = total - self._machine[1]
        self.machine_busy = (busy - self._machine[0]) / spent if spent > 0 else 0.0
        return {
            name: sum(
                spent - self._before.get(name, {}).get(pid, 0.0) for pid, spent in pids.items()
            )
            for name, pids in after.items()
        }


def _federation_processes(local: LocalFederation, postgres: _Postgres) -> dict[str, list[int]]:
    groups = {"bench": [os.getpid()]}
    if local.registry_process is not None:
        groups["registry"] = [local.registry_process.pid]
    for node_id, handle in local.nodes.items():
        if handle.process is not None:
            groups[node_id] = [handle.process.pid]
    postmaster = postgres.postmaster_pid()
    if postmaster is not None:
        groups["postgres"] = [postmaster, *_children(postmaster)]
    return groups


def _run_concurrently(concurrency: int, work: Callable[[], None]) -> float:
    """Run `work` on `concurrency` threads; wall seconds until all have returned."""
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _floor(local: LocalFederation, concurrency: int, calls: int) -> tuple[int, float]:
    """`calls` WhoAmI calls on the residence desk, `concurrency` at a time: (calls, seconds)."""
    remaining = itertools.count()

    def work() -> None:
        with local.desk(ISSUER.node_id, "clerk") as desk:
            while next(remaining) < calls:
                desk.stub.WhoAmI(desk_pb2.WhoAmIRequest())

    return calls, _run_concurrently(concurrency, work)


def bench_assist(
    concurrency: int,
    requests: int,
    *,
    interval_s: float = 0.005,
    floor_calls: int = 2_000,
    workdir: Path | None = None,
) -> AssistFigures:
    """`requests` round trips, `concurrency` at a time; latency percentiles, throughput, and
    where the CPU goes, against the cheapest desk call measured the same way."""
    with tempfile.TemporaryDirectory(prefix="certfed-bench-") as scratch:
        root = workdir or Path(scratch)
        with postgres_server(root) as postgres:
            local = LocalFederation(root / "federation", database_url_for=postgres.database_for)
            with local:
                local.start_registry()
                for spec in (ISSUER, RECEIVER):
                    local.add_node(spec, settings=_bench_settings())
                beneficiaries: queue.Queue[str] = queue.Queue()
                for beneficiary_id in _register(local, requests):
                    beneficiaries.put(beneficiary_id)
                latencies: list[list[float]] = []
                failures: list[BaseException] = []
                lock = threading.Lock()
                desks = _Desks(local, interval_s)
                meter = _CpuMeter(lambda: _federation_processes(local, postgres))

                def worker() -> None:
                    clerks = desks.worker()
                    try:
                        while True:
                            try:
                                beneficiary_id = beneficiaries.get_nowait()
                            except queue.Empty:
                                return
                            try:
                                latency = _round_trip(desks, clerks, beneficiary_id)
                            except Exception as error:
                                with lock:
                                    failures.append(error)
                                continue
                            with lock:
                                latencies.append(latency)
                    finally:
                        for clerk in clerks:
                            clerk.close()

                try:
                    meter.start()
                    seconds = _run_concurrently(concurrency, worker)
                    cpu = meter.stop()
                    machine_busy = meter.machine_busy
                    desk_calls = next(desks.calls)
                finally:
                    desks.close()
                meter.start()
                floor_count, floor_seconds = _floor(local, concurrency, floor_calls)
                floor_cpu = meter.stop()
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {requests} round trips failed, first: {failures[0]!r}"
        )
    ordered = sorted(sum(phases) for phases in latencies)
    done = len(ordered)
    cpu_ms = 1000 * sum(cpu.values()) / done if done else 0.0
    return AssistFigures(
        concurrency=concurrency,
        requests=requests,
        completed=done,
        seconds=round(seconds, 3),
        round_trips_per_s=round(done / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 1),
        p95_ms=round(_percentile(ordered, 0.95) * 1000, 1),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 1),
        max_ms=round(ordered[-1] * 1000, 1) if ordered else 0.0,
        phase_p50_ms={
            name: round(_percentile(sorted(p[index] for p in latencies), 0.5) * 1000, 1)
            for index, name in enumerate(PHASES)
        },
        cpu_ms_per_round_trip=round(cpu_ms, 2),
        cpu_ms_by_process={
            name: round(1000 * spent / done, 2) if done else 0.0 for name, spent in cpu.items()
        },
        machine_busy=round(machine_busy, 3),
        desk_calls_per_round_trip=round(desk_calls / done, 1) if done else 0.0,
        floor_calls_per_s=round(floor_count / floor_seconds, 1) if floor_seconds else 0.0,
        floor_cpu_ms_per_call=round(1000 * sum(floor_cpu.values()) / floor_count, 3),
        cpu_bound_round_trips_per_s=round((os.cpu_count() or 1) * 1000 / cpu_ms, 1)
        if cpu_ms
        else 0.0,
        database="DATABASE_URL" if os.environ.get("DATABASE_URL") else "pgserver",
    )
