"""Notifiers: a real HTTP gateway on 127.0.0.1 (retries on 503 and 429, none on 400), the outbox
file, the message text, and the send-then-acknowledge loop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import GatewayUnavailableError, NotificationRefusedError
from adapters.notifiers import (
    Notification,
    OutboxFileNotifier,
    WebhookNotifier,
    WebhookRetry,
    notification_for,
    notification_text,
    run_notifications,
)
from certfed.v1 import desk_pb2
from cli.bench.webhook_gateway import WebhookGateway
from federation.errors import InvalidInputError
from tests.helpers.reminders import Reminders, reminder

FAST = WebhookRetry(attempts=4, initial_s=0.01, max_backoff_s=0.05, jitter_s=0.01, max_delay_s=10)
RESIDENT_NUMBER = "44060019500101001X"


@pytest.fixture
def gateway() -> Iterator[WebhookGateway]:
    with WebhookGateway() as running:
        # A gateway token in the URL, which no message may repeat.
        running.url += "?token=secret"
        yield running


def notification(reminder_id: str = "r-1") -> Notification:
    return Notification(
        reminder_id=reminder_id,
        kind="due",
        to="13800138000",
        office="Foshan office",
        valid_until=date(2025, 9, 30),
        text=notification_text("due", "Foshan office", date(2025, 9, 30)),
    )


def test_the_webhook_posts_json_with_an_idempotency_key(gateway: WebhookGateway) -> None:
    WebhookNotifier(gateway.url, retry=FAST).send(notification())
    ((headers, body),) = gateway.requests
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Idempotency-Key"] == "r-1"
    assert body["to"] == "13800138000"
    assert body["reminder_id"] == "r-1"
    assert body["valid_until"] == "2025-09-30"
    assert "Foshan office" in str(body["text"])


def test_the_webhook_retries_503_and_429_until_the_gateway_accepts(gateway: WebhookGateway) -> None:
    gateway.statuses = [503, 429, 502]
    WebhookNotifier(gateway.url, retry=FAST).send(notification())
    assert len(gateway.requests) == 4
    assert {headers["Idempotency-Key"] for headers, _ in gateway.requests} == {"r-1"}


def test_the_webhook_does_not_retry_a_400(gateway: WebhookGateway) -> None:
    gateway.statuses = [400, 200]
    with pytest.raises(NotificationRefusedError, match="HTTP 400") as caught:
        WebhookNotifier(gateway.url, retry=FAST).send(notification())
    assert len(gateway.requests) == 1
    assert "secret" not in str(caught.value)


def test_the_webhook_gives_up_after_the_bounded_attempts(gateway: WebhookGateway) -> None:
    gateway.statuses = [503] * 10
    with pytest.raises(GatewayUnavailableError, match="after 4 attempts") as caught:
        WebhookNotifier(gateway.url, retry=FAST).send(notification())
    assert len(gateway.requests) == 4
    assert "HTTP 503" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_gateway_that_is_not_listening_is_retried_then_unavailable() -> None:
    with WebhookGateway() as stopped:
        url = stopped.url
    with pytest.raises(GatewayUnavailableError, match="no answer"):
        WebhookNotifier(url, retry=FAST, timeout_s=2).send(notification())


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(InvalidInputError, match="webhook"):
        WebhookNotifier("file:///etc/passwd")


@pytest.mark.parametrize(
    "url", ["http://sms.example.org/send", "http://10.1.2.3/send", "http://127.0.0.1.nip.io/x"]
)
def test_a_webhook_off_this_machine_must_be_https(url: str) -> None:
    with pytest.raises(InvalidInputError, match="https"):
        WebhookNotifier(url)


@pytest.mark.parametrize(
    "url", ["https://sms.example.org/send", "http://localhost:8080/x", "http://[::1]:80/x"]
)
def test_https_anywhere_and_plain_http_on_loopback_are_accepted(url: str) -> None:
    WebhookNotifier(url)


def test_the_outbox_file_appends_one_json_line_per_notification_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.jsonl"
    notifier = OutboxFileNotifier(path)
    notifier.send(notification("r-1"))
    notifier.send(notification("r-2"))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["reminder_id"] for line in lines] == ["r-1", "r-2"]
    assert json.loads(lines[0])["text"].startswith("【Foshan office】")
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_outbox_file_is_synced_by_flush_once_for_the_lines_written_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    notifier = OutboxFileNotifier(tmp_path / "outbox.jsonl")
    notifier.flush()
    assert synced == []
    notifier.send(notification("r-1"))
    notifier.send(notification("r-2"))
    assert synced == []
    notifier.flush()
    notifier.flush()
    assert len(synced) == 1


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (desk_pb2.REMINDER_KIND_DUE, "valid until 2025-09-30"),
        (desk_pb2.REMINDER_KIND_WARNING, "expired on 2025-09-30"),
        (desk_pb2.REMINDER_KIND_OVERDUE, "suspended"),
    ],
)
def test_the_text_names_the_office_and_date_never_the_identity(kind: int, words: str) -> None:
    message = notification_for(reminder("r", kind), "Foshan office")
    assert message.text.startswith("【Foshan office】")
    assert words in message.text
    assert "2025-09-30" in message.text
    assert RESIDENT_NUMBER not in message.text
    assert "b-1" not in message.text


def test_sent_reminders_are_acknowledged_and_unsendable_ones_stay(gateway: WebhookGateway) -> None:
    gateway.statuses = [200, 400]
    source = Reminders(
        [reminder("r-1"), reminder("r-2"), reminder("r-3", phone=""), reminder("r-4")]
    )
    summary = run_notifications(
        source, WebhookNotifier(gateway.url, retry=FAST), office="Foshan office", page_size=2
    )
    assert (summary.sent, summary.refused, summary.no_phone, summary.acknowledged) == (2, 1, 1, 2)
    assert source.acknowledged == [["r-1"], ["r-4"]]
    assert sorted(source.open) == ["r-2", "r-3"]
    assert summary.problems == ["127.0.0.1 refused reminder r-2 with HTTP 400"]


class FlushRecorder(OutboxFileNotifier):
    """The outbox file, noting in `events` each page flushed, beside the source's
    acknowledgements."""

    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.events = events

    def flush(self) -> None:
        super().flush()
        self.events.append("flush")


def test_a_page_is_flushed_before_it_is_acknowledged(tmp_path: Path) -> None:
    events: list[str] = []

    class Source(Reminders):
        def acknowledge(self, reminder_ids: Sequence[str]) -> int:
            events.append(f"acknowledge {','.join(reminder_ids)}")
            return super().acknowledge(reminder_ids)

    source = Source([reminder("r-1"), reminder("r-2"), reminder("r-3")])
    notifier = FlushRecorder(tmp_path / "outbox.jsonl", events)
    summary = run_notifications(source, notifier, office="Foshan office", page_size=2)
    assert summary.acknowledged == 3
    assert events == ["flush", "acknowledge r-1,r-2", "flush", "acknowledge r-3"]


def test_a_page_whose_file_cannot_be_synced_is_not_acknowledged(tmp_path: Path) -> None:
    class FullDisk(OutboxFileNotifier):
        def flush(self) -> None:
            raise OSError(28, "No space left on device")

    source = Reminders([reminder("r-1"), reminder("r-2")])
    with pytest.raises(OSError, match="No space"):
        run_notifications(source, FullDisk(tmp_path / "outbox.jsonl"), office="Foshan office")
    assert source.acknowledged == []
    assert sorted(source.open) == ["r-1", "r-2"]


def test_a_gateway_that_stays_down_stops_the_run_after_acknowledging_what_was_sent(
    gateway: WebhookGateway,
) -> None:
    gateway.statuses = [200] + [503] * 10
    source = Reminders([reminder("r-1"), reminder("r-2"), reminder("r-3")])
    with pytest.raises(GatewayUnavailableError):
        run_notifications(source, WebhookNotifier(gateway.url, retry=FAST), office="Foshan office")
    assert source.acknowledged == [["r-1"]]
    assert sorted(source.open) == ["r-2", "r-3"]


# Sending at a province's scale: several reminders with the gateway at once, over connections
# kept alive (and TLS), at a capped rate, through the office's proxy.


def test_reminders_are_sent_concurrently_never_more_than_asked(tmp_path: Path) -> None:
    source = Reminders([reminder(f"r-{i:02}") for i in range(24)])
    with WebhookGateway(latency_s=0.1) as gateway:
        summary = run_notifications(
            source,
            WebhookNotifier(gateway.url, retry=FAST),
            office="Foshan office",
            page_size=12,
            concurrency=4,
        )
    assert (summary.sent, summary.acknowledged) == (24, 24)
    assert gateway.stats.max_in_flight == 4
    assert sorted(gateway.stats.accepted) == [f"r-{i:02}" for i in range(24)]
    # Each page acknowledged once, in the page's order.
    assert source.acknowledged == [[f"r-{i:02}" for i in range(p, p + 12)] for p in (0, 12)]
    assert not source.open


def test_connections_are_kept_alive_over_verified_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookGateway(tls_dir=tmp_path / "tls") as gateway:
        assert gateway.url.startswith("https://")
        assert gateway.certificate is not None
        # The machine's trust store, as an office adds its gateway's CA to it.
        monkeypatch.setenv("SSL_CERT_FILE", str(gateway.certificate))
        notifier = WebhookNotifier(gateway.url, retry=FAST)
        source = Reminders([reminder(f"r-{i}") for i in range(30)])
        summary = run_notifications(source, notifier, office="Foshan office", concurrency=3)
    assert summary.acknowledged == 30
    # Thirty reminders over at most three connections (one per sending thread), not thirty.
    assert 1 <= gateway.stats.connections <= 3
    assert gateway.stats.requests == 30


def test_a_gateway_whose_certificate_is_not_trusted_is_never_sent_to(tmp_path: Path) -> None:
    with WebhookGateway(tls_dir=tmp_path / "tls") as gateway:
        source = Reminders([reminder("r-1"), reminder("r-2")])
        with pytest.raises(GatewayUnavailableError, match="TLS failed"):
            run_notifications(
                source, WebhookNotifier(gateway.url, retry=FAST), office="Foshan office"
            )
    assert gateway.stats.requests == 0
    assert source.acknowledged == []


def test_a_refusal_among_concurrent_sends_leaves_only_that_reminder() -> None:
    source = Reminders([reminder(f"r-{i}") for i in range(8)])
    with WebhookGateway(latency_s=0.02) as gateway:
        gateway.answers = {"r-5": [400]}
        summary = run_notifications(
            source, WebhookNotifier(gateway.url, retry=FAST), office="Foshan office", concurrency=4
        )
    assert (summary.sent, summary.refused, summary.acknowledged) == (7, 1, 7)
    assert summary.problems == ["127.0.0.1 refused reminder r-5 with HTTP 400"]
    assert list(source.open) == ["r-5"]


def test_a_gateway_down_under_concurrent_sends_stops_the_run_keeping_what_was_sent() -> None:
    everyone = [f"r-{i:03}" for i in range(200)]
    source = Reminders([reminder(r) for r in everyone])
    with WebhookGateway(latency_s=0.05) as gateway:
        gateway.answers = {"r-000": [503] * 10}
        with pytest.raises(GatewayUnavailableError, match="r-000"):
            run_notifications(
                source,
                WebhookNotifier(gateway.url, retry=FAST),
                office="Foshan office",
                page_size=200,
                concurrency=4,
            )
    acknowledged = [r for page in source.acknowledged for r in page]
    # What the gateway took is acknowledged, nothing else; r-000 and what was never tried stay.
    assert sorted(acknowledged) == sorted(gateway.stats.accepted)
    assert "r-000" in source.open
    assert sorted(acknowledged + list(source.open)) == everyone
    # The run stopped once r-000 had failed four times (some 0.3 s, while three threads sent
    # about 60): the rest of the page was never tried.
    assert gateway.stats.requests < 150


def test_the_rate_cap_spaces_the_sends_whatever_the_concurrency() -> None:
    source = Reminders([reminder(f"r-{i}") for i in range(11)])
    with WebhookGateway() as gateway:
        run_notifications(
            source,
            WebhookNotifier(gateway.url, retry=FAST),
            office="Foshan office",
            concurrency=8,
            max_per_second=50,
        )
    arrivals = sorted(moment for moment, _ in gateway.stats.arrivals)
    assert len(arrivals) == 11
    # Eleven starts at 50 a second span at least ten intervals of 20 ms.
    assert arrivals[-1] - arrivals[0] >= 0.19


@pytest.mark.parametrize(
    ("option", "value"),
    [("concurrency", 0), ("concurrency", 65), ("max_per_second", 0), ("max_per_second", 10_001)],
)
def test_concurrency_and_rate_are_bounded(option: str, value: float, tmp_path: Path) -> None:
    source = Reminders([reminder("r-1")])
    options: dict[str, Any] = {option: value}
    with pytest.raises(InvalidInputError, match=option):
        run_notifications(
            source, OutboxFileNotifier(tmp_path / "outbox"), office="Foshan office", **options
        )
    assert not (tmp_path / "outbox").exists()
    assert not source.acknowledged


def test_the_office_proxy_carries_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on the gateway's port: only the proxy can take the reminder.
    with WebhookGateway() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.removesuffix("/sms/send"))
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        WebhookNotifier("http://127.0.0.1:9/sms/send", retry=FAST).send(notification("r-1"))
    assert proxy.stats.accepted == ["r-1"]
