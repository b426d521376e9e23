"""Two replicas of one office on one PostgreSQL, one of them killed in the middle of the work.

Qingdao (residence agency and paying office) runs as two `certfed node serve` processes, A and
B, on one database. Peers reach Qingdao at the one endpoint the directory lists, a TCP
forwarder in front of both replicas that hands each new connection to the next replica that
accepts it, as a Kubernetes Service or an L4 load balancer does; Qingdao's clerks, reviewers
and its data feed alternate between the replicas' desks. Lanzhou asks Qingdao to certify its
retirees, Qingdao's clerks record and approve the checks on both replicas while a feed import
goes through both, and replica A is killed with SIGKILL half way. Afterwards, read from both
offices' databases: every request completed exactly once, no attestation issued twice, the log
has one entry per issued attestation at positions 0..n-1, the survivor delivered what was
waiting (including what A held leased when it died), the daily cycle ran once, and the audit
chain verifies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeHandle, free_port, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp
from federation.transport import anonymous_channel_credentials, node_tls_name, secure_channel
from federation_node.store import audit, db
from federation_node.store.models import (
    AssistanceRequest,
    AssistanceState,
    Attestation,
    AttestationDirection,
    AuditPending,
    CycleRun,
    DataSignal,
    DeliveryState,
    LogEntry,
    LogHead,
    OutboxMessage,
    RequestDirection,
)
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO as OFFICE

pytestmark = pytest.mark.postgres

T = TypeVar("T")
# Requests Lanzhou sends before the kill, and after it (those reach the survivor only).
REQUESTS_BEFORE = 8
REQUESTS_AFTER = 2
# Qingdao's own retirees, seen alive by the feed; sent two a batch, alternating replicas.
FED_PEOPLE = 12
# A source the launcher's feed account is bound to (the shipped hospital admissions mapping).
FEED_SOURCE = "hospital-admissions"
# A dead replica's leases run out after three call timeouts (10 s each): room for that.
DRAIN_S = 90.0


class RoundRobinForwarder:
    """A TCP listener handing each connection to the next backend that accepts it."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self._backends = backends
        self._next = 0
        self._lock = threading.Lock()
        self._closing = False
        self._open: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.connections: Counter[int] = Counter()
        threading.Thread(target=self._accept, name="forwarder", daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for _ in self._backends:
            with self._lock:
                port = self._backends[self._next % len(self._backends)]
                self._next += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            self.connections[port] += 1
            return upstream
        return None

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._closing = True
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for connection in self._open:
                connection.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes; then close both."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@dataclass
class Replica:
    """One `certfed node serve` process of the office, on its own ports."""

    name: str
    federation_port: int
    desk_port: int
    process: subprocess.Popen[bytes]

    @property
    def desk_endpoint(self) -> str:
        return f"127.0.0.1:{self.desk_port}"


def start_replica(handle: NodeHandle, name: str) -> Replica:
    federation_port, desk_port = free_port(), free_port()
    env = {
        **os.environ,
        "CERTFED_NODE_DATABASE_URL": handle.config.effective_database_url,
        "CERTFED_NODE_LISTEN": f"127.0.0.1:{federation_port}",
        "CERTFED_NODE_DESK_LISTEN": f"127.0.0.1:{desk_port}",
        "CERTFED_NODE_REPLICA_ID": f"{handle.spec.node_id}-{name}",
    }
    log_path = handle.config.data_dir / f"replica-{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "serve", "--config", str(handle.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    replica = Replica(name, federation_port, desk_port, process)
    channel = secure_channel(
        replica.desk_endpoint,
        node_tls_name(handle.spec.node_id),
        anonymous_channel_credentials(handle.config.ca_certificate.read_bytes()),
        max_message_bytes=4 * 1024 * 1024,
    )
    health = health_pb2_grpc.HealthStub(channel)

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"replica {name} exited with {process.returncode}; see {log_path}")
        try:
            answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    try:
        wait_until(serving, 60, f"replica {name} to serve")
    finally:
        channel.close()
    return replica


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Desks:
    """Qingdao's desk clients, one per replica and operator, taken in turn; a call a replica
    cannot take (it is down) goes to the next, as a client behind a load balancer would."""

    def __init__(self, local: LocalFederation, handle: NodeHandle, replicas: list[Replica]):
        self._clients: dict[tuple[str, str], DeskClient] = {}
        ca = handle.config.ca_certificate.read_bytes()
        for replica in replicas:
            for operator, token in handle.tokens.items():
                self._clients[replica.name, operator] = DeskClient(
                    replica.desk_endpoint, handle.spec.node_id, ca, token, local.limits
                )
        self._names = [replica.name for replica in replicas]
        self._turn = 0
        self._lock = threading.Lock()
        self.served: Counter[str] = Counter()

    def call(
        self, operator: str, call: Callable[[DeskClient], T], *, idempotent: bool = False
    ) -> T:
        """`call` on the next replica; on the one after when a replica is down, or, for an
        idempotent call, when its deadline passed (a loaded replica may answer late: the first
        feed batch starts its signing workers), round the replicas up to three times."""
        retry = {grpc.StatusCode.UNAVAILABLE}
        rounds = 1
        if idempotent:
            retry.add(grpc.StatusCode.DEADLINE_EXCEEDED)
            rounds = 3
        with self._lock:
            first = self._turn
            self._turn += 1
        for step in range(len(self._names) * rounds):
            name = self._names[(first + step) % len(self._names)]
            try:
                answer = call(self._clients[name, operator])
            except grpc.RpcError as error:
                if error.code() in retry:
                    continue
                raise
            self.served[name] += 1
            return answer
        raise RuntimeError("no replica of the office answered")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@dataclass
class Office:
    local: LocalFederation
    handle: NodeHandle
    replicas: dict[str, Replica]
    forwarder: RoundRobinForwarder
    desks: Desks
    # One engine per office's database, to read what the processes wrote.
    engines: dict[str, Engine]

    def session(self, node_id: str) -> Session:
        return Session(self.engines[node_id])


def _cycle_diagnosis(office: Office) -> str:
    """What a day that does not finish leaves in the database: its run rows and what each
    connection to the office's database is doing or waiting for."""
    with office.session(OFFICE.node_id) as session:
        runs = [
            (run.day, run.started_at, run.resume_after, run.finished_at)
            for run in session.exec(select(CycleRun)).all()
        ]
        activity = session.execute(
            text(
                "SELECT pid, state, wait_event_type, wait_event, "
                "now() - xact_start AS in_transaction, left(query, 160) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).all()
    lines = [f"cycle runs: {runs}", "connections:", *(f"  {tuple(row)}" for row in activity)]
    for name, replica in office.replicas.items():
        log_path = office.handle.config.data_dir / f"replica-{name}.log"
        logged = log_path.read_text(encoding="utf-8", errors="replace")
        lines.append(f"replica {name}'s cycle log lines:")
        lines += [f"  {line}" for line in logged.splitlines() if "cycle" in line]
        if replica.process.poll() is None:
            # The node dumps every thread's stack on SIGUSR1 (federation/logs.py).
            replica.process.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            dump = log_path.read_text(encoding="utf-8", errors="replace")[len(logged) :]
            lines += [f"replica {name}'s threads:", dump]
    return "the daily cycle did not finish in 60 s\n" + "\n".join(lines)


@pytest.fixture
def office(tmp_path: Path, postgres_url_factory: Callable[[], str]) -> Iterator[Office]:
    with ExitStack() as stack:
        # The environment overrides node.toml; a cycle hour another module's fixture left in it
        # would keep the replicas' schedulers off, so the hour is set where it wins too.
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "0")
        local = stack.enter_context(
            LocalFederation(tmp_path, database_url_for=lambda _name: postgres_url_factory())
        )
        local.start_registry()
        local.add_node(PAYING)
        # Both replicas run the daily cycle at their first check, as soon as they start.
        handle = local.add_node(OFFICE, start=False, settings={"cycle_hour_utc": 0})
        replicas = {name: start_replica(handle, name) for name in ("a", "b")}
        for replica in replicas.values():
            stack.callback(stop, replica.process)
        forwarder = RoundRobinForwarder(
            handle.federation_port, [replica.federation_port for replica in replicas.values()]
        )
        stack.callback(forwarder.close)
        desks = Desks(local, handle, list(replicas.values()))
        stack.callback(desks.close)
        engines = {
            node_id: db.create_engine_for(node.config.effective_database_url)
            for node_id, node in local.nodes.items()
        }
        for engine in engines.values():
            stack.callback(engine.dispose)
        yield Office(local, handle, replicas, forwarder, desks, engines)


def _request_certifications(local: LocalFederation, serials: range) -> list[str]:
    """Lanzhou retirees living in Qingdao, and a certification request for each."""
    request_ids = []
    with local.desk(PAYING.node_id) as desk:
        for serial in serials:
            person = resident(resident_id("620102", date(1944, 5, 6), serial), "Replica Test")
            beneficiary = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202")
            ).beneficiary
            request_ids.append(
                desk.stub.RequestCertification(
                    desk_pb2.RequestCertificationRequest(
                        beneficiary_id=beneficiary.beneficiary_id,
                        deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                    )
                ).request.request_id
            )
    return request_ids


def _certify(desks: Desks, request_id: str, shade: int) -> str:
    """A clerk uploads evidence and records an on-site check on one replica, a reviewer
    approves on the next; the attestation id."""
    digest = desks.call("clerk", lambda desk: upload_capture(desk, shade))
    certification_id = desks.call(
        "clerk",
        lambda desk: (
            desk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    request_id=request_id,
                    method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=5)),
                    evidence_digests=[digest],
                )
            ).certification.certification_id
        ),
    )
    return desks.call(
        "reviewer",
        lambda desk: (
            desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
            ).certification.attestation_id
        ),
    )


def _fed_number(serial: int) -> str:
    return resident_id("370202", date(1946, 7, 8), serial)


def _import_feed(desks: Desks, started: threading.Event) -> None:
    """Qingdao's hospital feed, two rows a batch on alternating replicas; a batch a replica
    could not take is sent again to the other (RecordSignals is idempotent per row)."""
    observed = to_timestamp(datetime.now(UTC) - timedelta(days=1))
    for first in range(0, FED_PEOPLE, 2):
        batch = [
            desk_pb2.DataSignal(
                source=FEED_SOURCE,
                source_record_id=f"admission-{serial}",
                kind=desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                identity_number=_fed_number(serial),
                observed_at=observed,
            )
            for serial in range(first, first + 2)
        ]
        request = desk_pb2.RecordSignalsRequest(signals=batch)

        def record(
            desk: DeskClient, request: desk_pb2.RecordSignalsRequest = request
        ) -> list[desk_pb2.SignalResult]:
            return list(desk.stub.RecordSignals(request).results)

        results = desks.call("feed", record, idempotent=True)
        assert all(
            result.outcome in (desk_pb2.SIGNAL_OUTCOME_APPLIED, desk_pb2.SIGNAL_OUTCOME_DUPLICATE)
            for result in results
        ), results
        started.set()


def _inbox_holds(office: Office, request_ids: list[str]) -> bool:
    with office.session(OFFICE.node_id) as session:
        found = session.exec(
            select(AssistanceRequest.request_id).where(
                AssistanceRequest.direction == RequestDirection.INBOUND
            )
        ).all()
    return set(request_ids) <= set(found)


def test_a_replica_killed_mid_work_loses_and_duplicates_nothing(office: Office) -> None:
    local, desks = office.local, office.desks
    # Qingdao's own retirees, registered on both replicas in turn.
    for serial in range(FED_PEOPLE):
        register = desk_pb2.RegisterBeneficiaryRequest(
            identity=resident(_fed_number(serial), "Feed Person"),
            residence_region="370202",
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=90)),
        )

        def enrol(
            desk: DeskClient, request: desk_pb2.RegisterBeneficiaryRequest = register
        ) -> object:
            return desk.stub.RegisterBeneficiary(request)

        desks.call("clerk", enrol)
    requested = _request_certifications(local, range(REQUESTS_BEFORE))
    wait_until(lambda: _inbox_holds(office, requested), 30, "Lanzhou's requests at Qingdao")

    feed_started = threading.Event()
    feed = threading.Thread(target=_import_feed, args=(desks, feed_started), name="feed")
    feed.start()
    issued: dict[str, str] = {}
    for number, request_id in enumerate(requested):
        issued[request_id] = _certify(desks, request_id, number)
        if number == REQUESTS_BEFORE // 2 - 1:
            feed_started.wait(30)
            # What A holds leased right now, to see the survivor deliver it.
            with office.session(OFFICE.node_id) as session:
                held_by_a = set(
                    session.exec(
                        select(OutboxMessage.message_id).where(
                            OutboxMessage.leased_by == f"{OFFICE.node_id}-a",
                            OutboxMessage.state == DeliveryState.PENDING,
                        )
                    ).all()
                )
            office.replicas["a"].process.kill()
            office.replicas["a"].process.wait(timeout=10)
    feed.join(timeout=120)
    assert not feed.is_alive()
    assert desks.served["a"] > 0
    assert desks.served["b"] > 0

    # Requests sent after the kill reach the survivor through the same endpoint.
    later = _request_certifications(local, range(REQUESTS_BEFORE, REQUESTS_BEFORE + REQUESTS_AFTER))
    wait_until(lambda: _inbox_holds(office, later), 60, "the later requests at the survivor")
    for number, request_id in enumerate(later, start=REQUESTS_BEFORE):
        issued[request_id] = _certify(desks, request_id, number)
    requested += later
    assert office.forwarder.connections[office.replicas["b"].federation_port] > 0

    def drained() -> bool:
        with office.session(OFFICE.node_id) as session:
            waiting = session.exec(
                select(OutboxMessage).where(OutboxMessage.state != DeliveryState.DELIVERED)
            ).all()
            chaining = session.exec(select(AuditPending)).first()
        return not waiting and chaining is None

    wait_until(drained, DRAIN_S, "the survivor to deliver the outbox and chain the audit trail")

    def completed() -> bool:
        # An attestation is applied to its request once proven in Qingdao's witnessed log
        # (tlog/inclusion.py), which may come after the request's status.
        with office.session(PAYING.node_id) as session:
            rows = session.exec(
                select(AssistanceRequest.status, AssistanceRequest.attestation_id).where(
                    col(AssistanceRequest.request_id).in_(requested)
                )
            ).all()
        return (
            len(rows) == len(requested)
            and {status for status, _ in rows} == {AssistanceState.COMPLETED}
            and all(attestation_id is not None for _, attestation_id in rows)
        )

    wait_until(completed, 30, "every request completed, its attestation applied, at Lanzhou")

    def cycle_finished() -> bool:
        with office.session(OFFICE.node_id) as session:
            runs = session.exec(select(CycleRun)).all()
        return bool(runs) and all(run.finished_at is not None for run in runs)

    # Each replica's scheduler tries the day at start; a try that meets a busy database is
    # retried within seconds, so on a loaded machine the day may still be finishing here.
    try:
        wait_until(cycle_finished, 60, "the daily cycle to finish on one of the replicas")
    except TimeoutError as timeout:
        raise AssertionError(_cycle_diagnosis(office)) from timeout

    with office.session(OFFICE.node_id) as session:
        # Every request answered by exactly one attestation, the one the reviewer was given.
        attestations = session.exec(
            select(Attestation).where(Attestation.direction == AttestationDirection.ISSUED)
        ).all()
        by_request = Counter(a.request_id for a in attestations if a.request_id is not None)
        assert by_request == Counter(requested)
        assert {a.request_id: a.attestation_id for a in attestations if a.request_id} == issued
        inbound = session.exec(
            select(AssistanceRequest).where(AssistanceRequest.direction == RequestDirection.INBOUND)
        ).all()
        assert sorted(r.request_id for r in inbound) == sorted(requested)
        assert {r.request_id: r.attestation_id for r in inbound} == issued
        assert {r.status for r in inbound} == {AssistanceState.COMPLETED}
        # The feed: each row recorded once, each alive signal one data-match attestation.
        signals = session.exec(select(DataSignal)).all()
        # Kept under keyed ids (rules/feed_records.py), never the ids the feed sent.
        assert len({s.source_record_id for s in signals}) == len(signals) == FED_PEOPLE
        assert not {s.source_record_id for s in signals} & {
            f"admission-{serial}" for serial in range(FED_PEOPLE)
        }
        data_matches = [
            a for a in attestations if a.method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH
        ]
        assert len(data_matches) == FED_PEOPLE
        assert Counter(a.beneficiary_id for a in data_matches).most_common(1)[0][1] == 1
        # The log: one entry per issued attestation, at positions 0..n-1, none shared.
        entries = session.exec(select(LogEntry).order_by(col(LogEntry.leaf_index))).all()
        assert [e.leaf_index for e in entries] == list(range(len(attestations)))
        assert sorted(e.attestation_id for e in entries) == sorted(
            a.attestation_id for a in attestations
        )
        head = session.exec(select(LogHead)).one()
        assert head.tree_size == len(entries)
        # What A held when it died went out, and nothing waits or was given up on.
        delivered = session.exec(
            select(OutboxMessage).where(col(OutboxMessage.message_id).in_(held_by_a))
        ).all()
        assert {m.state for m in delivered} <= {DeliveryState.DELIVERED}
        # The daily cycle ran once, on one of the replicas.
        runs = session.exec(select(CycleRun)).all()
        assert [run.day for run in runs] == [datetime.now(UTC).date().isoformat()]
        # The audit chain verifies, with what both replicas appended.
        assert audit.verify_chain(session) == []

    with office.session(PAYING.node_id) as session:
        received = session.exec(
            select(Attestation).where(Attestation.direction == AttestationDirection.RECEIVED)
        ).all()
        assert Counter(a.request_id for a in received) == Counter(requested)
        outbound = session.exec(
            select(AssistanceRequest).where(
                AssistanceRequest.direction == RequestDirection.OUTBOUND
            )
        ).all()
        assert {r.request_id: r.attestation_id for r in outbound} == issued
