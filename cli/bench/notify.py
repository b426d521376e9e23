"""`certfed bench notify`: a day's reminders sent through an SMS gateway elsewhere, on PostgreSQL.

Starts PostgreSQL (the server DATABASE_URL names, or one from `pgserver`), a registry and a paying
office as real processes, writes the office's roll with COPY and runs the day's cycle, which
queues a reminder for about half of the people (as `certfed bench cycle` does; not timed). Then
starts a stand-in gateway as a process of its own (`cli.bench.webhook_gateway`: HTTPS on
127.0.0.1, its certificate added to this process's trust store through SSL_CERT_FILE, each
answer after `latency_ms`, the round trip to a gateway in another city) and sends the reminders
as `certfed notify run --webhook` does: every page listed with the phone numbers opened, sent,
and acknowledged.

Timed: the first `baseline_reminders` one at a time (`--concurrency 1`, the baseline), then all
the others `concurrency` at a time. Prints reminders/s for both, the ratio, the connections the
gateway accepted and the most requests it had in flight, this process's CPU per reminder and
peak memory; asserts nothing about time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from adapters.gateway_http import GatewayHttp
from adapters.notifiers import (
    DeskReminders,
    ReminderSource,
    WebhookNotifier,
    run_notifications,
)
from certfed.v1 import desk_pb2
from cli.bench.cycle import OFFICE, measured_day, paying_office, run_cycle, seeded_office
from cli.bench.kit import Headline, cpu_ms_per
from federation.limits import Limits

# Seconds the gateway process has to start listening.
GATEWAY_START_S = 30.0


@dataclass(frozen=True)
class NotifyBenchFigures(Headline):
    beneficiaries: int
    database: str
    reminders: int
    baseline_reminders: int
    baseline_seconds: float
    concurrency: int
    latency_ms: float
    # What the gateway saw: connections it accepted, requests, the most at once.
    gateway_connections: int
    gateway_requests: int
    gateway_max_in_flight: int
    # CPU of this process (listing, opening nothing, HTTP, TLS) per reminder sent.
    sender_cpu_ms_per_reminder: float

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("gateway", f"HTTPS on 127.0.0.1, answering after {self.latency_ms:g} ms"),
            *self.headline_rows("reminders", f"one at a time, {self.baseline_reminders:,}"),
            ("reminders sent at once", f"{self.concurrency}"),
            ("reminders sent", f"{self.reminders:,} in {self.seconds:.2f} s"),
            ("baseline", f"{self.baseline_reminders:,} in {self.baseline_seconds:.2f} s"),
            (
                "gateway: connections / requests / most in flight",
                f"{self.gateway_connections:,} / {self.gateway_requests:,} / "
                f"{self.gateway_max_in_flight}",
            ),
            ("sender CPU per reminder", f"{self.sender_cpu_ms_per_reminder:.3f} ms"),
        ]


class _FirstOnly:
    """The first `count` reminders of `source`, and then none."""

    def __init__(self, source: ReminderSource, count: int) -> None:
        self._source = source
        self._left = count

    def pending(self, page_size: int) -> Sequence[desk_pb2.Reminder]:
        return self._source.pending(min(page_size, self._left)) if self._left else []

    def acknowledge(self, reminder_ids: Sequence[str]) -> int:
        acknowledged = self._source.acknowledge(reminder_ids)
        self._left -= len(reminder_ids)
        return acknowledged


@contextmanager
def _gateway(folder: Path, latency_ms: float) -> Iterator[str]:
    """The stand-in gateway as a process; yields its URL while this process trusts it."""
    url_file = folder / "gateway.url"
    command = [sys.executable, "-m", "cli.bench.webhook_gateway", "--port-file", str(url_file)]
    command += ["--tls-dir", str(folder / "gateway-tls"), "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command)
    trusted = os.environ.get("SSL_CERT_FILE")
    try:
        deadline = time.monotonic() + GATEWAY_START_S
        while not url_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-in gateway did not start")
            time.sleep(0.05)
        os.environ["SSL_CERT_FILE"] = str(folder / "gateway-tls" / "server.pem")
        yield url_file.read_text()
    finally:
        if trusted is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = trusted
        process.terminate()
        process.wait(timeout=30)


def _gateway_stats(url: str) -> dict[str, int]:
    """The gateway's counts over the whole run (the baseline's connections included)."""
    parts = urlsplit(url)
    answer = GatewayHttp(url, timeout_s=10).request(
        "GET", f"{parts.scheme}://{parts.netloc}/stats", headers={}
    )
    stats: dict[str, int] = json.loads(answer.data)
    return stats


def _send(desk_source: ReminderSource, url: str, concurrency: int) -> tuple[float, int]:
    """Every reminder `desk_source` offers sent and acknowledged; (seconds, sent)."""
    started = time.perf_counter()
    summary = run_notifications(
        desk_source,
        WebhookNotifier(url),
        office=OFFICE.display_name,
        page_size=Limits().max_page_size,
        concurrency=concurrency,
    )
    seconds = time.perf_counter() - started
    if summary.acknowledged != summary.sent or summary.refused or summary.no_phone:
        raise RuntimeError(f"reminders not all sent and acknowledged: {summary}")
    return seconds, summary.acknowledged


def bench_notify(
    *,
    beneficiaries: int,
    baseline_reminders: int,
    concurrency: int,
    latency_ms: float,
    workdir: Path | None,
    console: Console,
    show_progress: bool,
) -> NotifyBenchFigures:
    day = measured_day()
    with paying_office(workdir, "notify") as (folder, postgres, federation):
        if show_progress:
            console.print(f"writing {beneficiaries:,} people (COPY) and running the day's cycle")
        seeded_office(federation, OFFICE, beneficiaries, day)
        _, cycle = run_cycle(federation, OFFICE.node_id, day)
        if cycle.reminders_queued <= baseline_reminders:
            raise RuntimeError(
                f"the cycle queued {cycle.reminders_queued:,} reminders, not more than the "
                f"baseline's {baseline_reminders:,}: give more beneficiaries"
            )
        with _gateway(folder, latency_ms) as url, federation.desk(OFFICE.node_id, "admin") as desk:
            source = DeskReminders(desk)
            if show_progress:
                console.print(f"the baseline: {baseline_reminders:,} reminders one at a time")
            baseline_seconds, baseline_sent = _send(_FirstOnly(source, baseline_reminders), url, 1)
            if show_progress:
                console.print(f"the rest of the {cycle.reminders_queued:,}, {concurrency} at once")
            cpu_before = time.process_time()
            seconds, sent = _send(source, url, concurrency)
            cpu_s = time.process_time() - cpu_before
            stats = _gateway_stats(url)
        return NotifyBenchFigures(
            **Headline.measure(sent, seconds, baseline_sent, baseline_seconds),
            beneficiaries=beneficiaries,
            database=f"PostgreSQL ({postgres.source})",
            reminders=sent,
            baseline_reminders=baseline_sent,
            baseline_seconds=round(baseline_seconds, 3),
            concurrency=concurrency,
            latency_ms=latency_ms,
            gateway_connections=stats["connections"],
            gateway_requests=stats["requests"],
            gateway_max_in_flight=stats["max_in_flight"],
            sender_cpu_ms_per_reminder=cpu_ms_per(cpu_s, sent),
        )
