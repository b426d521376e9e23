"""Sending a batch again while the node is out of reach, and telling the operator so.

The call here is a function that fails as a gRPC stub would (an RpcError with a status); that an
importer rides out a real node's restart is tests/faults/test_feed_crash.py and
test_roll_crash.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest

from adapters.desk_batches import RETRY_AFTER_KEY, RETRY_ATTEMPTS, RETRY_BUDGET_S, send_batch
from federation.errors import CertfedError, InvalidInputError, UnavailableError


class Failure(grpc.RpcError, grpc.Call):
    """A finished call that failed, as a stub raises it."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailer: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._code, self._details, self._trailer = code, details, tuple(trailer)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:  # (key, value) pairs, as a stub gives them
        return self._trailer

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class Node:
    """Answers `answers` in turn: an exception is raised, anything else returned."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, request: str, *, timeout: float) -> str:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)


def refused(message: str) -> CertfedError:
    return InvalidInputError("batch", message)


def test_the_default_budget_outlasts_a_node_restart_and_the_time_bound_governs() -> None:
    # systemd restarts a crashed node after 5 s, and it takes seconds more to start.
    assert RETRY_BUDGET_S >= 60
    # 0.5 s doubling to 10 s: the attempts alone would wait longer than the time bound.
    assert 0.5 * (2**5 - 1) + 10 * (RETRY_ATTEMPTS - 6) > RETRY_BUDGET_S


def test_a_batch_the_node_did_not_take_is_sent_again_and_the_operator_told() -> None:
    node = Node(Failure(grpc.StatusCode.UNAVAILABLE, "connection refused"), "stored")
    told: list[str] = []
    answer = send_batch(node, "batch", name="RecordSignals", refused=refused, waiting=told.append)
    assert answer == "stored"
    assert node.calls == 2
    assert len(told) == 1
    assert told[0].startswith(
        "RecordSignals: no answer from the node (UNAVAILABLE: connection refused); "
        "sending the batch again in "
    )
    assert told[0].endswith(f"(attempt 2 of at most {RETRY_ATTEMPTS}, within 60 s)")


def test_a_node_out_of_reach_past_the_budget_stops_the_batch_as_unavailable() -> None:
    node = Node(*[Failure(grpc.StatusCode.UNAVAILABLE, "connection refused")] * 3)
    told: list[str] = []
    with pytest.raises(UnavailableError, match="UpsertBeneficiaries failed: UNAVAILABLE"):
        send_batch(
            node,
            "batch",
            name="UpsertBeneficiaries",
            refused=refused,
            attempts=3,
            max_delay_s=30,
            waiting=told.append,
        )
    assert node.calls == 3
    assert len(told) == 2


def test_a_refused_batch_is_not_sent_again() -> None:
    node = Node(Failure(grpc.StatusCode.INVALID_ARGUMENT, "signals[3]: unknown source"))
    told: list[str] = []
    with pytest.raises(InvalidInputError, match="unknown source"):
        send_batch(node, "batch", name="RecordSignals", refused=refused, waiting=told.append)
    assert node.calls == 1
    assert told == []


def test_a_rate_limit_is_waited_out_as_the_node_asks_without_a_notice() -> None:
    limited = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "over its limit", [(RETRY_AFTER_KEY, "50")]
    )
    node = Node(limited, "stored")
    told: list[str] = []
    started = time.monotonic()
    answer = send_batch(node, "batch", name="RecordSignals", refused=refused, waiting=told.append)
    assert answer == "stored"
    assert time.monotonic() - started < 0.5
    assert told == []


def test_a_pause_longer_than_the_budget_stops_at_once_with_the_nodes_message() -> None:
    quota = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the daily quota starts again at 00:00 UTC",
        [(RETRY_AFTER_KEY, str(3_600_000))],
    )
    node = Node(quota)
    with pytest.raises(UnavailableError, match="starts again at 00:00 UTC"):
        send_batch(node, "batch", name="RecordSignals", refused=refused)
    assert node.calls == 1
