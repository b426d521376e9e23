"""RFC 9497 OPRF, ristretto255-SHA512, OPRF mode: the RFC's Appendix A.1.1 vectors, field by
field, and the refusals a server or client must make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pysodium  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing import oprf
from signing.errors import InvalidKeyError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "rfc9497_ristretto255_sha512_oprf.json").read_text()
)
KEY = oprf.derive_key_pair(bytes.fromhex(VECTORS["Seed"]), bytes.fromhex(VECTORS["KeyInfo"]))
CASES = [pytest.param(vector, id=vector["name"]) for vector in VECTORS["vectors"]]


def test_the_vectors_are_the_rfcs_suite_and_mode() -> None:
    assert VECTORS["suite"] == "ristretto255-SHA512"
    assert VECTORS["mode"] == oprf.MODE_OPRF == 0
    assert oprf.CONTEXT_STRING == b"OPRFV1-\x00-ristretto255-SHA512"
    assert len(VECTORS["vectors"]) == 2


def test_derive_key_pair_gives_the_rfcs_secret_key() -> None:
    assert KEY.scalar.hex() == VECTORS["skSm"]


@pytest.mark.parametrize("vector", CASES)
def test_blind_gives_the_rfcs_blinded_element(vector: dict[str, str]) -> None:
    blind = bytes.fromhex(vector["Blind"])
    scalar, blinded = oprf.blind(bytes.fromhex(vector["Input"]), blind)
    assert scalar == blind
    assert blinded.hex() == vector["BlindedElement"]


@pytest.mark.parametrize("vector", CASES)
def test_blind_evaluate_gives_the_rfcs_evaluation_element(vector: dict[str, str]) -> None:
    evaluated = oprf.blind_evaluate(KEY, bytes.fromhex(vector["BlindedElement"]))
    assert evaluated.hex() == vector["EvaluationElement"]


@pytest.mark.parametrize("vector", CASES)
def test_finalize_gives_the_rfcs_output(vector: dict[str, str]) -> None:
    output = oprf.finalize(
        bytes.fromhex(vector["Input"]),
        bytes.fromhex(vector["Blind"]),
        bytes.fromhex(vector["EvaluationElement"]),
    )
    assert output.hex() == vector["Output"]
    assert len(output) == oprf.OUTPUT_SIZE


@pytest.mark.parametrize("vector", CASES)
def test_the_key_holders_evaluate_matches_the_blinded_protocol(vector: dict[str, str]) -> None:
    assert oprf.evaluate(KEY, bytes.fromhex(vector["Input"])).hex() == vector["Output"]


def test_a_fresh_blind_hides_the_input_yet_gives_the_same_output() -> None:
    data = b"resident_id\x0011010519491231002X"
    first_blind, first = oprf.blind(data)
    second_blind, second = oprf.blind(data)
    assert first != second
    assert first_blind != second_blind
    outputs = {
        oprf.finalize(data, blind, oprf.blind_evaluate(KEY, element))
        for blind, element in ((first_blind, first), (second_blind, second))
    }
    assert outputs == {oprf.evaluate(KEY, data)}


def test_another_key_gives_another_output() -> None:
    other = oprf.generate_key()
    assert oprf.evaluate(other, b"\x00") != oprf.evaluate(KEY, b"\x00")


@pytest.mark.parametrize(
    "element",
    [
        pytest.param(bytes(32), id="identity"),
        pytest.param(b"\xff" * 32, id="not-canonical"),
        pytest.param(bytes.fromhex(VECTORS["vectors"][0]["BlindedElement"])[:31], id="short"),
        pytest.param(b"", id="empty"),
    ],
)
def test_the_server_refuses_what_is_not_a_group_element(element: bytes) -> None:
    with pytest.raises(oprf.InvalidElementError):
        oprf.blind_evaluate(KEY, element)


def test_the_client_refuses_an_identity_evaluation() -> None:
    blind, _ = oprf.blind(b"\x00")
    with pytest.raises(oprf.InvalidElementError):
        oprf.finalize(b"\x00", blind, bytes(32))


@pytest.mark.parametrize(
    "scalar",
    [bytes(32), b"\xff" * 32, bytes(31)],
    ids=["zero", "above-the-group-order", "short"],
)
def test_a_server_key_must_be_a_canonical_non_zero_scalar(scalar: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        oprf.ServerKey(scalar)


def test_a_server_key_never_shows_its_scalar() -> None:
    assert KEY.scalar.hex() not in repr(KEY)
    assert repr(KEY.scalar) not in repr(KEY)


def test_expand_message_xmd_matches_rfc9380_sha512_vector() -> None:
    # RFC 9380 K.3, expand_message_xmd(SHA-512), msg "", len_in_bytes 0x20.
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    expected = "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
    assert oprf.expand_message_xmd(b"", dst, 0x20).hex() == expected


def test_finalize_many_gives_the_rfcs_outputs_for_a_batch() -> None:
    vectors = VECTORS["vectors"]
    outputs = oprf.finalize_many(
        [bytes.fromhex(vector["Input"]) for vector in vectors],
        [bytes.fromhex(vector["Blind"]) for vector in vectors],
        [bytes.fromhex(vector["EvaluationElement"]) for vector in vectors],
    )
    assert [output.hex() for output in outputs] == [vector["Output"] for vector in vectors]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=12))
def test_finalize_many_matches_finalising_one_by_one(inputs: list[bytes]) -> None:
    blinded = [oprf.blind(data) for data in inputs]
    evaluated = [oprf.blind_evaluate(KEY, element) for _, element in blinded]
    blinds = [blind for blind, _ in blinded]
    assert oprf.finalize_many(inputs, blinds, evaluated) == [
        oprf.finalize(data, blind, element)
        for data, blind, element in zip(inputs, blinds, evaluated, strict=True)
    ]
    assert oprf.finalize_many(inputs, blinds, evaluated) == [oprf.evaluate(KEY, d) for d in inputs]


def test_invert_many_inverts_every_scalar() -> None:
    scalars = [oprf.random_blind() for _ in range(7)]
    one = (1).to_bytes(oprf.SCALAR_SIZE, "little")
    for scalar, inverse in zip(scalars, oprf.invert_many(scalars), strict=True):
        assert pysodium.crypto_core_ristretto255_scalar_mul(scalar, inverse) == one
    assert oprf.invert_many([]) == []


@pytest.mark.parametrize("blind", [bytes(32), bytes(31)], ids=["zero", "short"])
def test_finalize_many_refuses_a_blind_that_is_no_scalar(blind: bytes) -> None:
    with pytest.raises(oprf.OprfError, match="non-zero"):
        oprf.invert_many([oprf.random_blind(), blind])


def test_finalize_many_refuses_an_identity_evaluation_anywhere_in_the_batch() -> None:
    blinded = [oprf.blind(data) for data in (b"a", b"b", b"c")]
    evaluated = [oprf.blind_evaluate(KEY, element) for _, element in blinded]
    evaluated[1] = bytes(32)
    with pytest.raises(oprf.InvalidElementError):
        oprf.finalize_many([b"a", b"b", b"c"], [blind for blind, _ in blinded], evaluated)


def test_finalize_many_refuses_lists_that_do_not_pair_up() -> None:
    blind, element = oprf.blind(b"a")
    with pytest.raises(oprf.OprfError, match="do not pair up"):
        oprf.finalize_many([b"a", b"b"], [blind], [oprf.blind_evaluate(KEY, element)])
