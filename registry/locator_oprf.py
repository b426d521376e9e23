"""The registry's side of subject locators: the OPRF key, and evaluating members' blinded elements.

What this module promises:

* The locator key (an RFC 9497 ristretto255 scalar) is made by `create_locator_key` when the
  registry is provisioned, kept in `locator_oprf.key` with mode 0600, read back only through
  `signing.keys.read_private_file` (which refuses a file others may read), and never printed:
  `ServerKey` has no repr of its scalar, and no RPC returns it.
* `LocatorEvaluator.evaluate` answers one active node's batch of blinded elements (at most
  `locator_batch_max`), after two limits, both refused with RESOURCE_EXHAUSTED and a message
  saying what to wait for: a per-node token bucket of `locator_rate_per_s` elements a second
  holding up to `locator_burst` (so a roll import's bulk batches pass), and a quota of
  `locator_daily_quota` elements per node per UTC day, counted in the database (across restarts
  and replicas). Every call, answered or refused, leaves one audit record naming the node and
  counts only; the elements themselves are never logged or stored. A call refused for its input
  (INVALID_ARGUMENT) is neither counted nor audited (the interceptor's metrics count it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

import structlog
from sqlalchemy.engine import Engine

from federation.errors import InvalidInputError, PreconditionError, RateLimitedError
from registry import audit_store, locators_store
from registry.config import RegistryConfig, RegistryPaths
from registry.db import transaction
from signing import oprf
from signing.errors import InvalidKeyError
from signing.keys import read_private_file, write_private_file

log = structlog.get_logger("certfed.registry")

EVALUATE_ACTION = "evaluate_locators"
REFUSED_ACTION = "refused:evaluate_locators"


def create_locator_key(paths: RegistryPaths) -> None:
    """Make the registry's locator key (0600); refuses to replace one that exists, since every
    locator in the federation depends on it."""
    if paths.locator_oprf_key.exists():
        raise PreconditionError(
            f"{paths.locator_oprf_key} exists; every locator depends on it, so it is never replaced"
        )
    write_private_file(paths.locator_oprf_key, oprf.generate_key().scalar)


def load_locator_key(paths: RegistryPaths) -> oprf.ServerKey:
    if not paths.locator_oprf_key.exists():
        raise PreconditionError(
            f"{paths.locator_oprf_key} is missing; a registry created before locators were "
            "computed by OPRF makes it with `certfed registry locator-key` (docs/operations.md, "
            "'Moving locators to the OPRF')"
        )
    try:
        return oprf.ServerKey(read_private_file(paths.locator_oprf_key))
    except InvalidKeyError as error:
        raise PreconditionError(f"{paths.locator_oprf_key}: {error}") from None


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Evaluation:
    evaluated: list[bytes]
    remaining_today: int


class LocatorEvaluator:
    """Evaluates blinded elements for member nodes, within their rate and daily quota."""

    def __init__(
        self,
        engine: Engine,
        key: oprf.ServerKey,
        config: RegistryConfig,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._key = key
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def evaluate(self, node_id: str, blinded: Sequence[bytes]) -> Evaluation:
        config = self._config
        if not blinded:
            raise InvalidInputError("blinded_elements", "send at least one blinded element")
        if len(blinded) > config.locator_batch_max:
            raise InvalidInputError(
                "blinded_elements",
                f"{len(blinded)} elements in one call, more than the registry's "
                f"locator_batch_max of {config.locator_batch_max}; send smaller batches",
            )
        for index, element in enumerate(blinded):
            if len(element) != oprf.ELEMENT_SIZE:
                raise InvalidInputError(
                    f"blinded_elements[{index}]",
                    f"a blinded element is {oprf.ELEMENT_SIZE} bytes, this one is {len(element)}",
                )
        now = self._clock()
        try:
            self._take(node_id, len(blinded))
        except RateLimitedError as refused:
            self._refused(node_id, now, len(blinded), refused)
        # Evaluated (within the rate) before the quota counts and audits them, so that a batch
        # refused for an element that is not one leaves nothing in the database.
        try:
            evaluated = [oprf.blind_evaluate(self._key, element) for element in blinded]
        except oprf.InvalidElementError as error:
            raise InvalidInputError("blinded_elements", str(error)) from None
        try:
            total = self._count(node_id, len(blinded), now)
        except RateLimitedError as refused:
            self._refused(node_id, now, len(blinded), refused)
        return Evaluation(evaluated, max(config.locator_daily_quota - total, 0))

    def _refused(
        self, node_id: str, now: datetime, count: int, refused: RateLimitedError
    ) -> NoReturn:
        self._audit(REFUSED_ACTION, node_id, now, f"{count} elements: {refused}")
        raise refused

    def _take(self, node_id: str, count: int) -> None:
        rate = self._config.locator_rate_per_s
        burst = float(self._config.locator_burst)
        with self._lock:
            now = self._monotonic()
            bucket = self._buckets.get(node_id)
            if bucket is None:
                bucket = self._buckets[node_id] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= count:
                bucket.tokens -= count
                return
            wait = (count - bucket.tokens) / rate
        raise RateLimitedError(
            f"node {node_id!r} asked for {count} locator evaluations faster than its rate of "
            f"{rate:g} a second (locator_rate_per_s, burst {burst:.0f}): retry in "
            f"{math.ceil(wait)} s",
            retry_after_s=max(wait, 0.001),
        )

    def _count(self, node_id: str, count: int, now: datetime) -> int:
        quota = self._config.locator_daily_quota
        day = now.date().isoformat()
        with transaction(self._engine) as session:
            total = locators_store.count_evaluations(session, node_id, day, count, quota)
            if total is not None:
                audit_store.record(
                    session,
                    actor=f"node:{node_id}",
                    action=EVALUATE_ACTION,
                    node_id=node_id,
                    at=now,
                    detail=f"{count} elements; {total} of {quota} today",
                )
                return total
            used = locators_store.evaluations_on(session, node_id, day)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
        wait = (midnight - now).total_seconds()
        raise RateLimitedError(
            f"node {node_id!r} has had {used} of its {quota} locator evaluations today "
            f"(locator_daily_quota); {count} more would pass it. The quota starts again at "
            f"00:00 UTC, in {math.ceil(wait / 60)} min; for a larger roll, ask the registry "
            "administrator to raise locator_daily_quota",
            retry_after_s=max(wait, 0.001),
        )

    def _audit(self, action: str, node_id: str, now: datetime, detail: str) -> None:
        with transaction(self._engine) as session:
            audit_store.record(
                session,
                actor=f"node:{node_id}",
                action=action,
                node_id=node_id,
                at=now,
                detail=detail[:1024],
            )
        log.warning("registry.locator_evaluation_refused", node_id=node_id, action=action)
