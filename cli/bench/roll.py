"""`certfed bench roll`: how fast an office's roll imports into a real node on PostgreSQL.

Starts PostgreSQL (the server DATABASE_URL names, or one from `pgserver`), a registry and one
paying office as real processes, writes a roll of `rows` people in the `certfed_roll` layout,
and imports it through the DeskService exactly as `certfed roll import` does (UpsertBeneficiaries
in batches). Then restarts the node (nothing in memory, as at the next month's import) and
imports the same file again: every row is someone on the roll, whose locator the node finds by
roll key instead of asking the registry. Then the yearly adjustment: the roll again with every
monthly amount 3% higher, each a proposal for a reviewer, and a reviewer approving them all as
`certfed desk approve-amounts` does. Prints rows/s and seconds of each, and the peak resident
memory of the importing process and of the node; asserts nothing about time.

A person new to the roll costs three ristretto255 scalar multiplications and a hash to the
group (the locator's OPRF: blinded and unblinded by the node, evaluated by the registry),
whatever else the import does. Before the import, the benchmark times that arithmetic alone
in this process on a sample of the file's own people, the same calls the node and the registry
make, and prints the floor it puts under the first import on this machine's cores: the
import's seconds read against it, in the same run.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from pathlib import Path

from rich.console import Console

from adapters.roll import RollImportSummary
from cli.bench.federation import bench_registry_settings, bench_settings
from cli.bench.kit import (
    CpuMeter,
    NodeCpu,
    bench_workdir,
    cpu_ms_per,
    federation_processes,
    peak_rss_mb,
    postgres_server,
    resident_id,
)
from cli.launcher import LocalFederation, NodeSpec
from cli.roll_import import import_roll_file
from federation.amount_reviews import approve_every_awaiting
from federation_node.offices.signing_pool import cores
from signing import oprf
from signing.identity import IdentityKind
from signing.locator import locator_input

OFFICE = NodeSpec("bench-roll", "Foshan roll office", ("440600",), ("paying_office",))
MAPPING = "certfed_roll"
HEADER = (
    "name", "id_type", "id_number", "scheme", "monthly_amount_fen", "payment_start",
    "valid_until", "residence_region", "phone",
)  # fmt: skip
SCHEMES = ("employee", "resident", "public_service")


@dataclass(frozen=True)
class RollBenchFigures:
    rows: int
    batch_size: int
    database: str
    file_mib: float
    seconds: float
    rate_per_s: float
    # The importing process (reading, checking, sending) and the node, at their peaks.
    peak_rss_mib: float
    node_peak_rss_mib: float
    created: int
    rejected: int
    # The same file imported again after a node restart: nothing new, nothing changed.
    rerun_s: float
    rerun_per_s: float
    rerun_unchanged: int
    # The yearly adjustment: the roll with every amount 3% higher (each row a proposal), and a
    # reviewer approving every proposal in bulk.
    adjustment_s: float
    amount_changes: int
    approval_s: float
    approved: int
    # CPU per row of the first import, by process: the node, its child processes, the registry
    # (the OPRF evaluations), this (the importing) process and PostgreSQL when the benchmark
    # started it (else 0); and how busy the machine was meanwhile (1.0: every core).
    node_cpu_ms_per_row: float
    workers_cpu_ms_per_row: float
    registry_cpu_ms_per_row: float
    importer_cpu_ms_per_row: float
    database_cpu_ms_per_row: float
    machine_busy: float
    # The locator's OPRF alone, per person new to the roll (this process, before the import),
    # and the seconds it alone takes for the file with every core busy.
    oprf_cpu_ms_per_row: float
    oprf_floor_s: float

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("file size", f"{self.file_mib:.1f} MiB"),
            ("batch size", f"{self.batch_size:,}"),
            ("import", f"{self.seconds:.1f} s"),
            ("rows/s", f"{self.rate_per_s:,.0f}"),
            ("registered / rejected", f"{self.created:,} / {self.rejected:,}"),
            ("imported again after a restart", f"{self.rerun_s:.1f} s"),
            ("rows/s, again", f"{self.rerun_per_s:,.0f}"),
            ("unchanged, again", f"{self.rerun_unchanged:,}"),
            (
                "yearly adjustment: import, amounts proposed",
                f"{self.adjustment_s:.1f} s, {self.amount_changes:,}",
            ),
            ("  approved in bulk by a reviewer", f"{self.approval_s:.1f} s, {self.approved:,}"),
            (
                "CPU per row: node, workers, registry",
                f"{self.node_cpu_ms_per_row:.3f}, {self.workers_cpu_ms_per_row:.3f}, "
                f"{self.registry_cpu_ms_per_row:.3f} ms",
            ),
            (
                "CPU per row: importer, database",
                f"{self.importer_cpu_ms_per_row:.3f}, {self.database_cpu_ms_per_row:.3f} ms",
            ),
            ("machine busy during the import", f"{self.machine_busy:.0%}"),
            ("the locator OPRF alone, CPU per new person", f"{self.oprf_cpu_ms_per_row:.3f} ms"),
            (
                "  its floor for the file, every core busy",
                f"{self.oprf_floor_s:.1f} s ({self.oprf_floor_s / self.seconds:.0%} of the import)"
                if self.seconds
                else f"{self.oprf_floor_s:.1f} s",
            ),
            ("peak RSS, importing process", f"{self.peak_rss_mib:.0f} MiB"),
            ("peak RSS, node", f"{self.node_peak_rss_mib:.0f} MiB"),
        ]


# People of the file whose OPRF is timed alone.
OPRF_SAMPLE = 2_000


def oprf_cpu_ms_per_person(roll: Path, sample: int = OPRF_SAMPLE) -> float:
    """CPU milliseconds of the locator OPRF per person, over the first `sample` people of
    `roll`: blinded, evaluated under a fresh key and finalised in one batch, the node's and the
    registry's calls (federation_node/locators.py, registry/locator_oprf.py)."""
    with roll.open(encoding="utf-8", newline="") as handle:
        numbers = [row["id_number"] for row in islice(csv.DictReader(handle), sample)]
    inputs = [locator_input(IdentityKind.RESIDENT_ID, number)[1] for number in numbers]
    key = oprf.generate_key()
    started = time.process_time()
    blinded = [oprf.blind(data) for data in inputs]
    evaluated = [oprf.blind_evaluate(key, element) for _, element in blinded]
    oprf.finalize_many(inputs, [scalar for scalar, _ in blinded], evaluated)
    return (time.process_time() - started) * 1000 / max(len(inputs), 1)


# The yearly adjustment's rise, in percent: within the policy's default bound for approving
# amounts in bulk.
RISE_PERCENT = 3


def write_roll(path: Path, rows: int, rise_percent: int = 0) -> None:
    """`rows` distinct people of Foshan, in the certfed_roll layout; `rise_percent` raises
    every monthly amount (the same people, the same other cells)."""
    # Current validities within the next ten months: a registered validity may not lie further
    # ahead than one policy period from today.
    today = date.today()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index in range(rows):
            writer.writerow(
                (
                    "陈大文",
                    "resident_id",
                    resident_id("440604", date(1940, 1, 1), index),
                    SCHEMES[index % 3],
                    (200_000 + index % 50 * 1_000) * (100 + rise_percent) // 100,
                    f"{2000 + index % 25}-{index % 12 + 1:02d}",
                    (today + timedelta(days=30 + index % 300)).isoformat(),
                    "440604",
                    f"138{index % 100_000_000:08d}",
                )
            )


def bench_roll(
    *,
    rows: int,
    batch_size: int,
    workdir: Path | None,
    console: Console,
    show_progress: bool,
) -> RollBenchFigures:
    with (
        bench_workdir(workdir, "roll") as folder,
        postgres_server(folder / "pgdata", f"certfed_bench_roll_{os.getpid()}") as postgres,
        LocalFederation(
            folder / "federation", database_url_for=postgres.create_database, log_level="warning"
        ) as federation,
    ):
        federation.registry_settings.update(bench_registry_settings())
        federation.start_registry()
        federation.add_node(OFFICE, settings=bench_settings())
        roll = folder / "roll.csv"
        if show_progress:
            console.print(f"writing {rows:,} rows to {roll}")
        write_roll(roll, rows)
        oprf_ms = oprf_cpu_ms_per_person(roll)

        meter = CpuMeter(lambda: federation_processes(federation, postgres))

        def imported(path: Path = roll) -> tuple[RollImportSummary, float]:
            with federation.desk(OFFICE.node_id) as desk:
                started = time.perf_counter()
                summary = import_roll_file(
                    desk,
                    path,
                    mapping_name=MAPPING,
                    fmt=None,
                    sheet=None,
                    batch_size=batch_size,
                    rejects_path=folder / "roll.rejects.csv",
                    show_progress=show_progress,
                )
                return summary, time.perf_counter() - started

        meter.start()
        summary, seconds = imported()
        cpu = NodeCpu.of(meter.stop(), OFFICE.node_id)
        machine_busy = meter.machine_busy
        process = federation.nodes[OFFICE.node_id].process
        node_rss = peak_rss_mb(process.pid) if process is not None else 0.0
        federation.restart_node(OFFICE.node_id)
        again, rerun_seconds = imported()
        rise = folder / "roll-rise.csv"
        write_roll(rise, rows, RISE_PERCENT)
        if show_progress:
            console.print(f"the yearly adjustment: every amount {RISE_PERCENT}% higher")
        adjusted, adjustment_seconds = imported(rise)
        with federation.desk(OFFICE.node_id, "reviewer") as reviewer:
            started = time.perf_counter()
            approval = approve_every_awaiting(reviewer, f"{RISE_PERCENT}% yearly adjustment")
            approval_seconds = time.perf_counter() - started
        if approval.left or approval.decided != adjusted.amount_changes:
            raise RuntimeError(
                f"{adjusted.amount_changes} amounts proposed, {approval.decided} approved, "
                f"{len(approval.left)} left"
            )
        return RollBenchFigures(
            rows=rows,
            batch_size=batch_size,
            database=f"PostgreSQL ({postgres.source})",
            file_mib=round(roll.stat().st_size / 2**20, 1),
            seconds=round(seconds, 2),
            rate_per_s=round(rows / seconds, 1) if seconds else 0.0,
            peak_rss_mib=round(peak_rss_mb(os.getpid()), 1),
            node_peak_rss_mib=round(node_rss, 1),
            created=summary.created,
            rejected=summary.rejected,
            rerun_s=round(rerun_seconds, 2),
            rerun_per_s=round(rows / rerun_seconds, 1) if rerun_seconds else 0.0,
            rerun_unchanged=again.unchanged,
            adjustment_s=round(adjustment_seconds, 2),
            amount_changes=adjusted.amount_changes,
            approval_s=round(approval_seconds, 2),
            approved=approval.decided,
            node_cpu_ms_per_row=cpu_ms_per(cpu.node, rows),
            workers_cpu_ms_per_row=cpu_ms_per(cpu.workers, rows),
            registry_cpu_ms_per_row=cpu_ms_per(cpu.registry, rows),
            importer_cpu_ms_per_row=cpu_ms_per(cpu.importer, rows),
            database_cpu_ms_per_row=cpu_ms_per(cpu.database, rows),
            machine_busy=round(machine_busy, 3),
            oprf_cpu_ms_per_row=round(oprf_ms, 4),
            oprf_floor_s=round(rows * oprf_ms / 1000 / cores(), 2),
        )
