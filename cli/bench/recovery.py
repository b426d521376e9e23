"""`certfed bench recovery`: how soon messages waiting for a restarted process go out.

Each trial is one assistance round trip between two offices on real processes (Lanzhou pays and
asks, Qingdao certifies; the registry takes Lanzhou's locators): register a beneficiary (a
locator publication for the registry), request a certification (a request for Qingdao) and, once
it is certified and approved, the attestation back to Lanzhou. One process (Lanzhou, Qingdao or
the registry, at random) is killed with SIGKILL around one of the messages it sends or receives:
just before the message is queued when it is the receiver, a random 0-50 ms after when it is the
sender (so it is caught before it claims the message, while it delivers it, or after). It is
started again after a random 0-3 s.

For every message of the trial that was waiting when the killed process was healthy again
(queued before, delivered after), the figure is the time from "healthy" (its gRPC health check
answers SERVING) to "delivered" (`delivered_at` in the sender's outbox). After the last trial,
`lost` counts round trips that never completed and messages never delivered, `duplicated`
requests or attestations a receiver holds more than once.

The offices run the production dispatch settings (`DispatchConfig` defaults), not the
launcher's short test backoff, since the backoff is part of what is measured.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import grpc
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.kit import Rate, resident_id
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.database import reader
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp
from federation_node.config import DispatchConfig
from federation_node.store import db, outbox
from federation_node.store.models import ATTESTATION_DELIVERIES, DeliveryState, OutboxMessage

PAYING = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
AGENCY = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency",))
REGISTRY = "registry"
VICTIMS = (PAYING.node_id, AGENCY.node_id, REGISTRY)
# For each victim, the messages of a round trip it sends or receives: the trial kills it around
# one of them.
PLAN = {
    PAYING.node_id: (("locators", "sender"), ("request", "sender"), ("attestation", "receiver")),
    AGENCY.node_id: (("request", "receiver"), ("attestation", "sender")),
    REGISTRY: (("locators", "receiver"),),
}
MAX_DOWN_S = 3.0
# A sender is killed this long at most after it queued the message: before it claims it, while
# it delivers, or after.
MAX_KILL_DELAY_S = 0.05
# Deadline for any one wait of a trial; a round trip not done by then counts as lost.
TRIAL_DEADLINE_S = 120.0

T = TypeVar("T")


@dataclass(frozen=True)
class RecoveryFigures(Rate):
    """`rate_per_s` counts trials per second of the whole run (`seconds`), setup included."""

    trials: int
    # Messages that were waiting when the killed process was healthy again, and the seconds
    # from healthy to delivered: median, 90th percentile and the worst.
    samples: int
    p50_s: float
    p90_s: float
    max_s: float
    lost: int
    duplicated: int
    # Trials per victim, for reading the figures, and the 90th percentile by killed process (as
    # the sender or the receiver of the waiting message).
    kills: dict[str, int]
    p90_s_by_victim: dict[str, float]


@dataclass(frozen=True)
class _Trial:
    request_id: str
    victim: str
    started: datetime
    healthy: datetime
    completed: bool


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    position = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[position]


def _person(number: int) -> attestation_pb2.IdentityBundle:
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=resident_id("620102", date(1931, 1, 1), number),
        full_name="Recovery Bench",
    )


def _retrying(call: Callable[[], T], what: str) -> T:
    """`call` until it does not fail UNAVAILABLE (its node restarting), within the deadline."""
    deadline = time.monotonic() + TRIAL_DEADLINE_S
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {error.code().name}") from error
            time.sleep(0.05)


class _Run:
    def __init__(self, local: LocalFederation, rng: random.Random) -> None:
        self._local = local
        self._rng = rng

    @contextmanager
    def _desk(self, node_id: str, operator: str) -> Iterator[DeskClient]:
        with self._local.desk(node_id, operator) as desk:
            yield desk

    def _kill(self, victim: str) -> None:
        if victim == REGISTRY:
            process = self._local.registry_process
            if process is not None:
                process.kill()
                process.wait(timeout=10)
                self._local.registry_process = None
            return
        self._local.stop_node(victim, kill=True)

    def _start(self, victim: str) -> None:
        if victim == REGISTRY:
            self._local.start_registry()
        else:
            self._local.start_node(victim)

    def _in_inbox(self, request_id: str) -> None:
        lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)

        def arrived() -> bool:
            with self._desk(AGENCY.node_id, "clerk") as desk:
                try:
                    desk.stub.GetAssistanceRequest(lookup)
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                        return False
                    raise
                return True

        wait_until(arrived, TRIAL_DEADLINE_S, f"request {request_id} at {AGENCY.node_id}")

    def _certify(self, request_id: str) -> None:
        with self._desk(AGENCY.node_id, "clerk") as clerk:
            certification_id = _retrying(
                lambda: clerk.stub.RecordCertification(
                    desk_pb2.RecordCertificationRequest(
                        request_id=request_id,
                        method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                        observed_at=to_timestamp(datetime.now(UTC)),
                    )
                ),
                "record",
            ).certification.certification_id
        with self._desk(AGENCY.node_id, "reviewer") as reviewer:
            _retrying(
                lambda: reviewer.stub.ApproveCertification(
                    desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
                ),
                "approve",
            )

    def _completed(self, request_id: str) -> bool:
        lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)

        def done() -> bool:
            with self._desk(PAYING.node_id, "clerk") as desk:
                try:
                    status = desk.stub.GetAssistanceRequest(lookup).request.status
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        return False
                    raise
            return status == common_pb2.ASSISTANCE_STATUS_COMPLETED

        try:
            wait_until(done, TRIAL_DEADLINE_S, f"request {request_id} completed")
        except TimeoutError:
            return False
        return True

    def _register(self, number: int) -> str:
        with self._desk(PAYING.node_id, "clerk") as clerk:
            return _retrying(
                lambda: clerk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=_person(number), residence_region="370202"
                    )
                ),
                "register",
            ).beneficiary.beneficiary_id

    def _request(self, beneficiary_id: str) -> str:
        deadline = to_timestamp(datetime.now(UTC) + timedelta(days=20))
        with self._desk(PAYING.node_id, "clerk") as clerk:
            return _retrying(
                lambda: clerk.stub.RequestCertification(
                    desk_pb2.RequestCertificationRequest(
                        beneficiary_id=beneficiary_id, deadline=deadline
                    )
                ),
                "request",
            ).request.request_id

    def trial(self, number: int) -> _Trial:
        victim = self._rng.choice(VICTIMS)
        step, role = self._rng.choice(PLAN[victim])
        started = datetime.now(UTC)

        def queue(message: str, send: Callable[[], T]) -> T:
            """Queue `message` with the victim killed just before (it is the receiver) or
            a random moment after (the sender, caught before, while or after it delivers)."""
            if message != step:
                return send()
            if role == "receiver":
                self._kill(victim)
                return send()
            value = send()
            time.sleep(self._rng.uniform(0, MAX_KILL_DELAY_S))
            self._kill(victim)
            return value

        beneficiary_id = queue("locators", lambda: self._register(number))
        if step == "locators":
            # Wait out the outage before the round trip goes on.
            healthy = self._restart(victim)
        request_id = queue("request", lambda: self._request(beneficiary_id))
        if step == "request":
            healthy = self._restart(victim)
        self._in_inbox(request_id)
        queue("attestation", lambda: self._certify(request_id))
        if step == "attestation":
            healthy = self._restart(victim)
        completed = self._completed(request_id)
        # Every message of the trial out before the next begins (the locators may still wait
        # for a restarted registry while the round trip completes without it).
        for node_id in (PAYING.node_id, AGENCY.node_id):
            try:
                self._local.await_outbox_drained(node_id, TRIAL_DEADLINE_S)
            except TimeoutError:
                break
        return _Trial(request_id, victim, started, healthy, completed)

    def _restart(self, victim: str) -> datetime:
        """Start the victim after a random 0-3 s down; when it answered healthy."""
        time.sleep(self._rng.uniform(0, MAX_DOWN_S))
        self._start(victim)
        return datetime.now(UTC)


def _outbox_messages(local: LocalFederation, node_id: str) -> list[OutboxMessage]:
    engine = db.create_engine_for(local.nodes[node_id].config.effective_database_url)
    messages: list[OutboxMessage] = []
    try:
        with Session(reader(engine)) as session:
            for state in (DeliveryState.DELIVERED, DeliveryState.PENDING, DeliveryState.DEAD):
                token = ""
                while True:
                    rows, token = outbox.page(session, state, 1_000, token)
                    messages.extend(rows)
                    if not token:
                        break
    finally:
        engine.dispose()
    return messages


def _inbound_requests(desk: DeskClient) -> list[str]:
    """The request id of every assistance request the node received, once per stored row."""
    ids: list[str] = []
    token = ""
    while True:
        page = desk.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(
                direction=desk_pb2.DIRECTION_INBOUND, page_size=500, page_token=token
            )
        )
        ids.extend(summary.request_id for summary in page.requests)
        token = page.next_page_token
        if not token:
            return ids


def _answered_requests(desk: DeskClient) -> list[str]:
    """The request each attestation the node received answers, once per stored attestation."""
    ids: list[str] = []
    token = ""
    while True:
        page = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(
                direction=desk_pb2.DIRECTION_INBOUND, page_size=500, page_token=token
            )
        )
        ids.extend(summary.request_id for summary in page.attestations)
        token = page.next_page_token
        if not token:
            return ids


def _duplicates(ids: list[str]) -> int:
    return sum(count - 1 for count in Counter(ids).values() if count > 1)


def bench_recovery(
    trials: int, *, seed: int | None = None, workdir: Path | None = None
) -> RecoveryFigures:
    """Run `trials` crash trials; see the module docstring."""
    rng = random.Random(seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="certfed-recovery-") as scratch:
        root = workdir or Path(scratch)
        production = DispatchConfig()
        local = LocalFederation(root / "federation", max_backoff_s=production.max_backoff_s)
        with local:
            local.start_registry()
            # An empty [dispatch] table: the production defaults, poll interval included.
            for spec in (PAYING, AGENCY):
                local.add_node(spec, settings={"dispatch": {}})
            run = _Run(local, rng)
            results = [run.trial(number) for number in range(trials)]
            messages = _outbox_messages(local, PAYING.node_id) + _outbox_messages(
                local, AGENCY.node_id
            )
            with local.desk(AGENCY.node_id, "clerk") as agency:
                inbound = _inbound_requests(agency)
            with local.desk(PAYING.node_id, "clerk") as paying:
                received = _answered_requests(paying)
    samples: list[float] = []
    by_case: dict[str, list[float]] = {}
    for result in results:
        for message in messages:
            if not result.started <= message.created_at < result.healthy:
                continue
            if message.delivered_at is not None and message.delivered_at > result.healthy:
                waited = (message.delivered_at - result.healthy).total_seconds()
                samples.append(waited)
                sender = (
                    AGENCY.node_id if message.kind in ATTESTATION_DELIVERIES else (PAYING.node_id)
                )
                case = "sender" if result.victim == sender else "receiver"
                by_case.setdefault(f"{result.victim} ({case})", []).append(waited)
    ordered = sorted(samples)
    seconds = time.perf_counter() - started
    undelivered = sum(1 for message in messages if message.state is not DeliveryState.DELIVERED)
    return RecoveryFigures(
        **Rate.measure_rate(trials, seconds),
        trials=trials,
        samples=len(ordered),
        p50_s=round(_percentile(ordered, 0.5), 3),
        p90_s=round(_percentile(ordered, 0.9), 3),
        max_s=round(ordered[-1], 3) if ordered else 0.0,
        lost=sum(1 for result in results if not result.completed) + undelivered,
        duplicated=_duplicates(inbound) + _duplicates(received),
        kills=dict(Counter(result.victim for result in results)),
        p90_s_by_victim={
            case: round(_percentile(sorted(waits), 0.9), 3)
            for case, waits in sorted(by_case.items())
        },
    )
