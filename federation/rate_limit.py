"""Per-caller rate limits, and what a caller may hold before and after it is authenticated.

`RateLimiter`: one token bucket per authenticated principal.

The server interceptor (`federation.rpc`) asks the limiter after it has decided who the caller is,
so a flooding peer or a runaway script at a desk spends only its own bucket: every other node
and operator keeps its full rate. A call over the limit is refused with RESOURCE_EXHAUSTED and a
message saying how long to wait; nothing of it runs. Limits come from `federation.limits.Limits`
(a rate of 0 turns the limit for that kind of caller off).

Callers without a certificate or token (enrolment, the public directory) are keyed by their
network address, so one anonymous client cannot use up the allowance of all the others.

`Admission`: before anyone is authenticated, a call holds a "pending" place from its headers
until its caller is known; places are bounded per connection and per network address, and an
address whose calls keep failing authentication is refused before its credentials are read (no
database lookup for a wrong token once the address has spent its allowance of failures). A
credential that recently passed authentication is still let through from such an address, so
the clerks behind an office's NAT (or a web desk) keep working while someone there floods.

`StreamSlots`: open server-streaming calls, bounded per caller and in total.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from federation.errors import RateLimitedError
from federation.limits import Limits
from federation.principal import Principal

# Buckets idle long enough to be full again are forgotten once there are this many, so a
# stream of new anonymous addresses cannot grow memory without bound.
MAX_TRACKED_CALLERS = 10_000


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `per_second`; a call takes one."""

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = float(rate.burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed * self.rate.per_second)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token; returns 0.0 on success, else the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate.per_second

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0 if one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate.per_second)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.rate.burst


class RateLimiter:
    """Token buckets keyed by principal; callable as the interceptor's rate-limit hook."""

    def __init__(
        self,
        rates: dict[str, Rate],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = {kind: rate for kind, rate in rates.items() if rate.per_second > 0}
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_limits(cls, limits: Limits) -> RateLimiter:
        peer = Rate(limits.peer_calls_per_s, limits.peer_burst)
        operator = Rate(limits.operator_calls_per_s, limits.operator_burst)
        # Registry administrators are people at a terminal, like operators; anonymous callers
        # are nodes enrolling or fetching the directory, like peers.
        return cls({"node": peer, "anonymous": peer, "operator": operator, "admin": operator})

    def __call__(self, principal: Principal, peer_address: str) -> None:
        rate = self._rates.get(principal.kind)
        if rate is None:
            return
        key = principal.label if principal.kind != "anonymous" else f"anonymous:{peer_address}"
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED_CALLERS:
                    self._forget_idle(now)
                bucket = self._buckets[key] = TokenBucket(rate, now)
            wait_s = bucket.take(now)
        if wait_s > 0:
            retry_ms = max(1, math.ceil(wait_s * 1000))
            who = "this address" if principal.kind == "anonymous" else principal.label
            raise RateLimitedError(
                f"{who} is over its limit of {rate.per_second:g} calls/s "
                f"(burst {rate.burst}); retry in {retry_ms} ms",
                retry_after_s=retry_ms / 1000,
            )

    def _forget_idle(self, now: float) -> None:
        _forget(self._buckets, now)


def _forget(buckets: dict[str, TokenBucket], now: float) -> None:
    """Forget full buckets, then (if that freed too little) the oldest, down to 90% of the cap.

    A forgotten bucket starts full again: the table stays bounded at the cost of a little
    leniency towards callers that have been quiet the longest.
    """
    for key in [key for key, bucket in buckets.items() if bucket.full(now)]:
        del buckets[key]
    excess = len(buckets) - MAX_TRACKED_CALLERS * 9 // 10
    for key in list(itertools.islice(buckets, max(0, excess))):
        del buckets[key]


class AdmissionTicket:
    """A call's pending place; `release` (idempotent) once its caller is known or it ended."""

    def __init__(
        self, admission: Admission, connection: str, address: str, credential: bytes | None
    ) -> None:
        self._admission = admission
        self.connection = connection
        self.address = address
        self.credential = credential
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release(self)


class Admission:
    """Pending places per connection and per address, and failed authentications per address."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_connection = limits.max_pending_calls_per_connection
        self._per_address = limits.max_pending_calls_per_address
        self._failures = Rate(limits.failed_auth_per_s, limits.failed_auth_burst)
        self._clock = clock
        self._pending: dict[str, int] = {}
        self._failed: dict[str, TokenBucket] = {}
        # Digests of credentials that passed authentication, least recently seen first.
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def admit(self, peer: str, credential: bytes | None) -> AdmissionTicket:
        """A pending place for a call from `peer` (gRPC's peer string) presenting `credential`
        (a digest of its token or certificate, None for neither); RateLimitedError if the
        connection or address holds too many, or the address failed authentication too often
        and the credential is not one that passed recently."""
        address = peer_address(peer)
        now = self._clock()
        with self._lock:
            bucket = self._failed.get(address)
            known = credential is not None and credential in self._known
            if not known and bucket is not None and bucket.available(now) < 1.0:
                wait_ms = max(1, math.ceil(bucket.wait(now) * 1000))
                raise RateLimitedError(
                    f"this address made too many calls that failed to sign in; retry in "
                    f"{wait_ms} ms with valid credentials",
                    retry_after_s=wait_ms / 1000,
                )
            if self._pending.get(peer, 0) >= self._per_connection:
                raise RateLimitedError(
                    f"this connection already has {self._per_connection} calls waiting for "
                    "their request or their sign-in; send those first",
                    retry_after_s=1.0,
                )
            if self._pending.get(address, 0) >= self._per_address:
                raise RateLimitedError(
                    f"this address already has {self._per_address} calls waiting for their "
                    "request or their sign-in; send those first",
                    retry_after_s=1.0,
                )
            self._pending[peer] = self._pending.get(peer, 0) + 1
            self._pending[address] = self._pending.get(address, 0) + 1
        return AdmissionTicket(self, peer, address, credential)

    def succeeded(self, credential: bytes | None) -> None:
        """Remember that `credential` passed authentication."""
        if credential is None:
            return
        with self._lock:
            self._known[credential] = None
            self._known.move_to_end(credential)
            if len(self._known) > MAX_TRACKED_CALLERS:
                self._known.popitem(last=False)

    def failed(self, peer: str) -> None:
        """Charge one failed authentication to the address of `peer`."""
        address = peer_address(peer)
        now = self._clock()
        with self._lock:
            bucket = self._failed.get(address)
            if bucket is None:
                if len(self._failed) >= MAX_TRACKED_CALLERS:
                    _forget(self._failed, now)
                bucket = self._failed[address] = TokenBucket(self._failures, now)
            bucket.take(now)

    def _release(self, ticket: AdmissionTicket) -> None:
        with self._lock:
            for key in (ticket.connection, ticket.address):
                left = self._pending[key] - 1
                if left:
                    self._pending[key] = left
                else:
                    del self._pending[key]


class StreamSlots:
    """Open streams per caller and in total; `open` returns a release function."""

    def __init__(self, limits: Limits) -> None:
        self._total = limits.max_streams
        self._per_caller = limits.max_streams_per_caller
        self._open: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    def open(self, principal: Principal, peer: str) -> Callable[[], None]:
        key = principal.label if principal.kind != "anonymous" else peer_address(peer)
        with self._lock:
            if self._count >= self._total:
                raise RateLimitedError(
                    f"this server already serves its maximum of {self._total} streams; "
                    "subscribe again later",
                    retry_after_s=5.0,
                )
            if self._open.get(key, 0) >= self._per_caller:
                who = "this address" if principal.kind == "anonymous" else principal.label
                raise RateLimitedError(
                    f"{who} already has {self._per_caller} open streams here, the most one "
                    "caller may hold; close one first",
                    retry_after_s=5.0,
                )
            self._open[key] = self._open.get(key, 0) + 1
            self._count += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                self._count -= 1
                left = self._open[key] - 1
                if left:
                    self._open[key] = left
                else:
                    del self._open[key]

        return release


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer string (`ipv4:1.2.3.4:5678` -> `ipv4:1.2.3.4`)."""
    address, _, port = peer.rpartition(":")
    return address if address and port.isdigit() else peer
