"""DSSE v1 envelopes: PAE against the spec vector, signing, verification, strict parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.dsse import (
    ATTESTATION_PAYLOAD_TYPE,
    DIRECTORY_PAYLOAD_TYPE,
    Envelope,
    Signature,
    pae,
    sign,
    verify,
)
from signing.errors import (
    InvalidSignatureError,
    MalformedEnvelopeError,
    PayloadTypeMismatchError,
    SigningError,
    UnknownKeyError,
)
from signing.keys import SigningKey, VerifyKey

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "dsse_pae.json").read_text())
ISSUER = SigningKey.generate()
STRANGER = SigningKey.generate()
PAYLOAD = b"\x0a\x10attestation-bytes\x00\xff"


def trusted(*keys: SigningKey) -> dict[str, VerifyKey]:
    return {key.key_id: key.public_key for key in keys}


def replace_signature(envelope: Envelope, signature: Signature) -> Envelope:
    return Envelope(envelope.payload, envelope.payload_type, (signature,))


def test_vector_file_names_its_source() -> None:
    assert "protocol.md" in VECTORS["source"]


@pytest.mark.parametrize("vector", VECTORS["vectors"])
def test_dsse_pae_matches_spec_example(vector: dict[str, str]) -> None:
    encoded = pae(vector["payload_type"], vector["payload_utf8"].encode())
    assert encoded == vector["pae_utf8"].encode()


@pytest.mark.parametrize("vector", VECTORS["vectors"])
def test_spec_example_envelope_parses_with_absent_keyid_as_empty(vector: dict[str, str]) -> None:
    envelope = Envelope.from_json(vector["envelope_json"].encode())
    assert envelope.payload == vector["payload_utf8"].encode()
    assert envelope.payload_type == vector["payload_type"]
    assert envelope.signatures[0].keyid == ""
    assert len(envelope.signatures[0].sig) == 64


def test_pae_counts_utf8_bytes_of_the_type_not_characters() -> None:
    assert pae("类型", b"") == "DSSEv1 6 类型 0 ".encode()


def test_signed_envelope_verifies_with_the_issuer_key() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    verified = verify(envelope, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)
    assert verified.payload == PAYLOAD
    assert verified.payload_type == ATTESTATION_PAYLOAD_TYPE
    assert verified.key_id == ISSUER.key_id
    assert envelope.signatures[0].keyid == ISSUER.key_id


def test_an_envelope_signed_by_two_keys_verifies_under_each_of_them() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER, STRANGER)
    assert [s.keyid for s in envelope.signatures] == [ISSUER.key_id, STRANGER.key_id]
    for key in (ISSUER, STRANGER):
        assert verify(envelope, trusted(key), ATTESTATION_PAYLOAD_TYPE).key_id == key.key_id


def test_signing_with_no_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE)


def test_tampered_payload_is_rejected() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    tampered = Envelope(PAYLOAD + b"\x00", envelope.payload_type, envelope.signatures)
    with pytest.raises(InvalidSignatureError):
        verify(tampered, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def test_tampered_payload_type_is_rejected_even_when_the_caller_expects_it() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    retyped = Envelope(envelope.payload, DIRECTORY_PAYLOAD_TYPE, envelope.signatures)
    with pytest.raises(InvalidSignatureError):
        verify(retyped, trusted(ISSUER), DIRECTORY_PAYLOAD_TYPE)


def test_tampered_signature_is_rejected() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    signature = envelope.signatures[0]
    flipped = bytes([signature.sig[0] ^ 1]) + signature.sig[1:]
    tampered = replace_signature(envelope, Signature(signature.keyid, flipped))
    with pytest.raises(InvalidSignatureError):
        verify(tampered, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def test_signature_by_an_unknown_key_is_rejected_as_unknown() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, STRANGER)
    with pytest.raises(UnknownKeyError):
        verify(envelope, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def test_envelope_without_signatures_is_rejected_as_unknown_key() -> None:
    envelope = Envelope(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ())
    with pytest.raises(UnknownKeyError):
        verify(envelope, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def test_wrong_payload_type_is_rejected_before_signatures_are_checked() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    with pytest.raises(PayloadTypeMismatchError):
        verify(envelope, trusted(ISSUER), DIRECTORY_PAYLOAD_TYPE)


def test_stranger_signature_claiming_a_trusted_keyid_is_invalid() -> None:
    forged = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, STRANGER)
    claimed = replace_signature(forged, Signature(ISSUER.key_id, forged.signatures[0].sig))
    with pytest.raises(InvalidSignatureError):
        verify(claimed, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def test_signature_with_empty_keyid_is_tried_against_every_trusted_key() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    anonymous = replace_signature(envelope, Signature("", envelope.signatures[0].sig))
    verified = verify(anonymous, trusted(STRANGER, ISSUER), ATTESTATION_PAYLOAD_TYPE)
    assert verified.key_id == ISSUER.key_id


def test_one_good_signature_among_unknown_and_bad_ones_suffices() -> None:
    good = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER).signatures[0]
    unknown = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, STRANGER).signatures[0]
    bad = Signature(ISSUER.key_id, bytes(64))
    envelope = Envelope(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, (unknown, bad, good))
    assert verify(envelope, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE).key_id == ISSUER.key_id


def test_json_round_trip_preserves_payload_bytes_and_signatures() -> None:
    envelope = sign(PAYLOAD, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_to_json_is_compact_with_sorted_keys() -> None:
    envelope = Envelope(b"hi", "t", (Signature("k", b"\x01"),))
    expected = b'{"payload":"aGk=","payloadType":"t","signatures":[{"keyid":"k","sig":"AQ=="}]}'
    assert envelope.to_json() == expected


def test_from_json_accepts_url_safe_and_unpadded_base64() -> None:
    payload = b"\xfb\xff\xfe"
    envelope = sign(payload, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    document = json.loads(envelope.to_json())
    document["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    document["signatures"][0]["sig"] = (
        base64.urlsafe_b64encode(envelope.signatures[0].sig).decode().rstrip("=")
    )
    parsed = Envelope.from_json(json.dumps(document).encode())
    assert parsed == envelope
    verify(parsed, trusted(ISSUER), ATTESTATION_PAYLOAD_TYPE)


def valid_document() -> dict[str, Any]:
    return {
        "payload": "aGVsbG8=",
        "payloadType": ATTESTATION_PAYLOAD_TYPE,
        "signatures": [{"keyid": "k", "sig": "AQID"}],
    }


def without(name: str) -> dict[str, Any]:
    document = valid_document()
    del document[name]
    return document


def with_member(name: str, value: object) -> dict[str, Any]:
    document = valid_document()
    document[name] = value
    return document


def with_signature(signature: object) -> dict[str, Any]:
    return with_member("signatures", [signature])


MALFORMED_DOCUMENTS = {
    "missing payload": without("payload"),
    "missing payloadType": without("payloadType"),
    "missing signatures": without("signatures"),
    "payload not a string": with_member("payload", 5),
    "payload not base64": with_member("payload", "not base64!"),
    "payload bad padding": with_member("payload", "aGVsbG8==="),
    "payload non-canonical base64": with_member("payload", "aGVsbG9="),
    "payload mixed alphabets": with_member("payload", "+-AA"),
    "payload impossible length": with_member("payload", "aGVsb"),
    "payloadType not a string": with_member("payloadType", ["x"]),
    "signatures not a list": with_member("signatures", {"keyid": "k", "sig": "AQID"}),
    "signature not an object": with_signature("AQID"),
    "signature missing sig": with_signature({"keyid": "k"}),
    "sig not a string": with_signature({"keyid": "k", "sig": 1}),
    "keyid not a string": with_signature({"keyid": 1, "sig": "AQID"}),
    "sig not base64": with_signature({"keyid": "k", "sig": "A*B"}),
}


@pytest.mark.parametrize("document", MALFORMED_DOCUMENTS.values(), ids=MALFORMED_DOCUMENTS.keys())
def test_malformed_envelope_fields_are_rejected(document: dict[str, Any]) -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.from_json(json.dumps(document).encode())


MALFORMED_TEXTS = {
    "empty": b"",
    "not json": b"payload",
    "truncated": b'{"payload":"aGk=",',
    "array": b"[]",
    "string": b'"envelope"',
    "not utf-8": b'{"payload":"\xff"}',
    "duplicate member": (b'{"payload":"aGk=","payload":"aGV5","payloadType":"t","signatures":[]}'),
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("data", MALFORMED_TEXTS.values(), ids=MALFORMED_TEXTS.keys())
def test_malformed_envelope_json_is_rejected(data: bytes) -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.from_json(data)


def test_envelope_over_the_size_limit_is_rejected() -> None:
    envelope = sign(b"x" * 1000, ATTESTATION_PAYLOAD_TYPE, ISSUER)
    data = envelope.to_json()
    assert Envelope.from_json(data, max_bytes=len(data)) == envelope
    with pytest.raises(MalformedEnvelopeError):
        Envelope.from_json(data, max_bytes=len(data) - 1)


def test_envelope_with_too_many_signatures_is_rejected() -> None:
    signature = Signature("k", b"\x01")
    data = Envelope(b"", "t", (signature,) * 3).to_json()
    with pytest.raises(MalformedEnvelopeError):
        Envelope.from_json(data, max_signatures=2)


def test_unknown_members_are_ignored() -> None:
    document = valid_document() | {"extension": {"any": 1}}
    assert Envelope.from_json(json.dumps(document).encode()).payload == b"hello"


def test_every_error_is_a_signing_error() -> None:
    for error in (
        InvalidSignatureError,
        MalformedEnvelopeError,
        PayloadTypeMismatchError,
        UnknownKeyError,
    ):
        assert issubclass(error, SigningError)


@given(payload=st.binary(max_size=4096), payload_type=st.text(max_size=64))
def test_any_payload_round_trips_through_json_and_verifies(
    payload: bytes, payload_type: str
) -> None:
    envelope = sign(payload, payload_type, ISSUER)
    parsed = Envelope.from_json(envelope.to_json())
    assert parsed == envelope
    verified = verify(parsed, trusted(ISSUER), payload_type)
    assert verified.payload == payload


@pytest.mark.parametrize("payload_type", ["t", 'a "quoted" \\ type\n', "ünïcode\u2028", ""])
@pytest.mark.parametrize("keyids", [[], ["k"], ['key "1" é', ""]])
def test_to_json_writes_what_json_dumps_writes(payload_type: str, keyids: list[str]) -> None:
    envelope = Envelope(
        bytes(range(200)),
        payload_type,
        tuple(Signature(keyid, bytes([n]) * 64) for n, keyid in enumerate(keyids)),
    )
    document = {
        "payload": base64.b64encode(envelope.payload).decode(),
        "payloadType": payload_type,
        "signatures": [
            {"keyid": signature.keyid, "sig": base64.b64encode(signature.sig).decode()}
            for signature in envelope.signatures
        ],
    }
    expected = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    assert envelope.to_json() == expected
    assert Envelope.from_json(envelope.to_json()) == envelope
