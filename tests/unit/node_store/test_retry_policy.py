"""Outbox backoff: exponential from initial_backoff_s, jitter within jitter_s, never above the
bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from federation_node.config import DispatchConfig

policies = st.builds(
    DispatchConfig,
    initial_backoff_s=st.floats(min_value=0.01, max_value=5.0),
    max_backoff_s=st.floats(min_value=0.01, max_value=3600.0),
    jitter_s=st.floats(min_value=0.0, max_value=5.0),
)


@given(policy=policies, attempts=st.integers(min_value=1, max_value=10_000))
def test_backoff_stays_between_the_exponential_and_the_bound(
    policy: DispatchConfig, attempts: int
) -> None:
    wait = policy.backoff_s(attempts)
    assert 0.0 <= wait <= policy.max_backoff_s
    try:
        exponential = policy.initial_backoff_s * 2.0 ** (attempts - 1)
    except OverflowError:
        exponential = float("inf")
    assert wait >= min(exponential, policy.max_backoff_s)
    assert wait <= exponential + policy.jitter_s


@given(
    policy=policies.map(
        lambda p: DispatchConfig(
            initial_backoff_s=p.initial_backoff_s, max_backoff_s=p.max_backoff_s, jitter_s=0.0
        )
    )
)
def test_backoff_without_jitter_never_shrinks(policy: DispatchConfig) -> None:
    waits = [policy.backoff_s(attempt) for attempt in range(1, 60)]
    assert waits == sorted(waits)
    assert waits[-1] == policy.max_backoff_s


def test_default_policy_matches_the_dispatch_defaults() -> None:
    policy = DispatchConfig()
    assert (policy.initial_backoff_s, policy.max_backoff_s) == (0.2, 30.0)
    assert (policy.max_attempts, policy.max_age_s) == (50, 7 * 24 * 3600.0)
