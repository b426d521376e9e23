"""Per-caller rate limits: one token bucket per authenticated principal.

The server interceptor (`federation.rpc`) asks the limiter after it has decided who the caller is,
so a flooding peer or a runaway script at a desk spends only its own bucket: every other node
and operator keeps its full rate. A call over the limit is refused with RESOURCE_EXHAUSTED and a
message saying how long to wait; nothing of it runs. Limits come from `federation.limits.Limits`
(a rate of 0 turns the limit for that kind of caller off).

Callers without a certificate or token (enrolment, the public directory) are keyed by their
network address, so one anonymous client cannot use up the allowance of all the others.
"""

from __future__ import annotations

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
        for key in [key for key, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[key]


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer string (`ipv4:1.2.3.4:5678` -> `ipv4:1.2.3.4`)."""
    address, _, port = peer.rpartition(":")
    return address if address and port.isdigit() else peer
