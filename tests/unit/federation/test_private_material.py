"""Private key material: read only from owner-only files, never shown by repr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from federation.transport import TlsMaterial, generate_tls_key
from federation_node.keystore import NodeKeys
from registry.ca import FederationCA
from signing import oprf
from signing.errors import KeyFileError
from signing.keys import HpkeKey, SigningKey, write_private_file

LOCATOR_KEY = bytes(range(32))


def _tls_files(tmp_path: Path, key_mode: int) -> tuple[Path, Path, Path]:
    key, certificate, ca = tmp_path / "tls.key", tmp_path / "tls.pem", tmp_path / "ca.pem"
    key.write_bytes(generate_tls_key())
    os.chmod(key, key_mode)
    certificate.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    return certificate, key, ca


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_tls_key_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    certificate, key, ca = _tls_files(tmp_path, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        TlsMaterial.load(certificate, key, ca)


def test_an_owner_only_tls_key_is_read(tmp_path: Path) -> None:
    certificate, key, ca = _tls_files(tmp_path, 0o600)
    assert TlsMaterial.load(certificate, key, ca).private_key_pem == key.read_bytes()


def test_no_repr_shows_private_key_material(tmp_path: Path) -> None:
    tls_key = generate_tls_key()
    tls = TlsMaterial(b"certificate", tls_key, b"ca")
    keys = NodeKeys(
        signing=SigningKey.generate(),
        hpke=HpkeKey.generate(),
        tls=tls,
        root_public_key=SigningKey.generate().public_key,
    )
    ca = FederationCA.create("cn-test")
    locator_key = oprf.generate_key()
    for shown in (repr(tls), repr(keys), repr(ca), repr(locator_key)):
        assert "PRIVATE KEY" not in shown
        assert locator_key.scalar.hex() not in shown
        assert repr(locator_key.scalar) not in shown
        assert tls_key.decode()[40:80] not in shown


def test_write_private_file_makes_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "locator.key"
    write_private_file(path, LOCATOR_KEY)
    assert path.stat().st_mode & 0o777 == 0o600
