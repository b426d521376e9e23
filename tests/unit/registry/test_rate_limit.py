"""Token buckets per caller: a burst, then a steady rate, each caller on its own bucket."""

from __future__ import annotations

import grpc
import pytest

from federation.errors import RateLimitedError
from federation.limits import Limits
from federation.principal import ANONYMOUS, Principal
from federation.rate_limit import MAX_TRACKED_CALLERS, Rate, RateLimiter, peer_address
from federation_node.links.dispatcher import PermanentDeliveryError, _classify

PEER_A = Principal("node", "lanzhou")
PEER_B = Principal("node", "foshan")
CLERK = Principal("operator", "op-1")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> RateLimiter:
    return RateLimiter({"node": Rate(10.0, 5), "operator": Rate(2.0, 2)}, clock=clock)


def test_a_caller_gets_its_burst_then_is_told_when_to_retry() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(5):
        limit(PEER_A, "ipv4:10.0.0.1")
    with pytest.raises(RateLimitedError) as refused:
        limit(PEER_A, "ipv4:10.0.0.1")
    assert refused.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "node:lanzhou is over its limit of 10 calls/s (burst 5); retry in 100 ms" in str(
        refused.value
    )
    assert refused.value.retry_after_s == pytest.approx(0.1)


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(5):
        limit(PEER_A, "-")
    clock.now += 0.11  # one token at 10/s (and change)
    limit(PEER_A, "-")
    with pytest.raises(RateLimitedError):
        limit(PEER_A, "-")


def test_one_flooding_caller_does_not_slow_another() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(5):
        limit(PEER_A, "-")
    with pytest.raises(RateLimitedError):
        limit(PEER_A, "-")
    for _ in range(5):
        limit(PEER_B, "-")
    limit(CLERK, "-")
    limit(CLERK, "-")
    with pytest.raises(RateLimitedError):
        limit(CLERK, "-")


def test_anonymous_callers_are_limited_per_address() -> None:
    clock = Clock()
    limit = RateLimiter({"anonymous": Rate(1.0, 1)}, clock=clock)
    limit(ANONYMOUS, "ipv4:10.0.0.1")
    with pytest.raises(RateLimitedError, match="this address"):
        limit(ANONYMOUS, "ipv4:10.0.0.1")
    limit(ANONYMOUS, "ipv4:10.0.0.2")


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limit = RateLimiter.from_limits(Limits(peer_calls_per_s=0.0, peer_burst=1))
    for _ in range(1000):
        limit(PEER_A, "-")


def test_idle_buckets_are_forgotten_when_there_are_too_many() -> None:
    clock = Clock()
    limit = RateLimiter({"anonymous": Rate(1000.0, 1)}, clock=clock)
    for index in range(MAX_TRACKED_CALLERS + 10):
        limit(ANONYMOUS, f"ipv4:10.{index // 65536}.{index // 256 % 256}.{index % 256}")
        clock.now += 0.01
    assert len(limit._buckets) < MAX_TRACKED_CALLERS


def test_peer_address_drops_the_port() -> None:
    assert peer_address("ipv4:127.0.0.1:5678") == "ipv4:127.0.0.1"
    assert peer_address("ipv6:[::1]:5678") == "ipv6:[::1]"
    assert peer_address("unix:/tmp/socket") == "unix:/tmp/socket"


def test_the_dispatcher_retries_a_delivery_refused_for_rate() -> None:
    refused = _classify(grpc.StatusCode.RESOURCE_EXHAUSTED, "retry in 10 ms")
    assert not isinstance(refused, PermanentDeliveryError)
