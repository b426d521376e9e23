"""`certfed bench feed`: how fast a feed imports into a real node, first run and rerun.

Starts a registry and one paying office as real processes (LocalFederation), registers
`beneficiaries` people, writes a hospital-admissions CSV of `rows` rows about them and as many
people the office does not pay, imports it through the DeskService exactly as `certfed feed
import` does, then imports the same file again (every row a duplicate). Prints figures; asserts
nothing about time.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from adapters.feeds import FeedImportSummary
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.kit import bench_workdir, resident_id
from cli.feed_import import import_feed_file
from cli.launcher import LocalFederation, NodeSpec
from federation.timestamps import to_timestamp

OFFICE = NodeSpec("bench-office", "Foshan bench office", ("440600",), ("paying_office",))


@dataclass(frozen=True)
class FeedBenchFigures:
    rows: int
    beneficiaries: int
    batch_size: int
    database: str
    file_mib: float
    first_s: float
    rerun_s: float
    first: FeedImportSummary
    rerun: FeedImportSummary

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("file size", f"{self.file_mib:.1f} MiB"),
            ("batch size", f"{self.batch_size:,}"),
            ("first import", f"{self.first_s:.1f} s"),
            ("first import rows/s", f"{self.rows / self.first_s:,.0f}"),
            (
                "  applied / unknown persons",
                f"{self.first.applied:,} / {self.first.unknown_persons:,}",
            ),
            ("  duplicates / ignored", f"{self.first.duplicates:,} / {self.first.ignored:,}"),
            ("rerun (all duplicates)", f"{self.rerun_s:.1f} s"),
            ("rerun rows/s", f"{self.rows / self.rerun_s:,.0f}"),
            ("  rerun applied (must be 0)", f"{self.rerun.applied:,}"),
        ]


def person_number(index: int) -> str:
    """A valid resident ID number of the office's region, distinct for each index."""
    return resident_id("440604", date(1940, 1, 1), index)


def write_admissions(path: Path, rows: int, people: int, today: date) -> None:
    """Rows about `people` persons (the first half registered), dates over the last 300 days."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("admission_no", "id_number", "hospital", "admission_date"))
        for index in range(rows):
            writer.writerow(
                (
                    f"ADM{index:09d}",
                    person_number(index % people),
                    "佛山市第一人民医院",
                    (today - timedelta(days=index % 300)).isoformat(),
                )
            )


def bench_feed(
    *,
    rows: int,
    beneficiaries: int,
    batch_size: int,
    workdir: Path | None,
    database_url: str | None,
    console: Console,
) -> FeedBenchFigures:
    with bench_workdir(workdir, "feed") as folder:
        url_for = (
            (lambda name: "" if name == "registry" else database_url) if database_url else None
        )
        with LocalFederation(folder / "federation", database_url_for=url_for) as federation:
            federation.start_registry()
            federation.add_node(OFFICE)
            console.print(f"registering {beneficiaries:,} beneficiaries")
            valid_until = to_timestamp(datetime.now(UTC) + timedelta(days=180))
            with federation.desk(OFFICE.node_id) as desk:
                for index in range(beneficiaries):
                    desk.stub.RegisterBeneficiary(
                        desk_pb2.RegisterBeneficiaryRequest(
                            identity=attestation_pb2.IdentityBundle(
                                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                                identity_number=person_number(index),
                                full_name="Bench Person",
                            ),
                            residence_region="440600",
                            valid_until=valid_until,
                            monthly_amount_fen=320_000,
                        ),
                    )
            feed = folder / "admissions.csv"
            console.print(f"writing {rows:,} rows to {feed}")
            write_admissions(feed, rows, 2 * beneficiaries, datetime.now(UTC).date())
            timings: list[float] = []
            summaries: list[FeedImportSummary] = []
            for _ in range(2):
                with federation.desk(OFFICE.node_id) as desk:
                    started = time.perf_counter()
                    summaries.append(
                        import_feed_file(
                            desk,
                            feed,
                            mapping_name="hospital_admissions",
                            source=None,
                            fmt=None,
                            batch_size=batch_size,
                            rejects_path=folder / "rejects.csv",
                        )
                    )
                    timings.append(time.perf_counter() - started)
            return FeedBenchFigures(
                rows=rows,
                beneficiaries=beneficiaries,
                batch_size=batch_size,
                database="PostgreSQL" if database_url else "SQLite",
                file_mib=feed.stat().st_size / 2**20,
                first_s=timings[0],
                rerun_s=timings[1],
                first=summaries[0],
                rerun=summaries[1],
            )
