"""The attestation bundle file: exact round trip of the logged envelope, strict parsing."""

from __future__ import annotations

import json

import pytest

from federation.errors import InvalidInputError
from federation_node.tlog.bundle import BUNDLE_FORMAT, Bundle, is_bundle

ENVELOPE = b'{"payload": "eA==", "payloadType": "x", "signatures": []}'


def bundle() -> Bundle:
    return Bundle(
        envelope_json=ENVELOPE,
        leaf_index=3,
        tree_size=8,
        inclusion_proof=(b"\x01" * 32, b"\x02" * 32),
        checkpoint_note=b"certfed.node/qingdao\n8\nAAAA\n\n\xe2\x80\x94 k sig\n",
    )


def test_a_bundle_survives_its_json_byte_for_byte() -> None:
    original = bundle()
    again = Bundle.from_json(original.to_json())
    assert again == original
    assert again.envelope_json == ENVELOPE


def test_a_bare_envelope_is_not_taken_for_a_bundle() -> None:
    assert is_bundle(bundle().to_json())
    assert not is_bundle(ENVELOPE)
    assert not is_bundle(b"\xff not json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "other"}, "bundle.format"),
        ({"leaf_index": -1}, "bundle.leaf_index"),
        ({"tree_size": True}, "bundle.tree_size"),
        ({"inclusion_proof": ["AAAA"]}, "bundle.inclusion_proof[0]"),
        ({"inclusion_proof": ["not base64!"]}, "bundle.inclusion_proof[0]"),
        ({"checkpoint": 7}, "bundle.checkpoint"),
        ({"envelope_json": None}, "bundle.envelope_json"),
    ],
)
def test_a_malformed_bundle_is_refused_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    document = json.loads(bundle().to_json())
    document.update(change)
    with pytest.raises(InvalidInputError) as refused:
        Bundle.from_json(json.dumps(document).encode())
    assert refused.value.field == field


def test_the_format_is_named_in_the_file() -> None:
    assert json.loads(bundle().to_json())["format"] == BUNDLE_FORMAT
