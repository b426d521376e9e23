"""`certfed bench feed`: a feed file to data-match attestations issued, logged and applied, on the
set-based path against the one-at-a-time path, both measured in the same run.

Starts a registry and two paying offices as real processes, each on its own database
(PostgreSQL: the server DATABASE_URL names, or one from `pgserver`; SQLite with `sqlite`):
`bench-office` records signals set-based (the node's default), `bench-baseline` one row at a
time through the ORM (`bulk_feed = false`, the path the set-based one replaced). Both keep the
default operator rate limits: every call is a bulk call (RegisterBeneficiaries, RecordSignals in
batches) and a refused one waits as long as the node asks.

The office registers `beneficiaries` people and imports a hospital-admissions CSV of `rows` rows
(half about its people, half about people it does not pay) through the DeskService as `certfed
feed import` does, then the same file again (every row a duplicate). The baseline imports a
file of the same make-up, `baseline_rows` rows about proportionally fewer people. Prints rows/s
of both, their ratio and peak memory; asserts nothing about time.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from adapters.feeds import FeedImportSummary
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.federation import bench_registry_settings
from cli.bench.kit import (
    CpuMeter,
    Headline,
    NodeCpu,
    PostgresServer,
    bench_workdir,
    call_within_limits,
    cpu_ms_per,
    federation_processes,
    peak_rss_mb,
    postgres_server,
    resident_id,
)
from cli.feed_import import import_feed_file
from cli.launcher import FEED_OPERATOR, LocalFederation, NodeSpec
from federation.timestamps import to_timestamp

OFFICE = NodeSpec("bench-office", "Foshan bench office", ("440600",), ("paying_office",))
BASELINE = NodeSpec("bench-baseline", "Foshan baseline office", ("440600",), ("paying_office",))
# Seconds the benchmark's desk calls may take (a batch on the baseline's path is slow).
CALL_TIMEOUT_S = 300.0
# People per RegisterBeneficiaries call.
REGISTER_BATCH = 2_000


@dataclass(frozen=True)
class FeedBenchFigures(Headline):
    rows: int
    beneficiaries: int
    batch_size: int
    database: str
    file_mib: float
    rerun_s: float
    rerun_per_s: float
    baseline_rows: int
    baseline_seconds: float
    # CPU per row, which a busy machine changes less than wall time: the office node on the
    # set-based path, the baseline node one row at a time, and the importing process.
    node_cpu_ms_per_row: float
    baseline_node_cpu_ms_per_row: float
    importer_cpu_ms_per_row: float
    # The office node's signing workers (its child processes), which build and sign.
    workers_cpu_ms_per_row: float
    # The database server's CPU per row, set-based and one at a time (0 on SQLite or on a
    # server the benchmark did not start).
    database_cpu_ms_per_row: float
    baseline_database_cpu_ms_per_row: float
    node_peak_rss_mib: float
    first: FeedImportSummary
    rerun: FeedImportSummary
    baseline: FeedImportSummary

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("file size", f"{self.file_mib:.1f} MiB"),
            ("batch size", f"{self.batch_size:,}"),
            *self.headline_rows("rows", f"one row at a time, {self.baseline_rows:,} rows"),
            ("first import", f"{self.seconds:.1f} s"),
            (
                "  applied / unknown persons",
                f"{self.first.applied:,} / {self.first.unknown_persons:,}",
            ),
            ("  duplicates / ignored", f"{self.first.duplicates:,} / {self.first.ignored:,}"),
            (
                "  baseline applied / unknown / ignored",
                f"{self.baseline.applied:,} / {self.baseline.unknown_persons:,} / "
                f"{self.baseline.ignored:,}",
            ),
            (
                "node CPU per row: set-based / one at a time",
                f"{self.node_cpu_ms_per_row:.3f} / {self.baseline_node_cpu_ms_per_row:.3f} ms",
            ),
            (
                "database CPU per row: set-based / one at a time",
                f"{self.database_cpu_ms_per_row:.3f} / "
                f"{self.baseline_database_cpu_ms_per_row:.3f} ms",
            ),
            ("importing process CPU per row", f"{self.importer_cpu_ms_per_row:.3f} ms"),
            ("signing workers' CPU per row", f"{self.workers_cpu_ms_per_row:.3f} ms"),
            ("rerun (all duplicates)", f"{self.rerun_s:.1f} s, {self.rerun_per_s:,.0f} rows/s"),
            ("  rerun applied (must be 0)", f"{self.rerun.applied:,}"),
            ("peak RSS, office node", f"{self.node_peak_rss_mib:.0f} MiB"),
        ]


# The baseline's people are not the office's: the registry would flag everyone paid by both
# as a possible duplicate, and the flagging would write to the rows being imported.
BASELINE_FIRST_PERSON = 10_000_000


def person_number(index: int) -> str:
    """A valid resident ID number of the office's region, distinct for each index."""
    return resident_id("440604", date(1940, 1, 1), index)


def write_admissions(path: Path, rows: int, people: int, today: date, first: int = 0) -> None:
    """Rows about `people` persons from number `first` on (the first half registered), dates
    over the last 300 days."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("admission_no", "id_number", "hospital", "admission_date"))
        for index in range(rows):
            writer.writerow(
                (
                    f"ADM{index:09d}",
                    person_number(first + index % people),
                    "佛山市第一人民医院",
                    (today - timedelta(days=index % 300)).isoformat(),
                )
            )


def register_people(federation: LocalFederation, node_id: str, count: int, first: int = 0) -> None:
    """Register `count` people from number `first` on at `node_id` through the bulk call,
    under the clerk's account."""
    valid_until = to_timestamp(datetime.now(UTC) + timedelta(days=180))
    with federation.desk(node_id) as desk:
        for start in range(0, count, REGISTER_BATCH):
            batch = [
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=attestation_pb2.IdentityBundle(
                        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                        identity_number=person_number(first + index),
                        full_name="Bench Person",
                    ),
                    residence_region="440600",
                    valid_until=valid_until,
                    monthly_amount_fen=320_000,
                )
                for index in range(start, min(count, start + REGISTER_BATCH))
            ]
            call_within_limits(
                desk.stub.RegisterBeneficiaries,
                desk_pb2.RegisterBeneficiariesRequest(beneficiaries=batch),
            )


@dataclass(frozen=True)
class _Import:
    summary: FeedImportSummary
    seconds: float
    # What the import cost the node, its signing workers, this (the importing) process and
    # the database server when the benchmark started it.
    cpu: NodeCpu


def _import(
    federation: LocalFederation,
    node_id: str,
    feed: Path,
    batch_size: int,
    show_progress: bool,
    postgres: PostgresServer | None,
) -> _Import:
    meter = CpuMeter(lambda: federation_processes(federation, postgres))
    # Feeds come from the node's feed account, bound to the shipped mappings' sources.
    with federation.desk(node_id, FEED_OPERATOR) as desk:
        meter.start()
        started = time.perf_counter()
        summary = import_feed_file(
            desk,
            feed,
            mapping_name="hospital_admissions",
            source=None,
            fmt=None,
            batch_size=batch_size,
            rejects_path=feed.with_suffix(".rejects.csv"),
            show_progress=show_progress,
        )
        seconds = time.perf_counter() - started
        return _Import(summary, seconds, NodeCpu.of(meter.stop(), node_id))


def bench_feed(
    *,
    rows: int,
    beneficiaries: int,
    batch_size: int,
    baseline_rows: int,
    sqlite: bool,
    workdir: Path | None,
    console: Console,
    show_progress: bool = True,
) -> FeedBenchFigures:
    sample = min(rows, baseline_rows)
    # The same make-up as the office's file: rows per person and registered share alike.
    sample_people = max(1, round(beneficiaries * sample / rows))

    def say(text: str) -> None:
        if show_progress:
            console.print(text)

    with bench_workdir(workdir, "feed") as folder, ExitStack() as stack:
        postgres = (
            None
            if sqlite
            else stack.enter_context(
                postgres_server(folder / "pgdata", f"certfed_bench_feed_{os.getpid()}")
            )
        )
        federation = stack.enter_context(
            LocalFederation(
                folder / "federation",
                database_url_for=postgres.create_database if postgres else None,
                log_level="warning",
            )
        )
        # The one-at-a-time path may take longer than a clerk's call is given for a batch.
        federation.limits = dataclasses.replace(federation.limits, call_timeout_s=CALL_TIMEOUT_S)
        federation.registry_settings.update(bench_registry_settings())
        federation.start_registry()
        federation.add_node(OFFICE)
        # The baseline pays in the same region on purpose: approved as a second node explicitly.
        federation.add_node(
            BASELINE, settings={"bulk_feed": False}, allow_second_node_for_region=True
        )
        say(f"registering {beneficiaries:,} + {sample_people:,} beneficiaries")
        register_people(federation, OFFICE.node_id, beneficiaries)
        register_people(federation, BASELINE.node_id, sample_people, BASELINE_FIRST_PERSON)
        today = datetime.now(UTC).date()
        feed, baseline_feed = folder / "admissions.csv", folder / "baseline.csv"
        say(f"writing {rows:,} + {sample:,} rows")
        write_admissions(feed, rows, 2 * beneficiaries, today)
        write_admissions(baseline_feed, sample, 2 * sample_people, today, BASELINE_FIRST_PERSON)
        baseline = _import(
            federation, BASELINE.node_id, baseline_feed, batch_size, show_progress, postgres
        )
        first = _import(federation, OFFICE.node_id, feed, batch_size, show_progress, postgres)
        rerun = _import(federation, OFFICE.node_id, feed, batch_size, show_progress, postgres)
        process = federation.nodes[OFFICE.node_id].process
        node_rss = peak_rss_mb(process.pid) if process is not None else 0.0
        return FeedBenchFigures(
            **Headline.measure(rows, first.seconds, sample, baseline.seconds),
            rows=rows,
            beneficiaries=beneficiaries,
            batch_size=batch_size,
            database=f"PostgreSQL ({postgres.source})" if postgres else "SQLite",
            file_mib=round(feed.stat().st_size / 2**20, 1),
            rerun_s=round(rerun.seconds, 3),
            rerun_per_s=round(rows / rerun.seconds, 1) if rerun.seconds else 0.0,
            baseline_rows=sample,
            baseline_seconds=round(baseline.seconds, 3),
            node_cpu_ms_per_row=cpu_ms_per(first.cpu.node, rows),
            baseline_node_cpu_ms_per_row=cpu_ms_per(baseline.cpu.node, sample),
            importer_cpu_ms_per_row=cpu_ms_per(first.cpu.importer, rows),
            workers_cpu_ms_per_row=cpu_ms_per(first.cpu.workers, rows),
            database_cpu_ms_per_row=cpu_ms_per(first.cpu.database, rows),
            baseline_database_cpu_ms_per_row=cpu_ms_per(baseline.cpu.database, sample),
            node_peak_rss_mib=round(node_rss, 1),
            first=first.summary,
            rerun=rerun.summary,
            baseline=baseline.summary,
        )
