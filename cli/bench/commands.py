"""`certfed bench sync|assist|cycle|feed|issue|notify|roll|recovery|web`: each benchmark, its
figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.feeds import DEFAULT_BATCH_SIZE
from adapters.gateway_http import DEFAULT_CONCURRENCY as GATEWAY_CONCURRENCY
from adapters.roll import DEFAULT_BATCH_SIZE as ROLL_BATCH_SIZE
from cli.arguments import batch_size, gateway_concurrency, positive_int
from cli.bench.assist import bench_assist
from cli.bench.cycle import bench_cycle
from cli.bench.feed import bench_feed
from cli.bench.issue import DEFAULT_BATCH as ISSUE_BATCH
from cli.bench.issue import bench_issue
from cli.bench.kit import figures_json, figures_table, print_figures
from cli.bench.notify import bench_notify
from cli.bench.recovery import bench_recovery
from cli.bench.roll import bench_roll
from cli.bench.sync import bench_sync
from cli.bench.web import bench_web
from cli.launcher import stopping_on_signals
from cli.output import console
from cli.sync_commands import progress_bar


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _bench_sync(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else None
    if args.json:
        figures = bench_sync(args.entries, naive_sample=args.naive_sample, workdir=workdir)
        print(figures_json(figures))
        return 0
    with progress_bar() as bar:
        task = bar.add_task("sign and log attestations (setup)", total=args.entries)

        def advance(_phase: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        figures = bench_sync(
            args.entries, naive_sample=args.naive_sample, workdir=workdir, progress=advance
        )
    console.print(
        figures_table(
            f"bulk sync of {figures.entries:,} attestations (PostgreSQL: {figures.database})",
            [
                ("end to end (fetched, verified, persisted)", f"{figures.seconds:.2f} s"),
                ("entries/s", f"{figures.entries_per_s:,.0f}"),
                ("peak RSS, issuing node process", f"{figures.issuer_peak_rss_mb:.0f} MiB"),
                ("peak RSS, syncing process", f"{figures.syncer_peak_rss_mb:.0f} MiB"),
                (
                    f"naive baseline ({figures.naive_entries:,} entries)",
                    f"{figures.naive_entries_per_s:,.0f} entries/s",
                ),
                (
                    "naive time in calls / signature checks / insert+commit",
                    f"{figures.naive_call_s:.1f} / {figures.naive_verify_s:.1f} / "
                    f"{figures.naive_store_s:.1f} s",
                ),
                ("bulk / naive", f"{figures.speedup:.1f}x"),
                ("signing and logging (setup, not timed above)", f"{figures.signing_seconds} s"),
            ],
        )
    )
    return 0


def _bench_assist(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else None
    # Open loop: the clerks' screens refresh every 25 ms, not 5, so that at a modest rate the
    # listings, never idle while a round trip waits, do not outweigh the round trips.
    open_loop = args.rate is not None
    requests = max(1, round(args.rate * args.duration)) if open_loop else args.requests
    figures = bench_assist(
        args.concurrency,
        requests,
        rate=args.rate,
        interval_s=(args.refresh_ms or (25 if open_loop else 5)) / 1000,
        floor_calls=args.floor_calls,
        workdir=workdir,
    )
    # Figures are printed whatever happened; round trips that failed make the exit status 1.
    outcome = 1 if figures.failed else 0
    if args.json:
        print(figures_json(figures))
        return outcome
    by_process = ", ".join(f"{name} {ms:.1f}" for name, ms in figures.cpu_ms_by_process.items())
    how = (
        f"arriving at {figures.offered_per_s:g}/s (open loop)"
        if open_loop
        else f"at concurrency {figures.concurrency}"
    )
    console.print(
        figures_table(
            f"assistance round trips: {figures.requests:,} {how} (PostgreSQL: {figures.database})",
            [
                ("completed", f"{figures.completed:,} in {figures.seconds:.2f} s"),
                ("failed", f"{figures.failed:,} {figures.first_failure}".strip()),
                ("round trips/s", f"{figures.round_trips_per_s:,.1f}"),
                ("p50", f"{figures.p50_ms:.1f} ms"),
                ("p95", f"{figures.p95_ms:.1f} ms"),
                ("p99", f"{figures.p99_ms:.1f} ms"),
                ("max", f"{figures.max_ms:.1f} ms"),
                (
                    "desk call p99 (request, record, approve, look-up)",
                    f"{figures.desk_call_p99_ms:.1f} ms",
                ),
                ("CPU per round trip, all processes", f"{figures.cpu_ms_per_round_trip:.1f} ms"),
                ("CPU per round trip by process (ms)", by_process),
                ("desk calls per round trip", f"{figures.desk_calls_per_round_trip:.1f}"),
                (
                    "floor: WhoAmI calls/s, CPU per call",
                    f"{figures.floor_calls_per_s:,.0f}/s, {figures.floor_cpu_ms_per_call:.2f} ms",
                ),
                ("round trip CPU / floor call CPU", f"{figures.floor_calls_per_round_trip:.1f}x"),
                (
                    "round trips/s the cores allow at this CPU cost",
                    f"{figures.cpu_bound_round_trips_per_s:,.0f}",
                ),
                ("peak RSS, benchmark process", f"{figures.peak_rss_mib:,.0f} MiB"),
            ],
        )
    )
    return outcome


def _bench_feed(args: argparse.Namespace) -> int:
    figures = bench_feed(
        rows=args.rows,
        beneficiaries=args.beneficiaries,
        batch_size=args.batch_size,
        baseline_rows=args.baseline_rows,
        sqlite=args.sqlite,
        workdir=Path(args.workdir) if args.workdir else None,
        console=console,
        show_progress=not args.json,
    )
    print_figures(
        figures,
        as_json=args.json,
        title=f"feed import of {figures.rows:,} rows against a real node ({figures.database})",
        rows=figures.as_rows(),
        console=console,
    )
    return 0


def _bench_issue(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else None
    if args.json:
        figures = bench_issue(
            attestations=args.attestations,
            batch_size=args.batch_size,
            baseline_attestations=args.baseline_attestations,
            sqlite=args.sqlite,
            workdir=workdir,
        )
    else:
        with progress_bar() as bar:
            task = bar.add_task("issue attestations in batches", total=args.attestations)
            figures = bench_issue(
                attestations=args.attestations,
                batch_size=args.batch_size,
                baseline_attestations=args.baseline_attestations,
                sqlite=args.sqlite,
                workdir=workdir,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    print_figures(
        figures,
        as_json=args.json,
        title=f"issuing {figures.attestations:,} attestations ({figures.database})",
        rows=figures.as_rows(),
        console=console,
    )
    return 0


def _bench_recovery(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else None
    figures = bench_recovery(args.trials, seed=args.seed, workdir=workdir)
    if args.json:
        print(figures_json(figures))
        return 0
    kills = ", ".join(f"{name} {count}" for name, count in sorted(figures.kills.items()))
    console.print(
        figures_table(
            f"crash recovery: {figures.trials} trials, SIGKILL and restart after 0-3 s",
            [
                ("messages waiting at restart", f"{figures.samples}"),
                ("healthy -> delivered, p50", f"{figures.p50_s:.2f} s"),
                ("healthy -> delivered, p90", f"{figures.p90_s:.2f} s"),
                ("healthy -> delivered, max", f"{figures.max_s:.2f} s"),
                ("lost / duplicated", f"{figures.lost} / {figures.duplicated}"),
                ("processes killed", kills),
                ("wall time", f"{figures.seconds:.0f} s"),
            ],
        )
    )
    return 0


def _bench_cycle(args: argparse.Namespace) -> int:
    figures = bench_cycle(
        beneficiaries=args.beneficiaries,
        baseline_beneficiaries=args.baseline_beneficiaries,
        workdir=Path(args.workdir) if args.workdir else None,
        console=console,
        show_progress=not args.json,
    )
    print_figures(
        figures,
        as_json=args.json,
        title=f"the daily cycle over {figures.beneficiaries:,} people ({figures.database})",
        rows=figures.as_rows(),
        console=console,
    )
    return 0


def _bench_notify(args: argparse.Namespace) -> int:
    figures = bench_notify(
        beneficiaries=args.beneficiaries,
        baseline_reminders=args.baseline_reminders,
        concurrency=args.concurrency,
        latency_ms=args.latency_ms,
        workdir=Path(args.workdir) if args.workdir else None,
        console=console,
        show_progress=not args.json,
    )
    print_figures(
        figures,
        as_json=args.json,
        title=f"a day's {figures.reminders + figures.baseline_reminders:,} reminders through "
        "an SMS gateway",
        rows=figures.as_rows(),
        console=console,
    )
    return 0


def _bench_roll(args: argparse.Namespace) -> int:
    figures = bench_roll(
        rows=args.rows,
        batch_size=args.batch_size,
        workdir=Path(args.workdir) if args.workdir else None,
        console=console,
        show_progress=not args.json,
    )
    if args.json:
        print(figures_json(figures))
        return 0
    title = f"roll import of {figures.rows:,} rows into a real node"
    console.print(figures_table(title, figures.as_rows()))
    return 0


def _bench_web(args: argparse.Namespace) -> int:
    figures = bench_web(
        beneficiaries=args.beneficiaries,
        requests=args.requests,
        rounds=args.rounds,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    if args.json:
        print(figures_json(figures))
        return 0
    title = (
        f"web desk pages for an office of {figures.beneficiaries:,} beneficiaries "
        f"and {figures.requests:,} inbound requests"
    )
    console.print(figures_table(title, figures.as_rows()))
    return 0


def add_bench_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks on real processes; print figures")
    kinds = parser.add_subparsers(dest="bench", required=True)
    sync = kinds.add_parser("sync", help="bulk log sync between two nodes vs the naive baseline")
    sync.add_argument("--entries", type=int, default=100_000, help="attestations to sync")
    sync.add_argument(
        "--naive-sample",
        type=int,
        default=2_000,
        help="attestations the naive baseline handles (its rate is per attestation)",
    )
    sync.add_argument("--workdir", help="keep the federation and database in this directory")
    sync.add_argument("--json", action="store_true", help="print the figures as JSON")
    sync.set_defaults(handler=_bench_sync)
    assist = kinds.add_parser(
        "assist",
        help="assistance round trips: request delivered, certified, attestation applied",
    )
    assist.add_argument(
        "--concurrency",
        type=positive_int,
        default=50,
        help="round trips at once (open loop: crews of clerks on duty); floor calls at once",
    )
    assist.add_argument("--requests", type=positive_int, default=1_000, help="round trips in all")
    assist.add_argument(
        "--rate",
        type=_positive_float,
        help="open loop: requests arriving per second whatever the answers (then --duration)",
    )
    assist.add_argument(
        "--duration", type=_positive_float, default=60.0, help="open loop: seconds of arrivals"
    )
    assist.add_argument(
        "--refresh-ms",
        type=positive_int,
        help="clerks' screens refresh interval (default 5 ms, open loop 25 ms)",
    )
    assist.add_argument(
        "--floor-calls", type=positive_int, default=2_000, help="WhoAmI calls measuring the floor"
    )
    assist.add_argument("--workdir", help="keep the federation and database in this directory")
    assist.add_argument("--json", action="store_true", help="print the figures as JSON")
    assist.set_defaults(handler=_bench_assist)
    recovery = kinds.add_parser(
        "recovery",
        help="crash trials: kill a node or the registry mid round trip; healthy -> delivered",
    )
    recovery.add_argument("--trials", type=int, default=30, help="crash trials to run")
    recovery.add_argument("--seed", type=int, help="seed of the random kill points")
    recovery.add_argument("--workdir", help="keep the federation in this directory")
    recovery.add_argument("--json", action="store_true", help="print the figures as JSON")
    recovery.set_defaults(handler=_bench_recovery)
    feed = kinds.add_parser(
        "feed", help="feed import rows/s against a real node, vs one row at a time"
    )
    feed.add_argument("--rows", type=positive_int, default=100_000)
    feed.add_argument(
        "--beneficiaries",
        type=positive_int,
        default=50_000,
        help="registered people (the file is about twice as many)",
    )
    feed.add_argument("--batch-size", type=batch_size, default=DEFAULT_BATCH_SIZE)
    feed.add_argument(
        "--baseline-rows",
        type=positive_int,
        default=10_000,
        help="rows the one-at-a-time baseline imports (its rate is per row)",
    )
    feed.add_argument("--sqlite", action="store_true", help="SQLite databases (default PostgreSQL)")
    feed.add_argument("--workdir", help="keep the federation in this directory")
    feed.add_argument("--json", action="store_true", help="print the figures as JSON")
    feed.set_defaults(handler=_bench_feed)
    issue = kinds.add_parser(
        "issue",
        help="attestations issued through the node's issuing path in batches, vs one at a time",
    )
    issue.add_argument("--attestations", type=positive_int, default=100_000)
    issue.add_argument(
        "--batch-size",
        type=positive_int,
        default=ISSUE_BATCH,
        help=f"attestations per transaction (default {ISSUE_BATCH:,})",
    )
    issue.add_argument(
        "--baseline-attestations",
        type=positive_int,
        default=2_000,
        help="attestations the one-at-a-time baseline issues (its rate is per attestation)",
    )
    issue.add_argument("--sqlite", action="store_true", help="SQLite (default PostgreSQL)")
    issue.add_argument("--workdir", help="keep the federation and database in this directory")
    issue.add_argument("--json", action="store_true", help="print the figures as JSON")
    issue.set_defaults(handler=_bench_issue)
    cycle = kinds.add_parser(
        "cycle", help="the daily cycle over a roll of N people on PostgreSQL, vs row by row"
    )
    cycle.add_argument(
        "--beneficiaries", type=positive_int, default=100_000, help="people on the roll"
    )
    cycle.add_argument(
        "--baseline-beneficiaries",
        type=positive_int,
        default=10_000,
        help="people the row-by-row baseline's roll holds (its rate is per person)",
    )
    cycle.add_argument("--workdir", help="keep the federation and database in this directory")
    cycle.add_argument("--json", action="store_true", help="print the figures as JSON")
    cycle.set_defaults(handler=_bench_cycle)
    notify = kinds.add_parser(
        "notify", help="a day's reminders through an HTTPS gateway, N at once vs one at a time"
    )
    notify.add_argument(
        "--beneficiaries",
        type=positive_int,
        default=20_000,
        help="people on the roll (the day reminds about half of them)",
    )
    notify.add_argument(
        "--baseline-reminders",
        type=positive_int,
        default=300,
        help="reminders sent one at a time first (the baseline)",
    )
    notify.add_argument(
        "--concurrency",
        type=gateway_concurrency,
        default=GATEWAY_CONCURRENCY,
        help=f"reminders with the gateway at once (default {GATEWAY_CONCURRENCY})",
    )
    notify.add_argument(
        "--latency-ms",
        type=_positive_float,
        default=20.0,
        help="how long the gateway takes to answer (the network and the gateway)",
    )
    notify.add_argument("--workdir", help="keep the federation and database in this directory")
    notify.add_argument("--json", action="store_true", help="print the figures as JSON")
    notify.set_defaults(handler=_bench_notify)
    roll = kinds.add_parser("roll", help="roll import rows/s into a real node on PostgreSQL")
    roll.add_argument("--rows", type=positive_int, default=100_000, help="people on the roll")
    roll.add_argument(
        "--batch-size",
        type=batch_size,
        default=ROLL_BATCH_SIZE,
        help=f"rows per UpsertBeneficiaries call (default {ROLL_BATCH_SIZE:,})",
    )
    roll.add_argument("--workdir", help="keep the federation and database in this directory")
    roll.add_argument("--json", action="store_true", help="print the figures as JSON")
    roll.set_defaults(handler=_bench_roll)
    web = kinds.add_parser(
        "web", help="web desk page times (p50, p95) for an office of N people, signed in"
    )
    web.add_argument(
        "--beneficiaries", type=positive_int, default=10_000, help="people the office pays"
    )
    web.add_argument(
        "--requests", type=int, default=100, help="assistance requests in the office's inbox"
    )
    web.add_argument("--rounds", type=positive_int, default=30, help="fetches of each page")
    web.add_argument("--workdir", help="keep the federation and database in this directory")
    web.add_argument("--json", action="store_true", help="print the figures as JSON")
    web.set_defaults(handler=_bench_web)
    for kind in kinds.choices.values():
        kind.set_defaults(handler=_stopping_its_processes(kind.get_default("handler")))


def _stopping_its_processes(
    bench: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A benchmark stopped with SIGTERM or SIGHUP stops the federation and database it started."""

    def run(args: argparse.Namespace) -> int:
        with stopping_on_signals(f"bench {args.bench}"):
            return bench(args)

    return run
