"""`certfed bench cycle`: the daily cycle over a paying office's roll of N people, on PostgreSQL.

Starts PostgreSQL (the server DATABASE_URL names, or one from `pgserver`), a registry and two
paying offices as real processes: `bench-cycle` runs the cycle in batches (the node's default),
`bench-cycle-baseline` row by row in one transaction (`bulk_cycle = false`, the path the batched
one replaced). Each office's roll is written straight into its database with COPY (`seed_roll`;
not timed): people whose validity ends spread evenly over a year around the day measured, from
150 days before it to 215 days after, at every time of day, so the day moves about half of them
(due, warning, suspended with a payment instruction) and queues a reminder for most.

Timed, each a RunCycle call through the desk API: the day on `bench-cycle` (the figure), the
same day again (the rerun: it finds the day done), and the next day (a day's ordinary work over
the same roll); and the same day on the baseline's `baseline` people. Then the day's reminders
sent as `certfed notify run --outbox-file` sends them (every page listed with the phone numbers
opened, written to a file, acknowledged). Prints people/s, seconds, peak memory and the
baseline's rate in the same run; asserts nothing about time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from adapters.notifiers import DeskReminders, OutboxFileNotifier, run_notifications
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.federation import bench_settings
from cli.bench.kit import (
    Headline,
    PostgresServer,
    bench_workdir,
    peak_rss_mb,
    postgres_server,
    resident_id,
)
from cli.launcher import LocalFederation, NodeSpec
from federation.limits import Limits
from federation.timestamps import to_timestamp
from federation_node.keystore import KeyPaths
from federation_node.rules.feed_records import roll_key
from federation_node.store import beneficiaries, db, entitlements_store
from federation_node.store.models import IdentityType, PensionScheme
from signing import sealing
from signing.identity import IdentityKind
from signing.keys import HpkeKey

OFFICE = NodeSpec("bench-cycle", "Foshan cycle office", ("440600",), ("paying_office",))
BASELINE = NodeSpec(
    "bench-cycle-baseline", "Foshan baseline office", ("440600",), ("paying_office",)
)
# People written per transaction when seeding a roll.
SEED_BATCH = 50_000
# Ends of validity run from this many days before the day measured, one day per person in turn.
FIRST_END_DAYS = -150
SPAN_DAYS = 366
# Seconds a RunCycle call may take: the whole day is one call.
CYCLE_DEADLINE_S = 3_600.0


@dataclass(frozen=True)
class CycleCounts:
    became_due: int
    warned: int
    suspended: int
    reminders_queued: int

    @staticmethod
    def of(response: desk_pb2.RunCycleResponse) -> CycleCounts:
        return CycleCounts(
            response.became_due, response.warned, response.suspended, response.reminders_queued
        )


@dataclass(frozen=True)
class CycleBenchFigures(Headline):
    beneficiaries: int
    baseline_beneficiaries: int
    database: str
    day: str
    # The same day run again (it finds the day done), and the next day over the same roll.
    rerun_seconds: float
    next_day_seconds: float
    baseline_seconds: float
    # The first day's reminders sent through the notifier and acknowledged, and how long it took.
    reminders_sent: int
    reminders_seconds: float
    node_peak_rss_mib: float
    baseline_node_peak_rss_mib: float
    first: CycleCounts
    next_day: CycleCounts
    baseline: CycleCounts

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("day", self.day),
            *self.headline_rows(
                "people", f"row by row, {self.baseline_beneficiaries:,} people"
            ),
            (
                "  moved due / warning / suspended, reminders",
                f"{self.first.became_due:,} / {self.first.warned:,} / "
                f"{self.first.suspended:,}, {self.first.reminders_queued:,}",
            ),
            (
                "  reminders sent (notify run, file), acknowledged",
                f"{self.reminders_sent:,} in {self.reminders_seconds:.2f} s "
                f"({self.reminders_sent / max(self.reminders_seconds, 1e-9):,.0f}/s)",
            ),
            ("same day again (rerun)", f"{self.rerun_seconds:.2f} s"),
            (
                "next day",
                f"{self.next_day_seconds:.2f} s ({self.next_day.became_due:,} due, "
                f"{self.next_day.warned:,} warning, {self.next_day.suspended:,} suspended, "
                f"{self.next_day.reminders_queued:,} reminders)",
            ),
            (
                "baseline moved due / warning / suspended, reminders",
                f"{self.baseline.became_due:,} / {self.baseline.warned:,} / "
                f"{self.baseline.suspended:,}, {self.baseline.reminders_queued:,}",
            ),
            ("baseline seconds", f"{self.baseline_seconds:.2f} s"),
            ("peak RSS, node (batched / baseline)", f"{self.node_peak_rss_mib:.0f} / "
             f"{self.baseline_node_peak_rss_mib:.0f} MiB"),
        ]  # fmt: skip


def end_of_validity(day: date, index: int) -> datetime:
    """The end of validity of person `index` of a seeded roll measured on `day`."""
    offset = FIRST_END_DAYS + index % SPAN_DAYS
    second = index * 7919 % 86_400
    return datetime.combine(day, clock_time(), tzinfo=UTC) + timedelta(days=offset, seconds=second)


def _number(index: int) -> str:
    return resident_id("440604", date(1940, 1, 1), index)


def _identity(index: int) -> bytes:
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=_number(index),
        full_name="陈大文",
        phone=f"138{index % 100_000_000:08d}",
    ).SerializeToString(deterministic=True)


def _locator(index: int) -> bytes:
    # Seeded people are never matched by identity, only counted by the cycle: a distinct
    # 32-byte value stands in for the locator the registry would give.
    return hashlib.sha256(f"certfed-bench-cycle:{index}".encode()).digest()


def _people(
    first: int, count: int, day: date, hpke: HpkeKey
) -> Iterator[beneficiaries.NewBeneficiary]:
    indexes = range(first, first + count)
    sealed = sealing.seal_many(
        [(_identity(i), sealing.at_rest_info(_locator(i).hex())) for i in indexes],
        hpke.public_raw,
    )
    for index, sealed_identity in zip(indexes, sealed, strict=True):
        yield beneficiaries.NewBeneficiary(
            subject_locator=_locator(index),
            identity_type=IdentityType.RESIDENT_ID,
            masked_identity_number="440604********" + f"{index % 10_000:04d}",
            sealed_identity=sealed_identity,
            residence_region="440604",
            paying_region="440600",
            valid_until=end_of_validity(day, index),
            roll_key=roll_key(hpke, IdentityKind.RESIDENT_ID, _number(index)),
            scheme=PensionScheme.EMPLOYEE,
            payment_start_month="2010-01",
        )


def seed_roll(engine: Engine, data_dir: Path, count: int, day: date) -> None:
    """`count` people on the roll of the node whose database `engine` reaches (its keys in
    `data_dir`), each with an active entitlement, written with COPY in batches."""
    hpke = HpkeKey.load(KeyPaths(data_dir).hpke_key)
    registered = datetime.now(UTC) - timedelta(days=2 * SPAN_DAYS)
    for first in range(0, count, SEED_BATCH):
        people = list(_people(first, min(SEED_BATCH, count - first), day, hpke))
        with db.session_scope(engine) as session:
            ids = beneficiaries.add_many(session, people, registered)
            entitlements_store.open_many(session, [(bid, 250_000) for bid in ids], registered)


def seeded_office(federation: LocalFederation, spec: NodeSpec, count: int, day: date) -> None:
    config = federation.nodes[spec.node_id].config
    engine = db.create_engine_for(config.effective_database_url)
    try:
        seed_roll(engine, config.data_dir, count, day)
    finally:
        engine.dispose()


def run_cycle(
    federation: LocalFederation, node_id: str, day: date
) -> tuple[float, desk_pb2.RunCycleResponse]:
    request = desk_pb2.RunCycleRequest(
        day=to_timestamp(datetime.combine(day, clock_time(), tzinfo=UTC))
    )
    with federation.desk(node_id, "admin") as desk:
        started = time.perf_counter()
        response: desk_pb2.RunCycleResponse = desk.stub.RunCycle(request, timeout=CYCLE_DEADLINE_S)
        return time.perf_counter() - started, response


def _send_reminders(federation: LocalFederation, node_id: str, outbox: Path) -> tuple[float, int]:
    """Every reminder waiting at the node sent to `outbox` and acknowledged, as `certfed notify
    run --outbox-file` does it, in pages of the most a call may list."""
    with federation.desk(node_id, "admin") as desk:
        started = time.perf_counter()
        summary = run_notifications(
            DeskReminders(desk),
            OutboxFileNotifier(outbox),
            office=OFFICE.display_name,
            page_size=Limits().max_page_size,
        )
        seconds = time.perf_counter() - started
    if summary.acknowledged != summary.sent or summary.refused or summary.no_phone:
        raise RuntimeError(f"reminders not all sent and acknowledged: {summary}")
    return seconds, summary.acknowledged


def _node_rss(federation: LocalFederation, node_id: str) -> float:
    process = federation.nodes[node_id].process
    return round(peak_rss_mb(process.pid), 1) if process is not None else 0.0


# The scheduler stays off: only the benchmark's calls run the cycle.
_SETTINGS = {**bench_settings(), "cycle_hour_utc": -1}


def measured_day() -> date:
    """Yesterday, so that the next day is today: the cycle runs no day in the future."""
    return datetime.now(UTC).date() - timedelta(days=1)


@contextmanager
def paying_office(
    workdir: Path | None, name: str
) -> Iterator[tuple[Path, PostgresServer, LocalFederation]]:
    """PostgreSQL, a registry and `OFFICE` (routing its region to itself, the scheduler off),
    in the benchmark's folder; yields the folder, the server and the federation."""
    with (
        bench_workdir(workdir, name) as folder,
        postgres_server(folder / "pgdata", f"certfed_bench_{name}_{os.getpid()}") as postgres,
        LocalFederation(
            folder / "federation", database_url_for=postgres.create_database, log_level="warning"
        ) as federation,
    ):
        federation.start_registry()
        federation.add_node(OFFICE, settings={**_SETTINGS, "routing": {"440600": OFFICE.node_id}})
        yield folder, postgres, federation


def bench_cycle(
    *,
    beneficiaries: int,
    baseline_beneficiaries: int,
    workdir: Path | None,
    console: Console,
    show_progress: bool,
) -> CycleBenchFigures:
    day = measured_day()
    with paying_office(workdir, "cycle") as (folder, postgres, federation):
        # Both offices pay in the same region on purpose (the baseline approved as a second node
        # for it explicitly); each routes it to itself, so the cycle asks no other node for help.
        federation.add_node(
            BASELINE,
            settings={**_SETTINGS, "routing": {"440600": BASELINE.node_id}, "bulk_cycle": False},
            allow_second_node_for_region=True,
        )
        if show_progress:
            console.print(f"writing {beneficiaries:,} + {baseline_beneficiaries:,} people (COPY)")
        seeded_office(federation, OFFICE, beneficiaries, day)
        seeded_office(federation, BASELINE, baseline_beneficiaries, day)
        if show_progress:
            console.print(f"the cycle for {day.isoformat()} over {beneficiaries:,} people")
        seconds, first = run_cycle(federation, OFFICE.node_id, day)
        if show_progress:
            console.print(f"sending the day's {first.reminders_queued:,} reminders to a file")
        reminders_seconds, sent = _send_reminders(
            federation, OFFICE.node_id, folder / "reminders.jsonl"
        )
        rerun_seconds, rerun = run_cycle(federation, OFFICE.node_id, day)
        if rerun.ran:
            raise RuntimeError("the cycle ran the same day twice")
        next_seconds, next_day = run_cycle(federation, OFFICE.node_id, day + timedelta(days=1))
        if show_progress:
            console.print(f"the baseline, row by row, over {baseline_beneficiaries:,} people")
        baseline_seconds, baseline = run_cycle(federation, BASELINE.node_id, day)
        return CycleBenchFigures(
            **Headline.measure(beneficiaries, seconds, baseline_beneficiaries, baseline_seconds),
            beneficiaries=beneficiaries,
            baseline_beneficiaries=baseline_beneficiaries,
            database=f"PostgreSQL ({postgres.source})",
            day=day.isoformat(),
            rerun_seconds=round(rerun_seconds, 3),
            next_day_seconds=round(next_seconds, 3),
            baseline_seconds=round(baseline_seconds, 3),
            reminders_sent=sent,
            reminders_seconds=round(reminders_seconds, 3),
            node_peak_rss_mib=_node_rss(federation, OFFICE.node_id),
            baseline_node_peak_rss_mib=_node_rss(federation, BASELINE.node_id),
            first=CycleCounts.of(first),
            next_day=CycleCounts.of(next_day),
            baseline=CycleCounts.of(baseline),
        )
