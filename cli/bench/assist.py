"""`certfed bench assist`: assistance round trips through two nodes' desks.

`bench_assist` drives assistance requests through two nodes' desks (cli.bench.federation) with
C clients at once and reports p50/p95/p99 latency and throughput of the full round trip, the CPU
time every process spent per round trip, and, in the same run and at the same concurrency, the
floor: the cheapest authenticated desk call's rate and CPU. The ratio between the two says how
many such calls one round trip costs; the cores divided by the CPU per round trip say what
throughput the machine allows at that cost.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.federation import ISSUER, RECEIVER, bench_federation
from cli.bench.kit import CpuMeter, PostgresServer, child_pids, resident_id
from cli.launcher import LocalFederation
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp


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
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=resident_id("620102", date(1930, 1, 1), number),
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


def _federation_processes(local: LocalFederation, postgres: PostgresServer) -> dict[str, list[int]]:
    groups = {"bench": [os.getpid()]}
    if local.registry_process is not None:
        groups["registry"] = [local.registry_process.pid]
    for node_id, handle in local.nodes.items():
        if handle.process is not None:
            groups[node_id] = [handle.process.pid]
    postmaster = postgres.postmaster_pid()
    if postmaster is not None:
        groups["postgres"] = [postmaster, *child_pids(postmaster)]
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
    with bench_federation(workdir) as (local, postgres):
        beneficiaries: queue.Queue[str] = queue.Queue()
        for beneficiary_id in _register(local, requests):
            beneficiaries.put(beneficiary_id)
        latencies: list[list[float]] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        desks = _Desks(local, interval_s)
        meter = CpuMeter(lambda: _federation_processes(local, postgres))

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
        database=postgres.source,
    )
