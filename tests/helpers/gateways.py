"""Local HTTP servers on 127.0.0.1 that speak the SMS and WeChat APIs the notifiers call, with
scripted failures: Alibaba Cloud SMS SendSms (signature version 1.0 checked as its documentation
describes it) and the WeChat Official Account token and template-message endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ALIYUN_KEY_ID = "LTAI-test-key"
ALIYUN_SECRET = "aliyun-test-secret"
WECHAT_APP_ID = "wx-test-app"
WECHAT_SECRET = "wechat-test-secret"


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


class AliyunSms:
    """SendSms: checks the documented parameters and signature; answers from `script` (an HTTP
    status int, or a Code string) first, then Code OK."""

    REQUIRED = (
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "PhoneNumbers",
        "SignName",
        "TemplateCode",
        "TemplateParam",
        "OutId",
    )

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, str]] = []
        self.accepted: list[dict[str, str]] = []
        self.nonces: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        form = {key: values[0] for key, values in parse_qs(body.decode("ascii")).items()}
        with self._lock:
            self.requests.append(form)
            missing = [key for key in self.REQUIRED if key not in form]
            if missing or form.get("Action") != "SendSms" or form.get("Version") != "2017-05-25":
                return 400, {"Code": "MissingParameter", "Message": ",".join(missing)}
            if form["AccessKeyId"] != ALIYUN_KEY_ID:
                return 404, {"Code": "InvalidAccessKeyId.NotFound"}
            signature = form.pop("Signature", "")
            canonical = "&".join(f"{_encode(k)}={_encode(form[k])}" for k in sorted(form))
            to_sign = "POST&%2F&" + _encode(canonical)
            expected = base64.b64encode(
                hmac.new(f"{ALIYUN_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest()
            ).decode()
            if signature != expected:
                return 400, {"Code": "SignatureDoesNotMatch"}
            if form["SignatureNonce"] in self.nonces:
                return 400, {"Code": "SignatureNonceUsed"}
            self.nonces.add(form["SignatureNonce"])
            if self.script:
                step = self.script.pop(0)
                if isinstance(step, int):
                    return step, {"Code": "ServiceUnavailable"}
                return 200, {"Code": step, "Message": step, "RequestId": "r"}
            self.accepted.append(form)
            return 200, {"Code": "OK", "Message": "OK", "BizId": "b", "RequestId": "r"}


class WeChat:
    """The token endpoint (a new token each call) and template send, which accepts only the
    latest token; `script` errcodes answer sends first (40001/42001 also void the token)."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.tokens_issued = 0
        self.token = ""
        self.sent: list[dict[str, Any]] = []
        self.sends = 0
        self._lock = threading.Lock()

    def token_call(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if query.get("grant_type") != "client_credential":
                return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
            if query.get("appid") != WECHAT_APP_ID or query.get("secret") != WECHAT_SECRET:
                return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
            self.tokens_issued += 1
            self.token = f"token-{self.tokens_issued}"
            return 200, {"access_token": self.token, "expires_in": 7200}

    def send_call(self, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.sends += 1
            if query.get("access_token") != self.token:
                return 200, {"errcode": 40001, "errmsg": "invalid credential"}
            if self.script:
                errcode = self.script.pop(0)
                if errcode in (40001, 42001):
                    self.token = ""
                return 200, {"errcode": errcode, "errmsg": "scripted"}
            message = json.loads(body)
            if not {"touser", "template_id", "data"} <= set(message):
                return 200, {"errcode": 47001, "errmsg": "data format error"}
            self.sent.append(message)
            return 200, {"errcode": 0, "errmsg": "ok", "msgid": len(self.sent)}


@contextmanager
def serving(aliyun: AliyunSms | None = None, wechat: WeChat | None = None) -> Iterator[str]:
    """A server on 127.0.0.1 for both APIs; yields its base URL (http://127.0.0.1:PORT)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/cgi-bin/token" and wechat is not None:
                self._answer(*wechat.token_call(query))
            else:
                self._answer(404, {"errcode": 404})

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/" and aliyun is not None:
                self._answer(*aliyun.handle(body))
            elif parts.path == "/cgi-bin/message/template/send" and wechat is not None:
                self._answer(*wechat.send_call(query, body))
            else:
                self._answer(404, {"errcode": 404})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
