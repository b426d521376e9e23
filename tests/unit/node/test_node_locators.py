"""A node computes locators only through the registry's OPRF: batched, cached per identity, and
not at all without a registry."""

from __future__ import annotations

import itertools
import threading
from datetime import date, timedelta

import pytest

from federation.errors import RateLimitedError, UnavailableError
from federation.limits import LOCATOR_BATCH
from federation_node.locators import CALLS_IN_FLIGHT, Locators, LocatorsUnavailableError
from signing import oprf
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind, validate_identity_number
from signing.locator import locator_with_key
from tests.helpers.identities import resident_id

KEY = oprf.generate_key()
NUMBERS = ["11010519491231002X", "440106198202020555", "A123456(3)"]


class InProcessEvaluation:
    """The registry's evaluation, in process: the key stays here, the node sees only elements."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def evaluate(self, blinded: list[bytes]) -> list[bytes]:
        self.calls.append(len(blinded))
        return [oprf.blind_evaluate(KEY, element) for element in blinded]


def _kind(number: str) -> IdentityKind:
    return IdentityKind.HKID if number.startswith("A") else IdentityKind.RESIDENT_ID


def test_a_node_without_registry_access_cannot_compute_a_locator() -> None:
    locators = Locators(None)
    with pytest.raises(LocatorsUnavailableError, match="only through the registry") as refused:
        locators.locate(IdentityKind.RESIDENT_ID, NUMBERS[0])
    assert NUMBERS[0] not in str(refused.value)
    with pytest.raises(LocatorsUnavailableError):
        locators.prefetch([(IdentityKind.RESIDENT_ID, NUMBERS[0])])


def test_the_locator_through_the_registry_is_the_key_holders() -> None:
    registry = InProcessEvaluation()
    locators = Locators(registry.evaluate)
    for number in NUMBERS:
        normalised, locator = locators.locate(_kind(number), number.lower())
        assert locator == locator_with_key(KEY, _kind(number), number)
        assert normalised.upper() == normalised


def test_prefetch_batches_and_the_cache_answers_afterwards() -> None:
    registry = InProcessEvaluation()
    locators = Locators(registry.evaluate)
    people = [(_kind(number), number) for number in NUMBERS]
    located = locators.prefetch([*people, *people, (IdentityKind.RESIDENT_ID, "not a number")])
    assert registry.calls == [len(NUMBERS)]
    assert located == {
        (kind, number): (
            validate_identity_number(kind, number),
            locator_with_key(KEY, kind, number),
        )
        for kind, number in people
    }
    for kind, number in people:
        locators.locate(kind, number)
    assert locators.prefetch(people[:1]) == {people[0]: located[people[0]]}
    assert registry.calls == [len(NUMBERS)]


def test_the_cache_is_bounded() -> None:
    registry = InProcessEvaluation()
    locators = Locators(registry.evaluate, cache_size=1)
    locators.locate(IdentityKind.RESIDENT_ID, NUMBERS[0])
    locators.locate(IdentityKind.RESIDENT_ID, NUMBERS[1])
    locators.locate(IdentityKind.RESIDENT_ID, NUMBERS[0])
    assert registry.calls == [1, 1, 1]


def test_an_invalid_number_is_refused_before_any_call() -> None:
    registry = InProcessEvaluation()
    with pytest.raises(InvalidIdentityNumberError):
        Locators(registry.evaluate).locate(IdentityKind.RESIDENT_ID, "110105194912310021")
    assert registry.calls == []


def _people(count: int) -> list[tuple[IdentityKind, str]]:
    return [
        (
            IdentityKind.RESIDENT_ID,
            resident_id("440604", date(1940, 1, 1) + timedelta(days=index // 1000), index % 1000),
        )
        for index in range(count)
    ]


def test_a_large_prefetch_keeps_two_registry_calls_under_way_and_gets_every_locator() -> None:
    registry = InProcessEvaluation()
    # Each call waits for another to be under way at the same time: a prefetch that sent its
    # batches one after the other would break the barrier instead.
    together = threading.Barrier(CALLS_IN_FLIGHT, timeout=10)

    def evaluate(blinded: list[bytes]) -> list[bytes]:
        together.wait()
        return registry.evaluate(blinded)

    people = _people(2 * LOCATOR_BATCH)
    locators = Locators(evaluate)
    locators.prefetch(people)
    assert registry.calls == [LOCATOR_BATCH, LOCATOR_BATCH]
    for kind, number in people[:: LOCATOR_BATCH // 5]:
        assert locators.subject_locator(kind, number) == locator_with_key(KEY, kind, number)
    assert registry.calls == [LOCATOR_BATCH, LOCATOR_BATCH]


def test_a_tampered_evaluation_in_one_batch_fails_the_prefetch_and_is_never_cached() -> None:
    registry = InProcessEvaluation()
    tamper = threading.Event()
    tamper.set()
    # Numbered as they start (next() is atomic): batches are evaluated two at a time, so the
    # count of calls made, read once an evaluation is done, may already be past any one call.
    started = itertools.count(1)

    def evaluate(blinded: list[bytes]) -> list[bytes]:
        call = next(started)
        evaluated = registry.evaluate(blinded)
        if call == 2 and tamper.is_set():
            evaluated[7] = bytes(32)
        return evaluated

    people = _people(3 * LOCATOR_BATCH)
    locators = Locators(evaluate)
    with pytest.raises(UnavailableError, match="not a group element") as refused:
        locators.prefetch(people)
    assert not any(number in str(refused.value) for _, number in people)
    tamper.clear()
    for kind, number in people:
        assert locators.subject_locator(kind, number) == locator_with_key(KEY, kind, number)


def test_the_registry_answering_too_few_evaluations_is_refused() -> None:
    registry = InProcessEvaluation()
    locators = Locators(lambda blinded: registry.evaluate(blinded)[:-1])
    with pytest.raises(UnavailableError, match="answered 2 evaluations for 3"):
        locators.prefetch([(_kind(number), number) for number in NUMBERS])


def test_a_prefetch_keeping_a_reserve_counts_the_prefetches_under_way() -> None:
    # The registry last said 1,000 evaluations are left today and the caller keeps 400: a
    # prefetch of 500 passes; a second one while the first is under way is refused (the first's
    # evaluations are not in the registry's answer yet); once the first is done, and the answer
    # says 500, the second is still refused, and a locate (the desk's work) is not.
    registry = InProcessEvaluation()
    left = [1000]
    entered, release = threading.Event(), threading.Event()

    def evaluate(blinded: list[bytes]) -> list[bytes]:
        entered.set()
        release.wait(10)
        answer = registry.evaluate(blinded)
        left[0] -= len(blinded)
        return answer

    locators = Locators(evaluate, left_today=lambda: left[0])
    first = [
        (IdentityKind.RESIDENT_ID, resident_id("110105", date(1949, 1, 1), n)) for n in range(500)
    ]
    second = [
        (IdentityKind.RESIDENT_ID, resident_id("110105", date(1950, 1, 1), n)) for n in range(500)
    ]
    worker = threading.Thread(target=locators.prefetch, args=(first,), kwargs={"keep": 400})
    worker.start()
    assert entered.wait(10)
    with pytest.raises(RateLimitedError, match="has 500 left") as refused:
        locators.prefetch(second, keep=400)
    assert "00:00 UTC" in str(refused.value)
    release.set()
    worker.join(10)
    assert sum(registry.calls) == 500
    with pytest.raises(RateLimitedError, match="has 500 left"):
        locators.prefetch(second, keep=400)
    locators.locate(*second[0])
    assert left[0] == 499
    # Nothing known yet today (or no reserve kept): no refusal.
    assert (
        len(Locators(registry.evaluate, left_today=lambda: None).prefetch(second, keep=400)) == 500
    )
