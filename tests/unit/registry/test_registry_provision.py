"""A new registry's key material: complete, private where it must be, never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from federation.envelopes import envelope_from_proto, envelope_to_proto
from federation.errors import InvalidInputError, PreconditionError
from federation.transport import PeerKind, identity_from_certificate
from registry.ca import FederationCA
from registry.config import RegistryPaths, load_registry_config
from registry.provision import init_registry
from signing import dsse
from signing.keys import SigningKey, VerifyKey
from signing.note import COSIGNATURE_V1_TYPE, NoteVerifier
from signing.oprf import ServerKey


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_keys_certificates_trust_bundle_and_config(tmp_path: Path) -> None:
    init_registry(tmp_path, "test-fed", admin_name="alice")
    paths = RegistryPaths(tmp_path)
    for secret in (
        paths.root_key,
        paths.ca_key,
        paths.registry_key,
        paths.locator_oprf_key,
        paths.witness_key,
        paths.admin_key("alice"),
    ):
        assert _mode(secret) == 0o600, secret
    # An RFC 9497 ristretto255 scalar, below the group order.
    assert ServerKey(paths.locator_oprf_key.read_bytes())
    root = SigningKey.load(paths.root_key)
    assert VerifyKey.from_raw(bytes.fromhex(paths.root_public_key.read_text())) == root.public_key
    assert sorted(p.name for p in paths.trust_dir.iterdir()) == [
        "ca.pem",
        "root.pub",
        "witness.vkey",
    ]
    assert paths.trust_root_public_key.read_bytes() == paths.root_public_key.read_bytes()
    assert paths.trust_ca_certificate.read_bytes() == paths.ca_certificate.read_bytes()

    ca = FederationCA.load(paths.ca_certificate, paths.ca_key)
    for certificate_path, kind, name in (
        (paths.registry_certificate, PeerKind.REGISTRY, "registry"),
        (paths.admin_certificate("alice"), PeerKind.ADMIN, "alice"),
    ):
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        assert ca.issued(certificate)
        identity = identity_from_certificate(certificate)
        assert identity is not None
        assert (identity.kind, identity.name) == (kind, name)

    config = load_registry_config(paths.config_file, environ={})
    assert config.federation_id == "test-fed"
    assert config.data_dir == tmp_path.resolve()


def test_init_publishes_the_witness_cosigner_key_and_keeps_an_existing_one(
    tmp_path: Path,
) -> None:
    existing = SigningKey.generate()
    existing.save(RegistryPaths(tmp_path).witness_key)
    init_registry(tmp_path, "test-fed")
    paths = RegistryPaths(tmp_path)
    verifier = NoteVerifier.from_vkey(paths.trust_witness_vkey.read_text().strip())
    assert verifier.name == "certfed.registry/test-fed"
    assert verifier.signature_type == COSIGNATURE_V1_TYPE
    assert verifier.public_key == existing.public_key
    assert verifier.public_key != SigningKey.load(paths.root_key).public_key


def test_init_refuses_to_overwrite_any_existing_key(tmp_path: Path) -> None:
    init_registry(tmp_path, "test-fed")
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(PreconditionError, match="refusing to overwrite"):
        init_registry(tmp_path, "test-fed")
    assert (tmp_path / "ca.key").read_bytes() == before


def test_init_refuses_a_bad_federation_id_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as refused:
        init_registry(tmp_path / "new", "Not Valid")
    assert refused.value.field == "federation_id"
    assert not (tmp_path / "new").exists()


def test_envelope_survives_the_round_trip_through_its_proto_unchanged() -> None:
    key = SigningKey.generate()
    envelope = dsse.sign(b"\x00payload bytes", dsse.DIRECTORY_PAYLOAD_TYPE, key)
    assert envelope_from_proto(envelope_to_proto(envelope)) == envelope
    dsse.verify(
        envelope_from_proto(envelope_to_proto(envelope)),
        {key.key_id: key.public_key},
        dsse.DIRECTORY_PAYLOAD_TYPE,
    )
