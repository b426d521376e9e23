"""`certfed bench sync`, `assist`, `roll`, `web`, `feed` and `issue` run end to end in the suite
(smoke tests: figures are printed, and no timing is asserted; the targets are measured with the
command, see the README), and one stopped with SIGTERM or SIGHUP leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.bench.kit import BASELINE_FIELDS, RATE_FIELDS
from cli.launcher import wait_until
from tests.helpers.commands import certfed


def _bench(postgres_url: str, kind: str, *arguments: str) -> dict[str, Any]:
    """Run `certfed bench KIND ARGUMENTS --json` in its own process; its figures."""
    completed = certfed(
        "bench",
        kind,
        *arguments,
        "--json",
        timeout=600,
        # The bench creates its databases on the suite's PostgreSQL server.
        env={"DATABASE_URL": postgres_url},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures: dict[str, Any] = json.loads(completed.stdout)
    # Every benchmark's JSON holds the same headline, whatever else it adds.
    for name in RATE_FIELDS:
        assert figures[name] > 0, name
    if "baseline_per_s" in figures:
        for name in BASELINE_FIELDS:
            assert figures[name] > 0, name
    return figures


@pytest.mark.postgres
def test_bench_sync_of_5000_attestations_completes(postgres_url: str) -> None:
    figures = _bench(postgres_url, "sync", "--entries", "5000", "--naive-sample", "100")
    assert figures["entries"] == 5000
    assert figures["naive_entries"] == 100
    assert figures["entries_per_s"] > 0
    assert figures["naive_entries_per_s"] > 0
    assert figures["issuer_peak_rss_mb"] > 0
    assert figures["syncer_peak_rss_mb"] > 0
    assert figures["database"] == "DATABASE_URL"


@pytest.mark.postgres
def test_bench_assist_of_40_round_trips_completes(postgres_url: str) -> None:
    figures = _bench(postgres_url, "assist", "--concurrency", "4", "--requests", "40")
    assert figures["completed"] == 40
    assert figures["failed"] == 0
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert set(figures["phase_p50_ms"]) == {
        "request",
        "to_inbox",
        "record",
        "approve",
        "to_applied",
    }
    # Both nodes and the registry did work that the figures account for; with DATABASE_URL the
    # server is not the benchmark's own, so its CPU is not counted.
    assert {"bench", "registry", "qingdao", "lanzhou"} <= set(figures["cpu_ms_by_process"])
    assert "postgres" not in figures["cpu_ms_by_process"]
    assert figures["cpu_ms_per_round_trip"] > 0
    assert 0 < figures["machine_busy"] <= 1
    # The three clerk actions and the confirmation, at least, for every round trip.
    assert figures["desk_calls_per_round_trip"] >= 4
    assert figures["floor_calls_per_s"] > 0
    assert figures["floor_cpu_ms_per_call"] > 0
    assert figures["floor_calls_per_round_trip"] > 0
    assert figures["loop"] == "closed"
    assert figures["rate_per_s"] == figures["round_trips_per_s"] > 0
    assert 0 < figures["desk_call_p99_ms"] <= figures["max_ms"]


@pytest.mark.postgres
def test_bench_assist_open_loop_completes_every_arrival(postgres_url: str) -> None:
    figures = _bench(
        postgres_url,
        "assist",
        *("--rate", "4", "--duration", "3", "--concurrency", "2", "--floor-calls", "100"),
    )
    assert figures["loop"] == "open"
    assert figures["offered_per_s"] == 4
    # Every request that arrived completed its round trip; none was dropped for being late.
    assert figures["requests"] == figures["completed"] == 12
    assert figures["failed"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert 0 < figures["desk_call_p99_ms"] <= figures["max_ms"]
    for name in ("cpu_ms_per_round_trip", "floor_cpu_ms_per_call", "round_trips_per_s"):
        assert figures[name] > 0, name


@pytest.mark.postgres
def test_bench_roll_of_2000_rows_completes(postgres_url: str) -> None:
    figures = _bench(postgres_url, "roll", "--rows", "2000", "--batch-size", "500")
    assert figures["rows"] == 2000
    assert figures["created"] == 2000
    assert figures["rejected"] == 0
    assert figures["rate_per_s"] > 0
    assert figures["seconds"] > 0
    assert figures["peak_rss_mib"] > 0
    assert figures["node_peak_rss_mib"] > 0
    assert figures["database"] == "PostgreSQL (DATABASE_URL)"
    # Imported again after a restart: everyone is on the roll already, and nothing changes.
    assert figures["rerun_unchanged"] == 2000
    assert figures["rerun_s"] > 0
    # The yearly adjustment: every amount proposed again, and every proposal approved in bulk.
    assert figures["amount_changes"] == 2000
    assert figures["approved"] == 2000
    # The OPRF alone, timed in the same run, and the floor it puts under the import.
    assert figures["oprf_cpu_ms_per_row"] > 0
    assert 0 < figures["oprf_floor_s"] < figures["seconds"]
    assert figures["adjustment_s"] > 0
    assert figures["approval_s"] > 0
    # Where the first import's CPU went: every new person's locator is evaluated at the
    # registry (PostgreSQL's own share is measured only on a server the benchmark starts).
    for name in ("node", "registry", "importer"):
        assert figures[f"{name}_cpu_ms_per_row"] > 0, name
    assert figures["database_cpu_ms_per_row"] == 0
    assert 0 < figures["machine_busy"] <= 1


@pytest.mark.postgres
def test_bench_cycle_of_3000_beneficiaries_completes(postgres_url: str) -> None:
    figures = _bench(
        postgres_url, "cycle", "--beneficiaries", "3000", "--baseline-beneficiaries", "300"
    )
    assert figures["beneficiaries"] == 3000
    assert figures["baseline_beneficiaries"] == 300
    first = figures["first"]
    # Validity ends spread over a year around the day: every kind of move happens.
    assert first["became_due"] > 0
    assert first["warned"] > 0
    assert first["suspended"] > 0
    assert first["reminders_queued"] > 0
    assert figures["baseline"]["suspended"] > 0
    # The day's reminders sent through the notifier, every one acknowledged.
    assert figures["reminders_sent"] == first["reminders_queued"]
    assert figures["reminders_seconds"] > 0
    assert figures["next_day"]["reminders_queued"] > 0
    for name in ("rate_per_s", "seconds", "peak_rss_mib", "baseline_per_s", "ratio"):
        assert figures[name] > 0, name
    assert figures["rerun_seconds"] > 0
    assert figures["next_day_seconds"] > 0
    assert figures["node_peak_rss_mib"] > 0
    assert figures["database"] == "PostgreSQL (DATABASE_URL)"


@pytest.mark.postgres
def test_bench_notify_sends_every_reminder_through_the_https_gateway(postgres_url: str) -> None:
    figures = _bench(
        postgres_url,
        "notify",
        "--beneficiaries",
        "1000",
        "--baseline-reminders",
        "40",
        "--concurrency",
        "4",
        "--latency-ms",
        "5",
    )
    assert figures["baseline_reminders"] == 40
    assert figures["reminders"] > 0
    # Every reminder reached the gateway once (no retries on a healthy gateway), over kept-alive
    # connections: one for the baseline, at most four for the rest, and one for the counts.
    assert figures["gateway_requests"] == figures["reminders"] + 40
    assert 2 <= figures["gateway_connections"] <= 6
    assert figures["gateway_max_in_flight"] == 4
    assert (figures["concurrency"], figures["latency_ms"]) == (4, 5.0)
    for name in ("rate_per_s", "seconds", "peak_rss_mib", "baseline_per_s", "ratio"):
        assert figures[name] > 0, name
    assert figures["sender_cpu_ms_per_reminder"] > 0


@pytest.mark.postgres
def test_bench_web_of_300_beneficiaries_completes(postgres_url: str) -> None:
    figures = _bench(
        postgres_url, "web", "--beneficiaries", "300", "--requests", "5", "--rounds", "3"
    )
    assert figures["beneficiaries"] == 300
    assert figures["requests"] == 5
    pages = set(figures["page_p95_ms"])
    assert {"home", "lists/due", "beneficiary", "inbox", "request", "reviews"} <= pages
    assert {"certification", "admin/operators", "admin/audit"} <= pages
    assert figures["fetches"] == 3 * len(pages)
    assert figures["rate_per_s"] > 0
    assert figures["seconds"] > 0
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert all(p95 > 0 for p95 in figures["page_p95_ms"].values())
    assert 0 < figures["floor_p50_ms"] <= figures["floor_p95_ms"]
    assert figures["peak_rss_mib"] > 0
    assert figures["node_peak_rss_mib"] > 0
    assert figures["database"] == "PostgreSQL (DATABASE_URL)"


@pytest.mark.postgres
def test_bench_feed_of_2000_rows_completes(postgres_url: str) -> None:
    figures = _bench(
        postgres_url,
        "feed",
        "--rows",
        "2000",
        "--beneficiaries",
        "500",
        "--baseline-rows",
        "400",
        "--batch-size",
        "500",
    )
    assert figures["rows"] == 2000
    assert figures["baseline_rows"] == 400
    first = figures["first"]
    # Rows about registered people are applied or ignored, the others unknown; none twice.
    assert first["applied"] > 0
    assert first["applied"] + first["ignored"] + first["unknown_persons"] == 2000
    assert first["duplicates"] == 0
    assert figures["rerun"]["duplicates"] == 2000
    assert figures["rerun"]["applied"] == 0
    assert figures["baseline"]["applied"] > 0
    for name in ("rate_per_s", "seconds", "peak_rss_mib", "baseline_per_s", "ratio"):
        assert figures[name] > 0, name
    for name in ("node", "baseline_node", "importer", "workers"):
        assert figures[f"{name}_cpu_ms_per_row"] > 0, name
    assert figures["database"] == "PostgreSQL (DATABASE_URL)"


@pytest.mark.postgres
def test_bench_issue_of_3000_attestations_completes(postgres_url: str) -> None:
    figures = _bench(
        postgres_url,
        "issue",
        "--attestations",
        "3000",
        "--batch-size",
        "1000",
        "--baseline-attestations",
        "50",
    )
    assert figures["attestations"] == 3000
    assert figures["baseline_attestations"] == 50
    # Every attestation of both paths is logged and queued for the remote paying office.
    assert figures["log_size"] == 3050
    assert figures["queued_for_paying_office"] == 3050
    assert figures["first_tenth_per_s"] > 0
    assert figures["last_tenth_per_s"] > 0
    assert figures["database"] == "PostgreSQL (DATABASE_URL)"


def _processes_naming(folder: Path) -> dict[int, str]:
    """This machine's processes whose command line names `folder` (its servers' configs and data
    directories are under it): their command lines by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if str(folder) in line:
            found[int(entry.name)] = line
    return found


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_bench_stopped_by_a_signal_stops_everything_it_started(
    tmp_path: Path, stop: signal.Signals
) -> None:
    # Its own PostgreSQL (no DATABASE_URL), the registry and the nodes, all under --workdir.
    workdir = tmp_path / "bench"
    output = tmp_path / "bench.out"
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    arguments = ["feed", "--rows", "400000", "--beneficiaries", "2000", "--workdir", str(workdir)]
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "bench", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:

        def federation_up() -> bool:
            assert process.poll() is None, output.read_text()[-3000:]
            lines = _processes_naming(workdir).values()
            return any(" node serve " in line for line in lines) and any(
                "postgres" in line for line in lines
            )

        wait_until(federation_up, 240, "the bench's PostgreSQL and nodes")
        process.send_signal(stop)
        status = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        left = _processes_naming(workdir)
        for pid in left:  # not to leave them running for the rest of the suite
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, left
    assert status == 128 + stop, output.read_text()[-3000:]
    # It says why it stopped, and that it stopped what it started.
    assert f"bench feed stopped by {stop.name}; every process it started has stopped" in (
        output.read_text()
    )
