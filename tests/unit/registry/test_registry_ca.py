"""The federation CA issues only what it checked, with its own extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import InvalidInputError
from federation.transport import (
    PeerKind,
    certificate_request,
    generate_tls_key,
    identity_from_certificate,
)
from registry.ca import FederationCA


@pytest.fixture(scope="module")
def ca() -> FederationCA:
    return FederationCA.create("test-federation")


def _csr(builder_names: list[x509.GeneralName], key: object | None = None) -> bytes:
    private_key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(x509.SubjectAlternativeName(builder_names), critical=False)
        .sign(private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_issued_certificate_names_the_node_with_only_the_cas_extensions(
    ca: FederationCA,
) -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    pem = ca.issue(
        certificate_request(PeerKind.NODE, "foshan-paying", generate_tls_key()),
        PeerKind.NODE,
        "foshan-paying",
        timedelta(days=365),
        now=now,
    )
    certificate = x509.load_pem_x509_certificate(pem)
    certificate.verify_directly_issued_by(ca.certificate)
    identity = identity_from_certificate(certificate)
    assert identity is not None
    assert (identity.kind, identity.name) == (PeerKind.NODE, "foshan-paying")
    assert certificate.not_valid_before_utc == now - timedelta(minutes=5)
    assert certificate.not_valid_after_utc == now + timedelta(days=365)
    extensions = {extension.oid for extension in certificate.extensions}
    assert extensions == {
        x509.SubjectAlternativeName.oid,
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.ExtendedKeyUsage.oid,
        x509.AuthorityKeyIdentifier.oid,
        x509.SubjectKeyIdentifier.oid,
    }
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ca.issued(certificate, now=now)


def test_serial_numbers_are_random(ca: FederationCA) -> None:
    key = generate_tls_key()
    serials = {
        x509.load_pem_x509_certificate(
            ca.issue(
                certificate_request(PeerKind.ADMIN, "alice", key),
                PeerKind.ADMIN,
                "alice",
                timedelta(days=1),
            )
        ).serial_number
        for _ in range(3)
    }
    assert len(serials) == 3


@pytest.mark.parametrize(
    "names",
    [
        [x509.DNSName("other-node.node.certfed")],
        [x509.DNSName("foshan-paying.node.certfed"), x509.DNSName("registry.certfed")],
        [x509.DNSName("foshan-paying.admin.certfed")],
    ],
)
def test_request_whose_name_is_not_exactly_the_node_is_refused(
    ca: FederationCA, names: list[x509.GeneralName]
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        ca.issue(_csr(names), PeerKind.NODE, "foshan-paying", timedelta(days=1))
    assert refused.value.field == "tls_csr_pem"


def test_request_with_a_bad_self_signature_is_refused(ca: FederationCA) -> None:
    pem = certificate_request(PeerKind.NODE, "foshan-paying", generate_tls_key())
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidInputError, match="not signed by its own key") as refused:
        ca.issue(tampered, PeerKind.NODE, "foshan-paying", timedelta(days=1))
    assert refused.value.field == "tls_csr_pem"


def test_request_that_is_not_pem_is_refused(ca: FederationCA) -> None:
    with pytest.raises(InvalidInputError, match="tls_csr_pem"):
        ca.issue(b"not a request", PeerKind.NODE, "foshan-paying", timedelta(days=1))


def test_request_with_a_non_ecdsa_key_is_refused(ca: FederationCA) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidInputError, match="ECDSA"):
        ca.issue(
            _csr([x509.DNSName("foshan-paying.node.certfed")], rsa_key),
            PeerKind.NODE,
            "foshan-paying",
            timedelta(days=1),
        )


def test_certificate_from_another_ca_is_not_ours(ca: FederationCA) -> None:
    other = FederationCA.create("other")
    pem = other.issue(
        certificate_request(PeerKind.NODE, "n-1", generate_tls_key()),
        PeerKind.NODE,
        "n-1",
        timedelta(days=1),
    )
    assert not ca.issued(x509.load_pem_x509_certificate(pem))


def test_ca_saved_and_loaded_is_the_same_ca(ca: FederationCA, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    loaded = FederationCA.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.certificate_pem == ca.certificate_pem
    constraints = loaded.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is True
