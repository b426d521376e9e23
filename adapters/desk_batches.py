"""Sending a batch of rows to a node's DeskService: retried while the node is out of reach.

Feeds and rolls send their rows in batches through idempotent RPCs (RecordSignals,
UpsertBeneficiaries): a batch that was applied but whose answer was lost comes back on the
retry as duplicates or unchanged rows, so a transient failure is retried with exponential
backoff and jitter, bounded in attempts and time. A batch the node refuses as invalid is the
caller's `refused` error; a node still out of reach after the retries is UnavailableError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from federation.desk_client import describe_rpc_error
from federation.errors import CertfedError, UnavailableError, is_transient

Request = TypeVar("Request")
Response = TypeVar("Response")


def send_batch(
    call: Callable[[Request], Response],
    request: Request,
    *,
    name: str,
    refused: Callable[[str], CertfedError],
    attempts: int,
    max_delay_s: float,
) -> Response:
    """`call(request)`, retried while the node cannot be reached; `name` is the RPC's name."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay_s),
        wait=wait_exponential_jitter(multiplier=0.5, max=10.0),
        reraise=True,
    )
    try:
        return retrying(call, request)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise refused(error.details() or "refused") from None
        raise UnavailableError(f"{name} failed: {describe_rpc_error(error)}") from None
