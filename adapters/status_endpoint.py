"""The retiree status endpoint: what the office's portal or mini program calls to show a retiree
their certification status. A small HTTPS server of its own, in front of the node's desk.

    POST /v1/certification-status
    Authorization: Bearer <client id>.<client secret>
    {"identity_type": "resident_id", "identity_number": "..."}

    200 {"state": "active", "certified_until": "2027-01-31", "next_due": "2026-12-02",
         "how_to_certify": ["face_recognition_app", "counter"]}

Why a process of its own, not the web desk's: the web desk serves the office's operators
(sessions, CSRF, pages, every desk role) on the office's network; this answers other systems on
the internet side with one narrow question. Kept apart, a flaw in either cannot reach the
other's callers, each is rate-limited and scaled for its own callers, and this one holds only a
feed account's token, whose role may ask the node nothing but a status (and record nothing for
sources it is not bound to).

Promises:

- Each calling system has its own client credential (`ClientCredentials`): a random secret,
  shown once, kept only as its SHA-256 (a 256-bit random secret needs no slow hash: nobody can
  guess it, and the hash only stops a reader of the file from using it); disabled or removed,
  it is refused from the next call (the file is read again when it changes).
- An unknown or revoked credential is refused (401) before anything else; every client is
  rate-limited, and so is each address that sends bad credentials.
- The identity number travels only in the POST body, never in a URL (a query string is
  refused), and reaches no log line: the log names the client and the outcome.
- The answer is the state, the two dates and how the person may certify (the office's list),
  nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import ssl
import threading
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog

from adapters.errors import MappingError
from certfed.v1 import common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError, RateLimitedError
from federation.principal import ANONYMOUS, Principal
from federation.rate_limit import Rate, RateLimiter

log = structlog.get_logger("certfed.status_endpoint")

STATUS_PATH = "/v1/certification-status"
CLIENT_RATE = Rate(per_second=5.0, burst=20)
FAILURE_RATE = Rate(per_second=0.2, burst=5)
MAX_BODY_BYTES = 1024
CLIENT_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
IDENTITY_TYPES = {
    "resident_id": common_pb2.IDENTITY_TYPE_RESIDENT_ID,
    "hkid": common_pb2.IDENTITY_TYPE_HKID,
    "macau_bir": common_pb2.IDENTITY_TYPE_MACAU_BIR,
    "passport": common_pb2.IDENTITY_TYPE_PASSPORT,
}
STATES = {
    desk_pb2.ENTITLEMENT_STATE_ACTIVE: "active",
    desk_pb2.ENTITLEMENT_STATE_DUE: "due",
    desk_pb2.ENTITLEMENT_STATE_WARNING: "warning",
    desk_pb2.ENTITLEMENT_STATE_SUSPENDED: "suspended",
    desk_pb2.ENTITLEMENT_STATE_TERMINATED: "terminated",
}


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ClientCredentials:
    """The calling systems, from a TOML file of `[clients.<id>]` tables with `secret_sha256`
    and `disabled`; read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, str] = {}

    def check(self, credential: str) -> str | None:
        """The client id a bearer credential `<id>.<secret>` belongs to, or None."""
        client_id, _, secret = credential.partition(".")
        if not client_id or not secret:
            return None
        expected = self._current().get(client_id)
        if expected is None:
            # The same work as for a known id, so timing does not tell which ids exist.
            hmac.compare_digest(secret_hash(secret), "0" * 64)
            return None
        return client_id if hmac.compare_digest(secret_hash(secret), expected) else None

    def _current(self) -> dict[str, str]:
        try:
            status = self._path.stat()
        except OSError:
            return {}
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._hashes = {
                    client_id: entry["secret_sha256"]
                    for client_id, entry in read_clients(self._path).items()
                    if not entry.get("disabled", False)
                }
                self._stamp = stamp
            return self._hashes


def read_clients(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise MappingError(path.name, f"is not valid TOML ({error})") from None
    clients = raw.get("clients", {})
    if not isinstance(clients, dict):
        raise MappingError(f"{path.name}: clients", "must be tables [clients.<id>]")
    for client_id, entry in clients.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret_sha256"), str):
            raise MappingError(f"{path.name}: clients.{client_id}", "needs secret_sha256")
    return clients


def write_clients(path: Path, clients: dict[str, dict[str, Any]]) -> None:
    lines = ["# Calling systems of the status endpoint: secrets kept only as SHA-256."]
    for client_id, entry in sorted(clients.items()):
        lines += [
            "",
            f"[clients.{client_id}]",
            f'secret_sha256 = "{entry["secret_sha256"]}"',
            f"disabled = {'true' if entry.get('disabled') else 'false'}",
        ]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def add_client(path: Path, client_id: str) -> str:
    """A new calling system; returns its bearer credential, shown once."""
    if not client_id or not set(client_id) <= CLIENT_ID_CHARACTERS or len(client_id) > 64:
        raise InvalidInputError("client id", "use 1-64 of a-z, 0-9, - and _")
    clients = read_clients(path)
    if client_id in clients:
        raise InvalidInputError("client id", f"{client_id!r} exists; revoke it or pick another")
    secret = secrets.token_urlsafe(32)
    clients[client_id] = {"secret_sha256": secret_hash(secret), "disabled": False}
    write_clients(path, clients)
    return f"{client_id}.{secret}"


def revoke_client(path: Path, client_id: str) -> None:
    clients = read_clients(path)
    if client_id not in clients:
        raise InvalidInputError("client id", f"no client {client_id!r}")
    clients[client_id]["disabled"] = True
    write_clients(path, clients)


class StatusSource(Protocol):
    def status(
        self, identity_type: int, identity_number: str
    ) -> desk_pb2.GetCertificationStatusResponse: ...


class DeskStatuses:
    """GetCertificationStatus on the node's DeskService."""

    def __init__(self, desk: DeskClient) -> None:
        self._desk = desk

    def status(
        self, identity_type: int, identity_number: str
    ) -> desk_pb2.GetCertificationStatusResponse:
        answer: desk_pb2.GetCertificationStatusResponse = self._desk.stub.GetCertificationStatus(
            desk_pb2.GetCertificationStatusRequest(
                identity_type=identity_type,  # type: ignore[arg-type]
                identity_number=identity_number,
            )
        )
        return answer


@dataclass(frozen=True)
class EndpointSettings:
    # How the office's people may certify, as the portal shows it (e.g. face_recognition_app,
    # counter, home_visit_on_request).
    how_to_certify: Sequence[str]
    client_rate: Rate = CLIENT_RATE
    # Addresses that send a bad credential: a few tries, then slowly.
    failure_rate: Rate = FAILURE_RATE


class StatusServer:
    """The endpoint over TLS (`tls`), or plain HTTP on 127.0.0.1 behind a TLS proxy or in a
    test."""

    def __init__(
        self,
        credentials: ClientCredentials,
        source: StatusSource,
        settings: EndpointSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if tls is None and host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidInputError("listen", "serve over TLS (give a certificate) or on 127.0.0.1")
        limiter = RateLimiter({"client": settings.client_rate, "anonymous": settings.failure_rate})
        handler = _handler(credentials, source, settings, limiter)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}{STATUS_PATH}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-endpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> StatusServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _handler(
    credentials: ClientCredentials,
    source: StatusSource,
    settings: EndpointSettings,
    limiter: RateLimiter,
) -> type[BaseHTTPRequestHandler]:
    def limited(principal: Principal, address: str) -> float | None:
        try:
            limiter(principal, address)
        except RateLimitedError as error:
            return error.retry_after_s
        return None

    class Handler(BaseHTTPRequestHandler):
        server_version = "certfed-status"
        sys_version = ""

        def do_GET(self) -> None:
            self._answer(405, {"error": "POST the identity in the body; GET is not served"})

        def do_POST(self) -> None:
            address = self.client_address[0]
            path, _, query = self.path.partition("?")
            if path != STATUS_PATH:
                self._answer(404, {"error": f"the status is at {STATUS_PATH}"})
                return
            header = self.headers.get("Authorization", "")
            client = (
                credentials.check(header.removeprefix("Bearer ").strip())
                if header.startswith("Bearer ")
                else None
            )
            if client is None:
                wait = limited(ANONYMOUS, address)
                log.info("status.unauthenticated", outcome="refused")
                if wait is not None:
                    self._too_many(wait)
                    return
                self._answer(401, {"error": "unknown or revoked client credential"})
                return
            wait = limited(Principal("client", client), address)
            if wait is not None:
                log.info("status.rate_limited", client=client)
                self._too_many(wait)
                return
            if query:
                # A URL is logged by proxies along the way: nothing may be asked in one.
                self._answer(400, {"error": "no query string; send the identity in the body"})
                return
            identity = self._identity()
            if identity is None:
                return
            try:
                answer = source.status(*identity)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    log.info("status.answer", client=client, outcome="unknown_person")
                    self._answer(404, {"error": "this office pays nobody with that identity"})
                elif code == grpc.StatusCode.INVALID_ARGUMENT:
                    self._answer(400, {"error": error.details() or "invalid identity"})
                else:
                    log.warning("status.node_unavailable", client=client, code=str(code))
                    self._answer(503, {"error": "the office's system cannot answer now"})
                return
            body = {
                "state": STATES.get(answer.state, "unknown"),
                "certified_until": _day(answer, "certified_until"),
                "next_due": _day(answer, "next_due"),
                "how_to_certify": list(settings.how_to_certify),
            }
            log.info("status.answer", client=client, outcome="ok")
            self._answer(200, body)

        def _identity(self) -> tuple[int, str] | None:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._answer(411, {"error": "send Content-Length"})
                return None
            if not 0 < length <= MAX_BODY_BYTES:
                self._answer(413, {"error": f"the body is at most {MAX_BODY_BYTES} bytes"})
                return None
            try:
                body = json.loads(self.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = None
            if not isinstance(body, dict):
                self._answer(400, {"error": "the body must be a JSON object"})
                return None
            identity_type = IDENTITY_TYPES.get(str(body.get("identity_type")))
            number = body.get("identity_number")
            if identity_type is None or not isinstance(number, str) or not number.strip():
                self._answer(
                    400,
                    {
                        "error": "give identity_type (" + ", ".join(IDENTITY_TYPES) + ") and "
                        "identity_number"
                    },
                )
                return None
            return identity_type, number.strip()

        def _too_many(self, wait_s: float) -> None:
            self._answer(
                429,
                {"error": "too many calls; retry later"},
                headers={"Retry-After": str(max(1, round(wait_s)))},
            )

        def _answer(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _day(answer: desk_pb2.GetCertificationStatusResponse, field: str) -> str | None:
    """The date in `field` (certified_until, next_due), or None when unset."""
    if field == "certified_until":
        if not answer.HasField("certified_until"):
            return None
        return answer.certified_until.ToDatetime(UTC).date().isoformat()
    if not answer.HasField("next_due"):
        return None
    return answer.next_due.ToDatetime(UTC).date().isoformat()
