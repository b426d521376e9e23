"""HTTP to a notification gateway: kept-alive connections shared by the threads that send.

A gateway notifier (the webhook, Alibaba Cloud SMS, WeChat) makes one `GatewayHttp` for its
gateway and sends every request through it. Its connections stay open between requests, so a
reminder costs one round trip to the gateway instead of a TCP and a TLS handshake first, and
several threads may send at once (`run_notifications(concurrency=...)`), each on a connection of
its own from the pool.

What it promises:

* TLS is verified against the system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` honoured),
  as `urllib` verified it; the URL's scheme is checked by `require_gateway_url` before this.
* A proxy named by the environment (`https_proxy`, `http_proxy`, `no_proxy`) is used as `urllib`
  would use it: offices often reach the Internet only through one.
* No redirects are followed and the transport retries nothing: the notifiers' bounded retries
  decide what is tried again. An answer, whatever its status, is a `GatewayAnswer`; no answer
  (refused, reset, timed out, a TLS failure) is `RetryableGatewayError` with the failure's kind,
  never the URL (a gateway's token may be in it).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    SSLError,
    TimeoutError,
)

from adapters.errors import RetryableGatewayError

# Connections kept open to one gateway: the most `certfed notify run --concurrency` allows.
MAX_CONNECTIONS = 64
# Reminders with a gateway at once unless the office says otherwise: a gateway a few tens of
# milliseconds away then takes some hundreds a second, well inside common SMS contracts.
DEFAULT_CONCURRENCY = 8
# Reminders started a second at most, when the office caps them (`--max-per-second`).
MAX_PER_SECOND = 10_000


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    data: bytes


def _no_answer(error: HTTPError) -> str:
    """What went wrong, in words that carry no URL."""
    if isinstance(error, ProxyError):
        return "the proxy did not pass the request on"
    if isinstance(error, SSLError):
        return "TLS failed (is the gateway's certificate trusted by this machine?)"
    if isinstance(error, NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ProtocolError):
        return "connection lost"
    return type(error).__name__


class GatewayHttp:
    """A pool of kept-alive connections to the gateway at `url` (and any URL on its host)."""

    def __init__(self, url: str, *, timeout_s: float, connections: int = MAX_CONNECTIONS) -> None:
        parts = urlsplit(url)
        options: dict[str, object] = {
            "num_pools": 4,
            "maxsize": connections,
            "block": False,
            "retries": False,
            "timeout": urllib3.Timeout(total=timeout_s),
        }
        if parts.scheme == "https":
            options["ssl_context"] = ssl.create_default_context()
        proxy = urllib.request.getproxies().get(parts.scheme)
        self._pool: urllib3.PoolManager
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            self._pool = urllib3.ProxyManager(proxy, **options)  # type: ignore[arg-type]
        else:
            self._pool = urllib3.PoolManager(**options)  # type: ignore[arg-type]

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str]
    ) -> GatewayAnswer:
        try:
            response = self._pool.request(
                method, url, body=body, headers=dict(headers), redirect=False
            )
        except HTTPError as error:
            raise RetryableGatewayError(f"no answer ({_no_answer(error)})") from None
        return GatewayAnswer(response.status, response.data)

    def close(self) -> None:
        self._pool.clear()
