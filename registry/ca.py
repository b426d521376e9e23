"""The federation certificate authority: the one issuer of every TLS certificate in certfed.

Promises: the CA certifies only what it checked. A certificate request is refused unless it is
a well-formed PKCS#10 request, self-signed by an ECDSA P-256/P-384 key, whose one
subject-alternative name is exactly the federation name of the peer being enrolled
(`federation.transport.tls_name`). What the CA signs carries only extensions the CA chose itself
(never one copied from the request): that one DNS name, CA:false, key usages for an ECDSA TLS
key, serverAuth and clientAuth, and key identifiers; a random 159-bit serial; a notBefore five
minutes in the past so peers with slightly slow clocks accept a fresh certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import InvalidInputError, PreconditionError
from federation.transport import PeerKind, tls_name
from registry.utc import utc_now
from signing.keys import read_private_file, write_private_file

CA_LIFETIME = timedelta(days=3652)
BACKDATE = timedelta(minutes=5)
ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)
CSR_FIELD = "tls_csr_pem"
MAX_CSR_BYTES = 16 * 1024


def check_certificate_request(
    csr_pem: bytes, kind: PeerKind, name: str
) -> x509.CertificateSigningRequest:
    """Parse and check a CSR for `name` of `kind`; raises InvalidInputError naming tls_csr_pem."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidInputError(CSR_FIELD, f"is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidInputError(CSR_FIELD, "is not a PEM PKCS#10 certificate request") from None
    if not csr.is_signature_valid:
        raise InvalidInputError(
            CSR_FIELD, "the request is not signed by its own key (proof of possession failed)"
        )
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ACCEPTED_CURVES):
        raise InvalidInputError(CSR_FIELD, "the TLS key must be an ECDSA P-256 or P-384 key")
    expected = tls_name(kind, name)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InvalidInputError(
            CSR_FIELD, f"has no subject alternative name; it must name exactly {expected}"
        ) from None
    except ValueError:
        raise InvalidInputError(CSR_FIELD, "has unparseable extensions") from None
    names = list(san)
    if names != [x509.DNSName(expected)]:
        raise InvalidInputError(
            CSR_FIELD, f"its subject alternative name must be exactly the one DNS name {expected}"
        )
    return csr


def _key_identifier_extensions(
    builder: x509.CertificateBuilder,
    subject_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePublicKey,
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False
    ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)


@dataclass(frozen=True)
class FederationCA:
    """The CA certificate and its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(cls, federation_id: str, *, now: datetime | None = None) -> FederationCA:
        """A new self-signed CA for the federation, valid for ten years."""
        start = (now or utc_now()) - BACKDATE
        private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = private_key.public_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certfed"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"certfed federation CA {federation_id}"),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        builder = _key_identifier_extensions(builder, public_key, public_key)
        return cls(builder.sign(private_key, hashes.SHA256()), private_key)

    @classmethod
    def load(cls, certificate_path: Path, key_path: Path) -> FederationCA:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        key = serialization.load_pem_private_key(read_private_file(key_path), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PreconditionError(f"{key_path} is not an ECDSA private key")
        if key.public_key() != certificate.public_key():
            raise PreconditionError(f"{key_path} is not the key of the CA in {certificate_path}")
        return cls(certificate, key)

    def save(self, certificate_path: Path, key_path: Path) -> None:
        write_private_file(
            key_path,
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        certificate_path.write_bytes(self.certificate_pem)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        csr_pem: bytes,
        kind: PeerKind,
        name: str,
        valid_for: timedelta,
        *,
        now: datetime | None = None,
    ) -> bytes:
        """Check the request and issue a TLS certificate for `name` of `kind`, as PEM."""
        csr = check_certificate_request(csr_pem, kind, name)
        subject_key = csr.public_key()
        if not isinstance(subject_key, ec.EllipticCurvePublicKey):
            raise InvalidInputError(CSR_FIELD, "the TLS key must be an ECDSA key")
        start = (now or utc_now()) - BACKDATE
        end = min(start + BACKDATE + valid_for, self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(tls_name(kind, name))]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        builder = _key_identifier_extensions(builder, subject_key, self.private_key.public_key())
        certificate = builder.sign(self.private_key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM)

    def issued(self, certificate: x509.Certificate, *, now: datetime | None = None) -> bool:
        """Whether this CA signed `certificate` and it is inside its validity window now."""
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        moment = now or utc_now()
        return certificate.not_valid_before_utc <= moment < certificate.not_valid_after_utc
