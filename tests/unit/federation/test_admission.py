"""What a caller may hold before it is authenticated, and how many streams after."""

from __future__ import annotations

import pytest

from federation.errors import RateLimitedError
from federation.limits import Limits
from federation.principal import ANONYMOUS, Principal
from federation.rate_limit import MAX_TRACKED_CALLERS, Admission, StreamSlots

LIMITS = Limits(
    max_pending_calls_per_connection=2,
    max_pending_calls_per_address=3,
    failed_auth_per_s=1.0,
    failed_auth_burst=2,
    max_streams=3,
    max_streams_per_caller=2,
)
CONNECTION_1 = "ipv4:10.0.0.1:40001"
CONNECTION_2 = "ipv4:10.0.0.1:40002"
OTHER_ADDRESS = "ipv4:10.0.0.2:40001"
TOKEN = b"digest of a clerk's token"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pending_calls_are_bounded_per_connection_and_per_address() -> None:
    admission = Admission(LIMITS)
    first = admission.admit(CONNECTION_1, None)
    admission.admit(CONNECTION_1, None)
    with pytest.raises(RateLimitedError, match="this connection already has 2 calls waiting"):
        admission.admit(CONNECTION_1, None)
    admission.admit(CONNECTION_2, None)
    with pytest.raises(RateLimitedError, match="this address already has 3 calls waiting"):
        admission.admit(CONNECTION_2, None)
    admission.admit(OTHER_ADDRESS, None)  # another address is not affected
    first.release()
    first.release()  # twice frees one place, not two
    admission.admit(CONNECTION_1, None)
    with pytest.raises(RateLimitedError):
        admission.admit(CONNECTION_2, None)


def test_an_address_that_keeps_failing_is_refused_before_its_credentials_are_read() -> None:
    clock = Clock()
    admission = Admission(LIMITS, clock=clock)
    for _ in range(2):
        admission.admit(CONNECTION_1, b"wrong").release()
        admission.failed(CONNECTION_1)
    with pytest.raises(RateLimitedError, match="too many calls that failed to sign in") as refused:
        admission.admit(CONNECTION_2, b"another wrong one")
    assert refused.value.retry_after_s == pytest.approx(1.0)
    admission.admit(OTHER_ADDRESS, b"wrong").release()
    clock.now += 1.0
    admission.admit(CONNECTION_2, b"wrong").release()


def test_a_credential_that_passed_recently_is_let_through_a_failing_address() -> None:
    admission = Admission(LIMITS, clock=Clock())
    admission.admit(CONNECTION_1, TOKEN).release()
    admission.succeeded(TOKEN)
    for _ in range(3):
        admission.failed(CONNECTION_2)
    with pytest.raises(RateLimitedError):
        admission.admit(CONNECTION_2, None)
    admission.admit(CONNECTION_2, TOKEN).release()


def test_the_table_of_failing_addresses_stays_bounded() -> None:
    clock = Clock()
    admission = Admission(LIMITS, clock=clock)
    for number in range(MAX_TRACKED_CALLERS + 50):
        admission.failed(f"ipv6:[2001:db8::{number:x}]:443")
    assert len(admission._failed) <= MAX_TRACKED_CALLERS


def test_streams_are_bounded_per_caller_and_in_total() -> None:
    slots = StreamSlots(LIMITS)
    lanzhou, foshan = Principal("node", "lanzhou"), Principal("node", "foshan")
    close_first = slots.open(lanzhou, CONNECTION_1)
    slots.open(lanzhou, CONNECTION_1)
    with pytest.raises(RateLimitedError, match="node:lanzhou already has 2 open streams"):
        slots.open(lanzhou, CONNECTION_1)
    slots.open(foshan, CONNECTION_2)
    with pytest.raises(RateLimitedError, match="its maximum of 3 streams"):
        slots.open(ANONYMOUS, OTHER_ADDRESS)
    close_first()
    close_first()  # twice frees one slot, not two
    slots.open(lanzhou, CONNECTION_1)
    with pytest.raises(RateLimitedError):
        slots.open(foshan, CONNECTION_2)
