"""A node computes locators only through the registry's OPRF: batched, cached per identity, and
not at all without a registry."""

from __future__ import annotations

import pytest

from federation_node.locators import Locators, LocatorsUnavailableError
from signing import oprf
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind
from signing.locator import locator_with_key

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
    locators.prefetch([*people, *people, (IdentityKind.RESIDENT_ID, "not a number")])
    assert registry.calls == [len(NUMBERS)]
    for kind, number in people:
        locators.locate(kind, number)
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
