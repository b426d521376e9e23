"""Reminders as WeChat template messages (模板消息) from the office's Official Account, through
the documented API: `POST /cgi-bin/message/template/send?access_token=TOKEN` with a JSON body
{touser, template_id, url?, client_msg_id, data: {key: {value}}}, answered {errcode, errmsg,
msgid}; the access_token from `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`,
answered {access_token, expires_in}.

The token is kept until shortly before it expires, and fetched again at once when WeChat says
it is invalid or expired (errcode 40001, 40014, 42001), then the message is sent again; "system
busy" (-1) and the API's rate limit (45009) are retried with backoff; any other errcode (43004:
the person does not follow the account, 40003: unknown openid, 40037: unknown template) refuses
the reminder, which stays unacknowledged.

A reminder reaches WeChat only for a phone number the office's mini program or portal bound to
an openid (`recipients`, exported by the office: phone,openid); others are refused here, and a
`FirstOf` notifier can send them by SMS instead. `client_msg_id` is the reminder id, so WeChat
drops a repeat of a message it already sent (at-least-once delivery). The data is the office,
the date and a notice by kind: never the person's name or identity.
"""

# Chinese text uses full-width commas and semicolons, which are correct there, not typos.
# ruff: noqa: RUF001

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from adapters.errors import (
    GatewayUnavailableError,
    MappingError,
    NotificationRefusedError,
    RetryableGatewayError,
)
from adapters.gateway_http import GatewayHttp
from adapters.mapping_files import read_settings, read_text_beside, required_texts
from adapters.notifiers import (
    KINDS,
    Notification,
    Notifier,
    WebhookRetry,
    exchange_json,
    require_gateway_url,
    send_with_retries,
)

API_BASE = "https://api.weixin.qq.com"
# errcodes saying the access_token is invalid or expired: fetch another and send again.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# errcodes a later attempt may change: system busy, the API's rate limit.
RETRYABLE_ERRCODES = frozenset({-1, 45009})
# A token is fetched again this long before WeChat says it expires.
TOKEN_MARGIN_S = 300
NOTICES = {
    "due": "养老金领取资格认证即将到期，请及时完成认证",
    "warning": "养老金领取资格认证已到期，请尽快完成认证",
    "overdue": "因未按期认证，养老金已暂停发放；完成认证后恢复并补发",
}
# Our values to the template's data keys, when the office's template uses the classic ones.
DEFAULT_FIELDS = {"notice": "first", "office": "keyword1", "date": "keyword2"}


@dataclass(frozen=True)
class WeChatConfig:
    app_id: str
    app_secret: str
    # Reminder kind ("due", "warning", "overdue") to the template id.
    templates: Mapping[str, str]
    # Phone number to openid, as the office's mini program or portal bound them.
    recipients: Mapping[str, str]
    # Our values (notice, office, date) to the template's data keys.
    fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    # A page of the office's portal the message opens, if any.
    url: str = ""
    api_base: str = API_BASE
    retry: WebhookRetry = field(default_factory=WebhookRetry)


def load_wechat_config(path: Path) -> WeChatConfig:
    """`app_id`, `app_secret_file`, `recipients_file` (CSV phone,openid), `[templates]` with
    due / warning / overdue, optionally `[fields]`, `url` and `api_base`; files relative to
    this one."""
    name = path.name
    known = {
        "app_id",
        "app_secret_file",
        "recipients_file",
        "templates",
        "fields",
        "url",
        "api_base",
    }
    raw = read_settings(path, known, "a WeChat setting")
    texts = required_texts(raw, name, ("app_id", "app_secret_file", "recipients_file"))
    secret = read_text_beside(path, texts["app_secret_file"], "app_secret_file")
    templates = raw.get("templates")
    if not isinstance(templates, dict) or set(templates) != set(KINDS.values()):
        raise MappingError(
            f"{name}: templates", f"give a template id for each of {', '.join(KINDS.values())}"
        )
    fields = raw.get("fields", DEFAULT_FIELDS)
    if not isinstance(fields, dict) or set(fields) != set(DEFAULT_FIELDS):
        raise MappingError(
            f"{name}: fields", f"map each of {', '.join(DEFAULT_FIELDS)} to a template key"
        )
    api_base = str(raw.get("api_base", API_BASE)).rstrip("/")
    require_gateway_url(api_base, f"{name}: api_base")
    return WeChatConfig(
        app_id=texts["app_id"],
        app_secret=secret,
        templates={kind: str(value) for kind, value in templates.items()},
        recipients=read_recipients(path.parent / texts["recipients_file"]),
        fields={key: str(value) for key, value in fields.items()},
        url=str(raw.get("url", "")),
        api_base=api_base,
    )


def read_recipients(path: Path) -> dict[str, str]:
    """The office's export of bound accounts: a CSV with columns phone and openid."""
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            if not {"phone", "openid"} <= set(reader.fieldnames or ()):
                raise MappingError(path.name, "needs the columns phone and openid")
            return {
                row["phone"].strip(): row["openid"].strip()
                for row in reader
                if (row.get("phone") or "").strip() and (row.get("openid") or "").strip()
            }
    except OSError as error:
        raise MappingError(path.name, f"cannot be read ({error.strerror})") from None


class WeChatTemplateNotifier(Notifier):
    """A template message per notification, with the access_token kept and refreshed."""

    def __init__(self, config: WeChatConfig, *, timeout_s: float = 10.0) -> None:
        parts = require_gateway_url(config.api_base, "api_base")
        self._config = config
        self._host = parts.hostname or "WeChat"
        self._http = GatewayHttp(config.api_base, timeout_s=timeout_s)
        self._lock = threading.Lock()
        self._token = ""
        self._token_expires = 0.0
        # How many tokens were fetched (the first, and each refresh), for the office's log.
        self.tokens_fetched = 0

    def send(self, notification: Notification) -> None:
        openid = self._config.recipients.get(notification.to)
        if openid is None:
            raise NotificationRefusedError(
                f"reminder {notification.reminder_id}: the phone number is bound to no WeChat "
                "account of the office"
            )
        template = self._config.templates.get(notification.kind)
        if template is None:
            raise NotificationRefusedError(
                f"no WeChat template is configured for {notification.kind} reminders"
            )
        send_with_retries(
            self._config.retry,
            self._host,
            notification,
            lambda sent: self._send_once(sent, openid, template),
        )

    def _send_once(self, notification: Notification, openid: str, template: str) -> None:
        errcode = self._post(notification, openid, template, self._access_token(notification))
        if errcode in TOKEN_ERRCODES:
            # Another process (or WeChat) replaced the token: fetch a new one, send again.
            self._forget_token()
            errcode = self._post(notification, openid, template, self._access_token(notification))
        if errcode == 0:
            return
        if errcode in RETRYABLE_ERRCODES or errcode in TOKEN_ERRCODES:
            raise RetryableGatewayError(f"errcode {errcode}")
        raise NotificationRefusedError(
            f"{self._host} refused reminder {notification.reminder_id} (errcode {errcode})"
        )

    def _post(self, notification: Notification, openid: str, template: str, token: str) -> int:
        config = self._config
        values = {
            "notice": NOTICES[notification.kind],
            "office": notification.office,
            "date": notification.valid_until.isoformat() if notification.valid_until else "—",
        }
        message: dict[str, object] = {
            "touser": openid,
            "template_id": template,
            "client_msg_id": notification.reminder_id,
            "data": {config.fields[key]: {"value": value} for key, value in values.items()},
        }
        if config.url:
            message["url"] = config.url
        answer = exchange_json(
            self._http,
            "POST",
            f"{config.api_base}/cgi-bin/message/template/send?{urlencode({'access_token': token})}",
            body=json.dumps(message, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            host=self._host,
            reminder_id=notification.reminder_id,
        )
        return _errcode(answer)

    def _access_token(self, notification: Notification) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._token_expires:
                return self._token
            config = self._config
            query = urlencode(
                {
                    "grant_type": "client_credential",
                    "appid": config.app_id,
                    "secret": config.app_secret,
                }
            )
            answer = exchange_json(
                self._http,
                "GET",
                f"{config.api_base}/cgi-bin/token?{query}",
                headers={},
                host=self._host,
                reminder_id=notification.reminder_id,
            )
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                errcode = _errcode(answer)
                if errcode in RETRYABLE_ERRCODES:
                    raise RetryableGatewayError(f"token errcode {errcode}")
                # A wrong AppID or secret, or this machine not on the account's IP allow list:
                # no reminder can go until the office fixes it.
                raise GatewayUnavailableError(
                    f"{self._host} gave no access_token (errcode {errcode}); check app_id, the "
                    "app secret and the account's IP allow list"
                )
            expires_in = answer.get("expires_in", 7200)
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 7200.0
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_S)
            self.tokens_fetched += 1
            return token

    def _forget_token(self) -> None:
        with self._lock:
            self._token = ""
            self._token_expires = 0.0


def _errcode(answer: Mapping[str, object]) -> int:
    code = answer.get("errcode", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


class FirstOf(Notifier):
    """Each notification through the first notifier that takes it: WeChat where the person
    bound an account, else SMS. A refusal passes it on; the last refusal is raised."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        if not notifiers:
            raise ValueError("give at least one notifier")
        self._notifiers = list(notifiers)

    def send(self, notification: Notification) -> None:
        for notifier in self._notifiers[:-1]:
            try:
                notifier.send(notification)
            except NotificationRefusedError:
                continue
            return
        self._notifiers[-1].send(notification)

    def flush(self) -> None:
        for notifier in self._notifiers:
            notifier.flush()
