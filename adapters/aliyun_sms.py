"""Reminders by SMS through Alibaba Cloud SMS (阿里云短信服务): the SendSms API of dysmsapi,
version 2017-05-25, as its documentation describes it.

One request per reminder: a POST of the RPC-style parameters (Action=SendSms, PhoneNumbers,
SignName, TemplateCode, TemplateParam, OutId, and the common parameters Format, Version,
AccessKeyId, RegionId, Timestamp, SignatureMethod=HMAC-SHA1, SignatureVersion=1.0,
SignatureNonce), signed with signature version 1.0: HMAC-SHA1 under the AccessKey secret plus
"&" of "POST&%2F&" and the percent-encoded, sorted, canonical query string. The answer is JSON
with `Code` "OK" when the message was accepted.

The message is one of the office's approved templates (one per reminder kind); its parameters
are the office's name and the date, never the person. `OutId` is the reminder id, so the
gateway's records tie a repeat (at-least-once delivery) to the first send. Throttling and
system errors are retried with backoff; any other code refuses the reminder (a wrong number, an
unapproved template), which stays unacknowledged for the office to fix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from adapters.errors import MappingError, NotificationRefusedError, RetryableGatewayError
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

ENDPOINT = "https://dysmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"
# Codes a later attempt may change (flow control, the service's own failures).
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "isv.BUSINESS_LIMIT_CONTROL",
        "isp.SYSTEM_ERROR",
        "ServiceUnavailable",
        "InternalError",
    }
)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the signature needs it: only A-Z a-z 0-9 - _ . ~ left as they are."""
    return quote(value, safe="-_.~")


def signature(secret: str, method: str, parameters: Mapping[str, str]) -> str:
    """Signature version 1.0 of `parameters` (without Signature) for `method`."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(parameters[key])}" for key in sorted(parameters)
    )
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class AliyunSmsConfig:
    access_key_id: str
    access_key_secret: str
    # The message signature (签名) approved for the office.
    sign_name: str
    # Reminder kind ("due", "warning", "overdue") to approved template code (SMS_...).
    templates: Mapping[str, str]
    endpoint: str = ENDPOINT
    region_id: str = "cn-hangzhou"
    retry: WebhookRetry = field(default_factory=WebhookRetry)


def load_aliyun_sms_config(path: Path) -> AliyunSmsConfig:
    """`access_key_id`, `access_key_secret_file` (relative to the file), `sign_name`,
    `[templates]` with due / warning / overdue, and optionally `endpoint` and `region_id`."""
    name = path.name
    known = {
        "access_key_id",
        "access_key_secret_file",
        "sign_name",
        "templates",
        "endpoint",
        "region_id",
    }
    raw = read_settings(path, known, "an Alibaba Cloud SMS setting")
    texts = required_texts(raw, name, ("access_key_id", "access_key_secret_file", "sign_name"))
    secret = read_text_beside(path, texts["access_key_secret_file"], "access_key_secret_file")
    templates = raw.get("templates")
    if not isinstance(templates, dict) or set(templates) != set(KINDS.values()):
        raise MappingError(
            f"{name}: templates", f"give a template code for each of {', '.join(KINDS.values())}"
        )
    if not all(isinstance(code, str) and code for code in templates.values()):
        raise MappingError(f"{name}: templates", "template codes are text (SMS_...)")
    endpoint = str(raw.get("endpoint", ENDPOINT))
    require_gateway_url(endpoint, f"{name}: endpoint")
    return AliyunSmsConfig(
        access_key_id=texts["access_key_id"],
        access_key_secret=secret.strip(),
        sign_name=texts["sign_name"],
        templates=dict(templates),
        endpoint=endpoint,
        region_id=str(raw.get("region_id", "cn-hangzhou")),
    )


class AliyunSmsNotifier(Notifier):
    """SendSms per notification, retried on throttling and system errors."""

    def __init__(self, config: AliyunSmsConfig, *, timeout_s: float = 10.0) -> None:
        parts = require_gateway_url(config.endpoint, "endpoint")
        self._config = config
        self._host = parts.hostname or "Alibaba Cloud SMS"
        self._http = GatewayHttp(config.endpoint, timeout_s=timeout_s)

    def send(self, notification: Notification) -> None:
        template = self._config.templates.get(notification.kind)
        if template is None:
            raise NotificationRefusedError(
                f"no SMS template is configured for {notification.kind} reminders "
                f"(reminder {notification.reminder_id})"
            )
        send_with_retries(
            self._config.retry,
            self._host,
            notification,
            lambda sent: self._send_sms(sent, template),
        )

    def _send_sms(self, notification: Notification, template: str) -> None:
        config = self._config
        date = notification.valid_until.isoformat() if notification.valid_until else ""
        parameters = {
            "Action": "SendSms",
            "Version": API_VERSION,
            "Format": "JSON",
            "RegionId": config.region_id,
            "AccessKeyId": config.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            # A fresh nonce and time on every attempt: the gateway refuses a reused nonce.
            "SignatureNonce": secrets.token_hex(16),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PhoneNumbers": notification.to,
            "SignName": config.sign_name,
            "TemplateCode": template,
            "TemplateParam": json.dumps(
                {"office": notification.office, "date": date}, ensure_ascii=False
            ),
            "OutId": notification.reminder_id,
        }
        parameters["Signature"] = signature(config.access_key_secret, "POST", parameters)
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in parameters.items())
        answer = exchange_json(
            self._http,
            "POST",
            config.endpoint,
            body=body.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            host=self._host,
            reminder_id=notification.reminder_id,
        )
        code = str(answer.get("Code", ""))
        if code == "OK":
            return
        if code in RETRYABLE_CODES:
            raise RetryableGatewayError(f"Code {code}")
        raise NotificationRefusedError(
            f"{self._host} refused reminder {notification.reminder_id} (Code {code or 'none'})"
        )
