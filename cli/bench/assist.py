"""`certfed bench assist`: assistance round trips through two nodes' desks.

`bench_assist` drives assistance requests through two nodes' desks (cli.bench.federation) and
reports p50/p95/p99 latency and throughput of the full round trip, the p99 of the clerks' desk
calls, the CPU time every process spent per round trip, and, in the same run, the floor: the
cheapest authenticated desk call's rate and CPU. The ratio between the two says how many such
calls one round trip costs; the cores divided by the CPU per round trip say what throughput the
machine allows at that cost.

Closed loop (the default): C clients, each starting its next round trip when the last one ended.
Open loop (`rate`): requests arrive at a fixed rate whatever the answers, each round trip on its
own thread, clerks acting as soon as their screen shows the request; a round trip's latency runs
from its scheduled arrival, so a late start counts against it (no coordinated omission).
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

import grpc

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.federation import ISSUER, RECEIVER, bench_federation
from cli.bench.kit import CpuMeter, Rate, federation_processes, resident_id
from cli.launcher import LocalFederation
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp


@dataclass(frozen=True)
class AssistFigures(Rate):
    """`rate_per_s` counts completed round trips (as `round_trips_per_s`) over `seconds`, from
    the first request to the last round trip's end."""

    # "closed" (`concurrency` clients) or "open" (`offered_per_s` arrivals a second).
    loop: str
    concurrency: int
    offered_per_s: float
    requests: int
    completed: int
    # Round trips that failed (a call refused or timed out, a wait past WAIT_TIMEOUT_S), and
    # the first failure's description; the percentiles are of the completed ones.
    failed: int
    first_failure: str
    round_trips_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    # The median of each phase: the paying clerk's request call, until it is in the residence
    # inbox, the clerk's record call, the reviewer's approval call, until applied at the paying
    # office (delivered, verified, stored, request completed) and confirmed.
    phase_p50_ms: dict[str, float]
    # The clerks' desk calls (request, record, approve, the paying clerk's look-up), every one.
    desk_call_p99_ms: float
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
    # CPU per round trip in floor calls: cpu_ms_per_round_trip / floor_cpu_ms_per_call.
    floor_calls_per_round_trip: float
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
# Tries to open a desk connection before the measuring starts.
CONNECT_ATTEMPTS = 5


# The clerks of one round trip: the paying clerk, the residence clerk and the reviewer.
Crew = tuple[DeskClient, DeskClient, DeskClient]


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

    def worker(self) -> Crew:
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
    desks: _Desks,
    clerks: Crew,
    beneficiary_id: str,
    arrived: float | None = None,
) -> tuple[list[float], list[float]]:
    """One assistance request, start to applied: the seconds each of PHASES took and the
    seconds of each of the clerks' desk calls. The first phase starts at `arrived` (a
    perf_counter reading) when given, else now."""
    paying_clerk, residence_clerk, reviewer = clerks
    deadline = to_timestamp(datetime.now(UTC) + timedelta(days=20))
    calls: list[float] = []
    marks = [time.perf_counter() if arrived is None else arrived]
    called = time.perf_counter()
    request_id = paying_clerk.stub.RequestCertification(
        desk_pb2.RequestCertificationRequest(beneficiary_id=beneficiary_id, deadline=deadline),
    ).request.request_id
    marks.append(time.perf_counter())
    calls.append(marks[-1] - called)
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
    calls.append(marks[-1] - marks[-2])
    reviewer.stub.ApproveCertification(
        desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
    )
    marks.append(time.perf_counter())
    calls.append(marks[-1] - marks[-2])
    # Applied at the paying office: the attestation was delivered, verified against the
    # directory and stored, and the request it answers is completed there.
    lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    while True:
        desks.open_requests.wait(request_id, present=False, timeout_s=WAIT_TIMEOUT_S)
        called = time.perf_counter()
        status = paying_clerk.stub.GetAssistanceRequest(lookup).request.status
        calls.append(time.perf_counter() - called)
        if status == common_pb2.ASSISTANCE_STATUS_COMPLETED:
            marks.append(time.perf_counter())
            return [later - earlier for earlier, later in itertools.pairwise(marks)], calls
        if status not in _OPEN:
            name = common_pb2.AssistanceStatus.Name(status)
            raise RuntimeError(f"request {request_id} ended {name}, not completed")


def _described(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


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


def _run_concurrently(concurrency: int, work: Callable[[], None]) -> float:
    """Run `work` on `concurrency` threads; wall seconds until all have returned."""
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _run_open_loop(rate: float, items: Sequence[str], work: Callable[[str, float], None]) -> float:
    """`work(item, arrival)` for each of `items`, the n-th on a thread of its own started at its
    arrival, n / `rate` seconds after the first, however the earlier ones are doing; wall
    seconds until all have returned."""
    threads: list[threading.Thread] = []
    started = time.perf_counter()
    for number, item in enumerate(items):
        arrival = started + number / rate
        time.sleep(max(0.0, arrival - time.perf_counter()))
        thread = threading.Thread(target=work, args=(item, arrival), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _connected(desks: Sequence[DeskClient]) -> None:
    """Each desk's connection open (TLS handshake done) before anything is measured; a node
    still busy with an earlier phase may refuse a handshake or two, so each tries a few times."""
    for desk in desks:
        for attempt in itertools.count(1):
            try:
                desk.stub.WhoAmI(desk_pb2.WhoAmIRequest())
                break
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == CONNECT_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)


def _floor(
    local: LocalFederation, meter: CpuMeter, concurrency: int, calls: int
) -> tuple[int, float, dict[str, float]]:
    """`calls` WhoAmI calls on the residence desk, `concurrency` at a time over connections
    opened beforehand: (calls, seconds, CPU seconds by process)."""
    desks = [local.desk(ISSUER.node_id, "clerk") for _ in range(concurrency)]
    try:
        _connected(desks)
        remaining = itertools.count()

        def work(desk: DeskClient) -> Callable[[], None]:
            def call() -> None:
                while next(remaining) < calls:
                    desk.stub.WhoAmI(desk_pb2.WhoAmIRequest())

            return call

        meter.start()
        threads = [threading.Thread(target=work(desk)) for desk in desks]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        return calls, seconds, meter.stop()
    finally:
        for desk in desks:
            desk.close()


def bench_assist(
    concurrency: int,
    requests: int,
    *,
    rate: float | None = None,
    interval_s: float = 0.005,
    floor_calls: int = 2_000,
    workdir: Path | None = None,
) -> AssistFigures:
    """`requests` round trips, `concurrency` at a time, or arriving at `rate` a second (open
    loop); latency percentiles, throughput, and where the CPU goes, against the cheapest desk
    call measured in the same run at `concurrency` calls at once."""
    with bench_federation(workdir) as (local, postgres):
        beneficiaries = _register(local, requests)
        latencies: list[list[float]] = []
        desk_calls: list[float] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        desks = _Desks(local, interval_s)
        meter = CpuMeter(lambda: federation_processes(local, postgres))

        def one(
            clerks: Crew,
            beneficiary_id: str,
            arrived: float | None,
        ) -> None:
            try:
                phases, calls = _round_trip(desks, clerks, beneficiary_id, arrived)
            except Exception as error:
                with lock:
                    failures.append(error)
                return
            with lock:
                latencies.append(phases)
                desk_calls.extend(calls)

        waiting: queue.Queue[str] = queue.Queue()
        for beneficiary_id in beneficiaries:
            waiting.put(beneficiary_id)

        # Every worker's clerks (the open loop's first `concurrency` crews), connected before
        # the meter runs.
        crews = [desks.worker() for _ in range(concurrency)]
        for crew in crews:
            _connected(crew)
        warm_up_calls = next(desks.calls)

        def worker() -> None:
            clerks = crews.pop()
            try:
                while True:
                    try:
                        beneficiary_id = waiting.get_nowait()
                    except queue.Empty:
                        return
                    one(clerks, beneficiary_id, None)
            finally:
                for clerk in clerks:
                    clerk.close()

        def open_loop(rate: float) -> float:
            # `concurrency` crews of clerks on duty, each with desk connections of its own: an
            # arrival takes an idle crew, or waits for one (its latency runs from its arrival
            # all the same), and gives it back when its round trip ends.
            idle: queue.SimpleQueue[Crew] = queue.SimpleQueue()
            for crew in crews:
                idle.put(crew)

            def arrival(beneficiary_id: str, arrived: float) -> None:
                crew = idle.get()
                try:
                    one(crew, beneficiary_id, arrived)
                finally:
                    idle.put(crew)

            try:
                return _run_open_loop(rate, beneficiaries, arrival)
            finally:
                while not idle.empty():
                    for clerk in idle.get_nowait():
                        clerk.close()

        try:
            meter.start()
            seconds = _run_concurrently(concurrency, worker) if rate is None else open_loop(rate)
            cpu = meter.stop()
            machine_busy = meter.machine_busy
            calls_made = next(desks.calls) - warm_up_calls - 1
        finally:
            desks.close()
        floor_count, floor_seconds, floor_cpu = _floor(local, meter, concurrency, floor_calls)
    ordered = sorted(sum(phases) for phases in latencies)
    done = len(ordered)
    cpu_ms = 1000 * sum(cpu.values()) / done if done else 0.0
    floor_cpu_ms = 1000 * sum(floor_cpu.values()) / floor_count
    return AssistFigures(
        **Rate.measure_rate(done, seconds),
        loop="closed" if rate is None else "open",
        concurrency=concurrency,
        offered_per_s=rate or 0.0,
        requests=requests,
        completed=done,
        failed=len(failures),
        first_failure=_described(failures[0]) if failures else "",
        round_trips_per_s=round(done / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 1),
        p95_ms=round(_percentile(ordered, 0.95) * 1000, 1),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 1),
        max_ms=round(ordered[-1] * 1000, 1) if ordered else 0.0,
        phase_p50_ms={
            name: round(_percentile(sorted(p[index] for p in latencies), 0.5) * 1000, 1)
            for index, name in enumerate(PHASES)
        },
        desk_call_p99_ms=round(_percentile(sorted(desk_calls), 0.99) * 1000, 1),
        cpu_ms_per_round_trip=round(cpu_ms, 2),
        cpu_ms_by_process={
            name: round(1000 * spent / done, 2) if done else 0.0 for name, spent in cpu.items()
        },
        machine_busy=round(machine_busy, 3),
        desk_calls_per_round_trip=round(calls_made / done, 1) if done else 0.0,
        floor_calls_per_s=round(floor_count / floor_seconds, 1) if floor_seconds else 0.0,
        floor_cpu_ms_per_call=round(floor_cpu_ms, 3),
        floor_calls_per_round_trip=round(cpu_ms / floor_cpu_ms, 1) if floor_cpu_ms else 0.0,
        cpu_bound_round_trips_per_s=round((os.cpu_count() or 1) * 1000 / cpu_ms, 1)
        if cpu_ms
        else 0.0,
        database=postgres.source,
    )
