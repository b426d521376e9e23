"""Notifiers: reminders and overdue notices to retirees, through an SMS or messaging gateway.

Four ways out, each a `Notifier`: a JSON webhook to the office's own gateway, an outbox file,
Alibaba Cloud SMS (the SendSms API of dysmsapi, version 2017-05-25, RPC-style requests signed
with HMAC-SHA1 signature version 1.0), and WeChat template messages (the Official Account's
`POST /cgi-bin/message/template/send`, with an access_token from `/cgi-bin/token`, fetched
again when WeChat answers 40001 or 42001). All retry what a later attempt may change (HTTP 429
and 5xx, no answer, the gateway's own "busy" and rate-limit codes) with bounded backoff, and
refuse at once what it cannot (a bad number, an unknown template, an unfollowed account).

`run_notifications` lists the node's unacknowledged reminders, sends each through a `Notifier`,
and acknowledges only the ones that were sent. Delivery is at least once: a crash after a send
and before its acknowledgement sends that reminder again on the next run; nothing is ever
acknowledged unsent. Each notification carries the reminder id (the webhook's Idempotency-Key
header) so a gateway that deduplicates can drop the repeat.

A notification's text names the office and the date the certification is or was due, and
nothing that identifies the person: no identity number, no name. The phone number is only the
destination.
"""

# Chinese text uses full-width commas and semicolons, which are correct there, not typos.
# ruff: noqa: RUF001

from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from adapters.errors import (
    GatewayUnavailableError,
    NotificationRefusedError,
    RetryableGatewayError,
)
from adapters.gateway_http import MAX_CONNECTIONS, MAX_PER_SECOND, GatewayAnswer, GatewayHttp
from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.timestamps import optional_datetime

KINDS = {
    desk_pb2.REMINDER_KIND_DUE: "due",
    desk_pb2.REMINDER_KIND_WARNING: "warning",
    desk_pb2.REMINDER_KIND_OVERDUE: "overdue",
}
# HTTP statuses a later attempt may change: rate limiting and server-side failures.
_RETRYABLE_STATUS = 429


@dataclass(frozen=True)
class Notification:
    reminder_id: str
    kind: str
    to: str
    office: str
    valid_until: date | None
    text: str

    def as_json(self) -> dict[str, str | None]:
        data = asdict(self)
        data["valid_until"] = self.valid_until.isoformat() if self.valid_until else None
        return data


def notification_text(kind: str, office: str, valid_until: date | None) -> str:
    """The message in Chinese and English; it names the office and the date, never the person."""
    when = valid_until.isoformat() if valid_until else None
    if kind == "due":
        chinese = (
            f"您的养老金领取资格认证有效期至{when}，请在此之前完成认证。"
            if when
            else "您的养老金领取资格认证已到期，请尽快完成认证。"
        )
        english = (
            f"Your pension entitlement certification is valid until {when}; please certify "
            "before then."
            if when
            else "Your pension entitlement certification is due; please certify soon."
        )
    elif kind == "warning":
        chinese = (
            f"您的养老金领取资格认证已于{when or '近期'}到期，"
            "请尽快完成认证，逾期将暂停发放养老金。"
        )
        english = (
            f"Your pension entitlement certification expired{' on ' + when if when else ''}; "
            "certify now, or payment will be suspended."
        )
    elif kind == "overdue":
        chinese = "因未按期完成资格认证，您的养老金已暂停发放；完成认证后次月恢复发放并补发。"
        english = (
            "Your pension is suspended because certification was not completed"
            f"{' by ' + when if when else ''}; certify, and payment resumes the next month "
            "with back pay."
        )
    else:
        raise InvalidInputError("kind", f"unknown reminder kind {kind!r}")
    how = "可使用手机App人脸识别或到社保经办机构办理。"
    how_en = "Use face recognition in the app or visit a social-insurance counter."
    return f"【{office}】{chinese}{how} {english} {how_en}"


def notification_for(reminder: desk_pb2.Reminder, office: str) -> Notification:
    kind = KINDS.get(reminder.kind)
    if kind is None:
        raise InvalidInputError("kind", f"reminder {reminder.reminder_id} has no known kind")
    moment = optional_datetime(reminder, "valid_until")
    valid_until = moment.date() if moment else None
    return Notification(
        reminder_id=reminder.reminder_id,
        kind=kind,
        to=reminder.phone,
        office=office,
        valid_until=valid_until,
        text=notification_text(kind, office, valid_until),
    )


class Notifier(Protocol):
    """Sends one notification; raises NotificationRefusedError or GatewayUnavailableError.

    `flush` makes every notification sent so far final; `run_notifications` calls it before
    acknowledging them. A gateway's answer already is final, so its notifiers inherit this
    class's `flush`, which does nothing; a notifier that buffers (the outbox file) overrides it.
    """

    def send(self, notification: Notification) -> None: ...

    def flush(self) -> None:
        return None


@dataclass(frozen=True)
class WebhookRetry:
    """Bounded retries: exponential backoff with jitter, at most `attempts` and `max_delay_s`."""

    attempts: int = 5
    initial_s: float = 0.5
    max_backoff_s: float = 10.0
    jitter_s: float = 0.5
    max_delay_s: float = 60.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_gateway_url(url: str, setting: str) -> SplitResult:
    """An https:// URL, or plain http to this machine, or InvalidInputError naming `setting`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(setting, "must be an https:// URL")
    # Reminders carry phone numbers: they leave the machine only over TLS. Plain http is for a
    # gateway on this machine (a local relay, or a test server).
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise InvalidInputError(
            setting, "must be an https:// URL (plain http only to localhost / 127.0.0.1)"
        )
    return parts


class WebhookNotifier(Notifier):
    """A JSON POST per notification to an SMS or messaging gateway.

    2xx is sent. 429, 5xx, timeouts and refused connections are retried with backoff; any other
    4xx is refused at once (a retry cannot fix a request the gateway rejects).
    """

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, retry: WebhookRetry | None = None
    ) -> None:
        parts = require_gateway_url(url, "webhook")
        self._url = url
        # For messages: the URL may carry a gateway token in its path or query.
        self._host = parts.hostname or "the gateway"
        self._http = GatewayHttp(url, timeout_s=timeout_s)
        self._retry = retry or WebhookRetry()

    def send(self, notification: Notification) -> None:
        send_with_retries(self._retry, self._host, notification, self._post)

    def _post(self, notification: Notification) -> None:
        body = json.dumps(notification.as_json(), ensure_ascii=False).encode("utf-8")
        answer = self._http.request(
            "POST",
            self._url,
            body=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Idempotency-Key": notification.reminder_id,
            },
        )
        require_success(answer, self._host, notification.reminder_id)


def require_success(answer: GatewayAnswer, host: str, reminder_id: str) -> None:
    """Nothing for a 2xx. HTTP 429 and 5xx are RetryableGatewayError; any other status is
    NotificationRefusedError naming the gateway's code, if its JSON body gives one (no redirect
    is followed: a gateway that moved is the office's setting to fix)."""
    status = answer.status
    if status == _RETRYABLE_STATUS or status >= 500:
        raise RetryableGatewayError(f"HTTP {status}")
    if not 200 <= status < 300:
        raise NotificationRefusedError(
            f"{host} refused reminder {reminder_id} with HTTP {status}{_error_code(answer.data)}"
        )


def send_with_retries(
    retry: WebhookRetry,
    host: str,
    notification: Notification,
    send: Callable[[Notification], None],
) -> None:
    """`send(notification)`, retried on RetryableGatewayError with bounded backoff; a gateway that
    still fails after the last attempt is GatewayUnavailableError."""
    retrying = Retrying(
        retry=retry_if_exception_type(RetryableGatewayError),
        stop=stop_after_attempt(retry.attempts) | stop_after_delay(retry.max_delay_s),
        wait=wait_exponential_jitter(
            multiplier=retry.initial_s, max=retry.max_backoff_s, jitter=retry.jitter_s
        ),
        reraise=True,
    )
    try:
        retrying(send, notification)
    except RetryableGatewayError as error:
        raise GatewayUnavailableError(
            f"{host} did not accept reminder {notification.reminder_id} after "
            f"{retry.attempts} attempts (last: {error.what})"
        ) from None


def exchange_json(
    http: GatewayHttp,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str],
    host: str,
    reminder_id: str,
) -> dict[str, Any]:
    """Send a request through `http` and read the gateway's JSON answer (`require_success`; no
    answer, or one that is not a JSON object, is RetryableGatewayError)."""
    answer = http.request(method, url, body=body, headers=headers)
    require_success(answer, host, reminder_id)
    try:
        parsed = json.loads(answer.data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RetryableGatewayError("an answer that is not JSON") from None
    if not isinstance(parsed, dict):
        raise RetryableGatewayError("an answer that is not a JSON object")
    return parsed


def _error_code(data: bytes) -> str:
    """ " (Code: X)" from a gateway's JSON error body, or nothing."""
    try:
        answer = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    if not isinstance(answer, dict):
        return ""
    code = answer.get("Code", answer.get("errcode"))
    return f" (code {code})" if code is not None else ""


class OutboxFileNotifier(Notifier):
    """Appends each notification as one JSON line to a local file, fsynced by `flush` (so
    before the lines' reminders are acknowledged: once a page, not once a line).

    For offices whose SMS system picks up files, and as the record of what was sent. The file is
    created readable by its owner only: it holds phone numbers.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._unsynced = False

    def send(self, notification: Notification) -> None:
        record = {**notification.as_json(), "written_at": datetime.now(UTC).isoformat()}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # One write of the whole line: with O_APPEND, concurrent writers never interleave it.
            written = os.write(descriptor, line)
            if written != len(line):
                raise OSError(f"short write to {self._path.name}")
            self._unsynced = True
        finally:
            os.close(descriptor)

    def flush(self) -> None:
        """fsync the lines written since the last flush (fsync reaches the file's data whatever
        descriptor wrote it)."""
        if not self._unsynced:
            return
        descriptor = os.open(self._path, os.O_WRONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self._unsynced = False


class ReminderSource(Protocol):
    def pending(self, page_size: int) -> Sequence[desk_pb2.Reminder]: ...

    def acknowledge(self, reminder_ids: Sequence[str]) -> int: ...


class DeskReminders:
    """ListReminders and AcknowledgeReminders on a node's DeskService (an admin's token)."""

    def __init__(self, desk: DeskClient) -> None:
        self._desk = desk

    def pending(self, page_size: int) -> Sequence[desk_pb2.Reminder]:
        found: Sequence[desk_pb2.Reminder] = self._desk.stub.ListReminders(
            desk_pb2.ListRemindersRequest(page_size=page_size)
        ).reminders
        return found

    def acknowledge(self, reminder_ids: Sequence[str]) -> int:
        answer = self._desk.stub.AcknowledgeReminders(
            desk_pb2.AcknowledgeRemindersRequest(reminder_ids=reminder_ids)
        )
        acknowledged: int = answer.acknowledged
        return acknowledged


@dataclass
class NotifySummary:
    sent: int = 0
    refused: int = 0
    no_phone: int = 0
    acknowledged: int = 0
    # Why reminders were refused: reminder id, gateway host and HTTP status, nothing personal.
    problems: list[str] = field(default_factory=list)


class Pace:
    """At most `per_second` sends started a second, shared by every thread that sends (a
    gateway's contract often caps its calls a second); `None` for no cap."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class _Page:
    """A page's notifications sent, `concurrency` at a time, until one fails for good."""

    def __init__(self, notifier: Notifier, pace: Pace, pool: ThreadPoolExecutor | None) -> None:
        self._notifier = notifier
        self._pace = pace
        self._pool = pool
        self._stop = threading.Event()
        # The first failure that stopped the run (the gateway down, a full disk), if any.
        self.error: BaseException | None = None

    def _attempt(self, notification: Notification) -> str | None:
        """ "" once sent, the gateway's words if it refused, None if not tried (stopped)."""
        if self._stop.is_set():
            return None
        self._pace.wait()
        if self._stop.is_set():
            return None
        try:
            self._notifier.send(notification)
        except NotificationRefusedError as error:
            return str(error)
        except BaseException:
            self._stop.set()
            raise
        return ""

    def send(self, notifications: Sequence[Notification]) -> list[str | None]:
        """Each notification's outcome, in order (see `_attempt`)."""
        if self._pool is None:
            outcomes: list[str | None] = []
            for notification in notifications:
                try:
                    outcomes.append(self._attempt(notification))
                except BaseException as error:
                    self.error = error
                    break
            return outcomes + [None] * (len(notifications) - len(outcomes))
        futures = [self._pool.submit(self._attempt, n) for n in notifications]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except BaseException as error:
                self.error = self.error or error
                outcomes.append(None)
        return outcomes

    def stop(self) -> None:
        self._stop.set()


def run_notifications(
    source: ReminderSource,
    notifier: Notifier,
    *,
    office: str,
    page_size: int = 100,
    max_page_size: int = Limits().max_page_size,
    concurrency: int = 1,
    max_per_second: float | None = None,
) -> NotifySummary:
    """Send every pending reminder once and acknowledge the sent ones, page by page.

    Up to `concurrency` reminders are with the gateway at once (each notifier's connections are
    kept alive and shared), and no more than `max_per_second` are started a second. A reminder
    without a phone number, or one the gateway refuses, stays unacknowledged for the office to
    fix; a gateway that stays down stops the run after acknowledging what was sent.
    """
    if not 1 <= page_size <= max_page_size:
        raise InvalidInputError("page_size", f"must be between 1 and {max_page_size}")
    if not 1 <= concurrency <= MAX_CONNECTIONS:
        raise InvalidInputError("concurrency", f"must be between 1 and {MAX_CONNECTIONS}")
    if max_per_second is not None and not 0 < max_per_second <= MAX_PER_SECOND:
        raise InvalidInputError("max_per_second", f"must be above 0 and at most {MAX_PER_SECOND:,}")
    pool = ThreadPoolExecutor(concurrency, "notify") if concurrency > 1 else None
    sender = _Page(notifier, Pace(max_per_second), pool)
    try:
        return _send_pages(source, notifier, sender, office, page_size, max_page_size)
    finally:
        sender.stop()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _send_pages(
    source: ReminderSource,
    notifier: Notifier,
    sender: _Page,
    office: str,
    page_size: int,
    max_page_size: int,
) -> NotifySummary:
    summary = NotifySummary()
    seen: set[str] = set()
    held = 0
    while True:
        # Reminders left unacknowledged stay at the head of the list: ask for that many more,
        # so they never hide the ones behind them.
        page = source.pending(min(page_size + held, max_page_size))
        fresh = [r for r in page if r.reminder_id not in seen]
        if not fresh:
            return summary
        held += len(fresh)
        seen.update(r.reminder_id for r in fresh)
        summary.no_phone += sum(1 for r in fresh if not r.phone)
        notifications = [notification_for(r, office) for r in fresh if r.phone]
        sent: list[str] = []
        try:
            for notification, outcome in zip(
                notifications, sender.send(notifications), strict=True
            ):
                if outcome == "":
                    sent.append(notification.reminder_id)
                elif outcome is not None:
                    summary.refused += 1
                    summary.problems.append(outcome)
            summary.sent += len(sent)
            held -= len(sent)
        finally:
            if sent:
                # Nothing is acknowledged that a crash could still lose.
                notifier.flush()
                summary.acknowledged += source.acknowledge(sent)
        if sender.error is not None:
            raise sender.error
