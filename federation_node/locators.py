"""Subject locators as a node computes them: through the registry's oblivious PRF.

What this module promises:

* A node holds no locator key. `Locators.locate` validates and normalises an identity number,
  blinds it (signing.oprf, a fresh blind every time), has the registry evaluate the blinded
  element (`EvaluateLocators` over mutual TLS), unblinds and finalises (a batch's blinds
  inverted together, `oprf.finalize_many`): the registry never sees the identity and the node
  never sees the key. Without a registry (`evaluate` is None) or while it is unreachable, no
  locator can be computed: `LocatorsUnavailableError`.
* `prefetch` computes many at once, in batches of `federation.limits.LOCATOR_BATCH` with
  `CALLS_IN_FLIGHT` of them under way together, for a roll import or a feed; every locator
  computed is kept in a bounded in-memory cache per identity (the node knows its own people),
  so a batch already prefetched costs no further call. A caller that already holds some of
  them (the roll import: the locators of people on the roll, found by roll key) passes
  `known`, and those cost no call either. A batch that fails fails the prefetch.
* A bulk caller (a roll import, registering people in bulk) passes `keep`: evaluations the
  office keeps for its federation work (requests from other offices, a clerk's registration or
  certification), which the registry's daily quota counts with everything else. When the
  registry's latest answer left fewer than a batch's new people plus `keep` for today, the batch
  is refused with RESOURCE_EXHAUSTED and a retry-after until 00:00 UTC, so an import of a roll
  as large as the quota cannot stop the office answering the federation for the rest of the day.
* Identity numbers never reach an error message or a log line from here.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

from federation.errors import RateLimitedError, UnavailableError
from federation.limits import LOCATOR_BATCH
from signing import oprf
from signing.identity import IdentityKind
from signing.locator import locator_from_output, locator_input

# Blinded elements in, evaluated elements out, one for one (RegistryClient.evaluate_locators).
Evaluate = Callable[[list[bytes]], list[bytes]]
# Locator inputs in; the locators the caller already holds for some of them, by input.
Known = Callable[[list[bytes]], Mapping[bytes, bytes]]

# (kind, number as given) -> (normalised number, locator), as `Locators.prefetch` answers.
Located = dict[tuple[IdentityKind, str], tuple[str, bytes]]

# Identities whose locators are remembered; about 200 bytes each.
CACHE_SIZE = 200_000
# EvaluateLocators calls one prefetch keeps under way: while the registry evaluates one batch,
# the node blinds the next and finalises the last. libsodium runs without the GIL, so two
# threads keep two cores busy.
CALLS_IN_FLIGHT = 2


class LocatorsUnavailableError(UnavailableError):
    """No locator can be computed now: the node has no registry connection for it."""


class Locators:
    """Computes subject locators through the registry; see the module docstring."""

    def __init__(
        self,
        evaluate: Evaluate | None,
        *,
        cache_size: int = CACHE_SIZE,
        left_today: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._evaluate = evaluate
        # What the registry last said this node may still have evaluated today (None: unknown),
        # and the evaluations prefetches under way have counted against it.
        self._left_today = left_today
        self._claimed = 0
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def locate(self, kind: IdentityKind, number: str) -> tuple[str, bytes]:
        """The normalised number and its locator; raises InvalidIdentityNumberError for a
        number that does not validate."""
        normalised, data = locator_input(kind, number)
        cached = self._cached(data)
        if cached is not None:
            return normalised, cached
        [locator] = self._compute([data])
        return normalised, locator

    def subject_locator(self, kind: IdentityKind, number: str) -> bytes:
        return self.locate(kind, number)[1]

    def prefetch(
        self,
        identities: Iterable[tuple[IdentityKind, str]],
        known: Known | None = None,
        *,
        keep: int = 0,
    ) -> Located:
        """Compute, in batches, the locators of those identities neither cached nor `known`;
        returns the normalised number and locator of each identity that validates, keyed as it
        was given. Numbers that do not validate are skipped: the caller's own checks name
        them. Refused (RateLimitedError) when it would leave fewer than `keep` of today's
        evaluations."""
        given: dict[tuple[IdentityKind, str], tuple[str, bytes]] = {}
        found: dict[bytes, bytes] = {}
        wanted: dict[bytes, None] = {}
        for kind, number in identities:
            try:
                normalised, data = locator_input(kind, number)
            except ValueError:
                continue
            given[(kind, number)] = (normalised, data)
            cached = self._cached(data)
            if cached is not None:
                found[data] = cached
            else:
                wanted[data] = None
        if known is not None and wanted:
            for data, locator in known(list(wanted)).items():
                if data in wanted:
                    del wanted[data]
                    found[data] = locator
        inputs = list(wanted)
        claimed = self._claim(len(inputs), keep) if keep and inputs else 0
        try:
            found.update(self._compute_all(inputs))
        finally:
            if claimed:
                with self._lock:
                    self._claimed -= claimed
        return {
            identity: (normalised, found[data]) for identity, (normalised, data) in given.items()
        }

    def _compute_all(self, inputs: list[bytes]) -> dict[bytes, bytes]:
        """The locators of `inputs`, in batches, `CALLS_IN_FLIGHT` calls under way together."""
        batches = [
            inputs[start : start + LOCATOR_BATCH] for start in range(0, len(inputs), LOCATOR_BATCH)
        ]
        if len(batches) <= 1:
            return dict(zip(inputs, self._compute(inputs), strict=True)) if inputs else {}
        computed: dict[bytes, bytes] = {}
        with ThreadPoolExecutor(CALLS_IN_FLIGHT, thread_name_prefix="locators") as pool:
            futures = [pool.submit(self._compute, batch) for batch in batches]
            try:
                for batch, future in zip(batches, futures, strict=True):
                    computed.update(zip(batch, future.result(), strict=True))
            finally:
                for future in futures:
                    future.cancel()
        return computed

    def _claim(self, wanted: int, keep: int) -> int:
        """Count `wanted` evaluations against what the registry last said is left today, less
        what other prefetches under way have claimed (their answers may not be in yet); refused
        when fewer than `keep` would be left. Returns what it claimed, for the caller to give
        back once its evaluations are done (the registry's answers then count them)."""
        with self._lock:
            left = self._left_today()
            if left is None or left - self._claimed - wanted >= keep:
                self._claimed += wanted
                return wanted
            left = max(left - self._claimed, 0)
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), time.min, UTC)
        wait_s = (midnight - now).total_seconds()
        raise RateLimitedError(
            f"this batch needs {wanted} locator evaluations and the registry has {left} left "
            f"for this office today, of which {keep} are kept for its federation work "
            "(requests from other offices, registrations and certifications at the desk; "
            f"locator_reserve). The quota starts again at 00:00 UTC, in {math.ceil(wait_s / 60)} "
            "min; send the rest then, or ask the registry administrator to raise "
            "locator_daily_quota for a larger roll",
            retry_after_s=max(wait_s, 0.001),
        )

    def _cached(self, data: bytes) -> bytes | None:
        with self._lock:
            locator = self._cache.get(data)
            if locator is not None:
                self._cache.move_to_end(data)
            return locator

    def _compute(self, inputs: list[bytes]) -> list[bytes]:
        if self._evaluate is None:
            raise LocatorsUnavailableError(
                "this node has no registry connection, and locators are computed only through "
                "the registry (EvaluateLocators); start the node with its registry endpoint"
            )
        blinded = [oprf.blind(data) for data in inputs]
        evaluated = self._evaluate([element for _, element in blinded])
        if len(evaluated) != len(inputs):
            raise UnavailableError(
                f"the registry answered {len(evaluated)} evaluations for {len(inputs)} "
                "blinded elements; try again"
            )
        try:
            outputs = oprf.finalize_many(inputs, [scalar for scalar, _ in blinded], evaluated)
        except oprf.InvalidElementError:
            raise UnavailableError(
                "the registry answered an evaluation that is not a group element; try again"
            ) from None
        locators = [locator_from_output(output) for output in outputs]
        with self._lock:
            for data, locator in zip(inputs, locators, strict=True):
                self._cache[data] = locator
                self._cache.move_to_end(data)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return locators
