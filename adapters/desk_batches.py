"""Sending a batch of rows to a node's DeskService: retried while the node is out of reach.

Feeds and rolls send their rows in batches through idempotent RPCs (RecordSignals,
UpsertBeneficiaries): a batch that was applied but whose answer was lost comes back on the
retry as duplicates or unchanged rows, so a transient failure is retried with exponential
backoff and jitter, bounded in attempts and time: by default for about a minute, longer than a
node takes to come back from a restart (a rolling upgrade, or systemd restarting it 5 s after a
crash), and the caller is told each time it waits. A call over the operator's rate limit is
retried after the pause the node names, unless that pause is longer than the retries' whole
budget (a daily quota that starts again at midnight): then the import stops with the node's
message, and running it again later sends what is left. A batch the node refuses as invalid is the
caller's `refused` error; a node still out of reach after the retries is UnavailableError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from federation.desk_client import describe_rpc_error
from federation.errors import CertfedError, UnavailableError, is_transient

# The trailer in which a node's rate limiter says how long to wait (federation.rpc).
RETRY_AFTER_KEY = "retry-after-ms"
# A batch of thousands of rows may take a busy node far longer than an ordinary call: its deadline
# is long enough that the importer never sends a batch again while the node is still saving it.
BATCH_CALL_TIMEOUT_S = 300.0
# How long a batch is sent again while the node is out of reach: the time bound governs (the
# waits grow from 0.5 s to 10 s, so twelve attempts would wait 75 s).
RETRY_ATTEMPTS = 12
RETRY_BUDGET_S = 60.0
Request = TypeVar("Request")
Response = TypeVar("Response")


def send_batch(
    call: Callable[..., Response],
    request: Request,
    *,
    name: str,
    refused: Callable[[str], CertfedError],
    attempts: int = RETRY_ATTEMPTS,
    max_delay_s: float = RETRY_BUDGET_S,
    waiting: Callable[[str], None] | None = None,
) -> Response:
    """`call(request)`, retried while the node cannot be reached; `name` is the RPC's name.
    `waiting`, if given, is told in a line an operator can read each time a batch the node did
    not answer waits to be sent again (not when it only waits out the operator's rate limit)."""
    backoff = wait_exponential_jitter(multiplier=0.5, max=10.0)

    def wait(state: RetryCallState) -> float:
        # A rate-limited call waits as long as the node asks, no more; anything else backs off.
        failure = state.outcome.exception() if state.outcome is not None else None
        pause = rate_limit_pause(failure) if failure is not None else None
        return pause if pause is not None else float(backoff(state))

    def worth_waiting(error: BaseException) -> bool:
        # A pause longer than the whole retry budget (a daily quota until midnight) is not
        # slept through: the import stops and says when to run it again.
        pause = rate_limit_pause(error)
        return is_transient(error) or (pause is not None and pause <= max_delay_s)

    def tell(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        if waiting is None or not isinstance(failure, grpc.RpcError):
            return
        if rate_limit_pause(failure) is not None:
            return
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        waiting(
            f"{name}: no answer from the node ({describe_rpc_error(failure)}); sending the "
            f"batch again in {pause:.1f} s (attempt {state.attempt_number + 1} of at most "
            f"{attempts}, within {max_delay_s:g} s)"
        )

    retrying = Retrying(
        retry=retry_if_exception(worth_waiting),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay_s),
        wait=wait,
        before_sleep=tell,
        reraise=True,
    )
    try:
        return retrying(call, request, timeout=BATCH_CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise refused(error.details() or "refused") from None
        raise UnavailableError(f"{name} failed: {describe_rpc_error(error)}") from None


def rate_limit_pause(error: BaseException) -> float | None:
    """Seconds a RESOURCE_EXHAUSTED answer asks the caller to wait (its `retry-after-ms`
    trailer), or None when the error is not a rate limit's refusal."""
    if not isinstance(error, grpc.RpcError) or error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailer = getattr(error, "trailing_metadata", None)
    for key, value in (trailer() if trailer is not None else None) or ():
        if key == RETRY_AFTER_KEY:
            return max(0.0, int(value) / 1000)
    return None
