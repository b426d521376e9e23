"""Key fingerprints as an administrator reads and types them, and the routing table that decides
between several nodes of one region."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from federation.errors import InvalidInputError
from federation.fingerprints import (
    FingerprintMismatchError,
    KeyFingerprints,
    parse_fingerprint,
    signing_key_fingerprint,
)
from federation.transport import PeerKind, certificate_request, generate_tls_key
from federation_node.config import load_node_config, render_node_config
from signing.keys import SigningKey

READABLE = re.compile(r"^(?:[0-9A-F]{4} ){15}[0-9A-F]{4}$")


def fingerprints() -> KeyFingerprints:
    key = SigningKey.generate()
    csr = certificate_request(PeerKind.NODE, "qingdao", generate_tls_key())
    return KeyFingerprints.of_keys(key.public_key.raw, csr)


def test_a_fingerprint_is_sixteen_groups_of_four_hex_digits_and_the_key_id() -> None:
    key = SigningKey.generate()
    printed = signing_key_fingerprint(key.public_key.raw)
    assert READABLE.fullmatch(printed)
    assert parse_fingerprint(printed, "f") == key.key_id


def test_a_typed_fingerprint_may_use_any_case_spaces_or_colons() -> None:
    printed = fingerprints().tls_key
    colons = ":".join(printed.split()).lower()
    assert parse_fingerprint(colons, "f") == parse_fingerprint(printed.replace(" ", ""), "f")


@pytest.mark.parametrize("typed", ["", "3F2A", "ZZ" * 32, "00" * 33])
def test_a_malformed_fingerprint_is_invalid_input_naming_the_field(typed: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^tls_key_fingerprint: a key fingerprint"):
        parse_fingerprint(typed, "tls_key_fingerprint")


def test_confirming_another_keys_fingerprint_fails_naming_which_key() -> None:
    received, other = fingerprints(), fingerprints()
    received.confirm(received.signing_key, received.tls_key, "qingdao")
    with pytest.raises(FingerprintMismatchError, match="signing key fingerprint"):
        received.confirm(other.signing_key, received.tls_key, "qingdao")
    with pytest.raises(FingerprintMismatchError, match="TLS key fingerprint"):
        received.confirm(received.signing_key, other.tls_key, "qingdao")


def test_the_routing_table_is_read_from_node_toml_and_checked(tmp_path: Path) -> None:
    values: dict[str, object] = {
        "node_id": "lanzhou",
        "region_codes": ["620102"],
        "roles": ["paying_office"],
        "registry_endpoint": "127.0.0.1:7400",
        "registry_enrol_endpoint": "127.0.0.1:7401",
        "routing": {"370200": "qingdao-west", "MO": "macau-desk"},
    }
    path = tmp_path / "node.toml"
    path.write_text(render_node_config(values), encoding="utf-8")
    assert load_node_config(path, environ={}).routing == {
        "370200": "qingdao-west",
        "MO": "macau-desk",
    }
    path.write_text(render_node_config({**values, "routing": {"3702": "x"}}), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"^routing\.3702"):
        load_node_config(path, environ={})
