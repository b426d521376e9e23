"""A stand-in for an office's SMS gateway, for `certfed bench notify` and the notifier tests.

A JSON webhook on 127.0.0.1 over HTTPS (or plain HTTP), HTTP/1.1 with kept-alive connections,
that answers each POST after a fixed delay, the round trip to a gateway in another city, and
counts what a sender's efficiency shows in: connections accepted, requests, the most requests in
flight at once, and when each request arrived. `GET /stats` answers the counts as JSON.

    python -m cli.bench.webhook_gateway --port-file P [--tls-dir D] [--latency-ms 20]

In a test it runs in a thread (`WebhookGateway(...)` as a context manager), and `answers` scripts
statuses by Idempotency-Key (the reminder id), each key's list used up in order, and `statuses`
those of the other requests in the order they come, then 200; `requests` keeps each request's
headers and JSON body.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WEBHOOK_PATH = "/sms/send"


def self_signed(
    key: ec.EllipticCurvePrivateKey, common_name: str, alternative_name: x509.GeneralName
) -> x509.Certificate:
    """A certificate `key` signs for itself, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alternative_name]), critical=False)
        .sign(key, hashes.SHA256())
    )


def self_signed_certificate(folder: Path, common_name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 valid for a day, and its key (PEM files in `folder`). A
    client that trusts the certificate file itself accepts the server that presents it."""
    key = ec.generate_private_key(ec.SECP256R1())
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    certificate = self_signed(key, common_name, loopback)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class GatewayStats:
    connections: int = 0
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Seconds on the monotonic clock at which each POST arrived, and its Idempotency-Key.
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    # The Idempotency-Key of every POST answered 2xx.
    accepted: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "accepted": len(self.accepted),
            "max_in_flight": self.max_in_flight,
        }


class WebhookGateway:
    """The gateway, serving from a thread of this process while it is entered."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        tls_dir: Path | None = None,
        statuses: list[int] | None = None,
        keep_requests: bool = True,
    ) -> None:
        self.latency_s = latency_s
        self.stats = GatewayStats()
        # Statuses for the requests of a reminder id, each list used up in order...
        self.answers: dict[str, list[int]] = {}
        # ...and for the others, in the order they arrive; then 200.
        self.statuses = list(statuses or [])
        # Each request's headers and JSON body, unless told not to keep them (a benchmark).
        self.keep_requests = keep_requests
        self.requests: list[tuple[dict[str, str], Any]] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, the client's delayed
            # acknowledgement holds the body back some 40 ms (Nagle's algorithm).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with gateway._lock:
                    gateway.stats.connections += 1

            def do_GET(self) -> None:
                with gateway._lock:
                    body = json.dumps(gateway.stats.as_json()).encode()
                self._answer(200 if self.path == "/stats" else 404, body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                with gateway._lock:
                    stats = gateway.stats
                    stats.requests += 1
                    stats.in_flight += 1
                    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
                    stats.arrivals.append((time.monotonic(), key))
                    if gateway.keep_requests:
                        gateway.requests.append((dict(self.headers), json.loads(body)))
                    scripted = gateway.answers.get(key)
                    if scripted:
                        status = scripted.pop(0)
                    else:
                        status = gateway.statuses.pop(0) if gateway.statuses else 200
                time.sleep(gateway.latency_s)
                with gateway._lock:
                    stats.in_flight -= 1
                    if 200 <= status < 300:
                        stats.accepted.append(key)
                # The path alone, or a whole URL as a client sends it to a forward proxy.
                found = urlsplit(self.path).path == WEBHOOK_PATH
                self._answer(status if found else 404, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        self.certificate: Path | None = None
        if tls_dir is not None:
            self.certificate, key = self_signed_certificate(tls_dir, "certfed test SMS gateway")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certificate, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}{WEBHOOK_PATH}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookGateway:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.bench.webhook_gateway")
    parser.add_argument("--port-file", required=True, help="write the URL here once listening")
    parser.add_argument("--tls-dir", help="serve HTTPS with a certificate written here")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    stopped = threading.Event()

    def stop(_signal: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tls_dir = Path(args.tls_dir) if args.tls_dir else None
    gateway = WebhookGateway(latency_s=args.latency_ms / 1000, tls_dir=tls_dir, keep_requests=False)
    with gateway:
        port_file = Path(args.port_file)
        port_file.with_suffix(".tmp").write_text(gateway.url)
        port_file.with_suffix(".tmp").replace(port_file)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
