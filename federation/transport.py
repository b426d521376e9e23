"""Mutual TLS for the federation: names in certificates, credentials, and the caller's identity.

Every certificate is issued by the federation CA. Who a certificate speaks for is written as one
DNS subject-alternative name under a fixed suffix, so a client can pin the exact peer it means to
reach (`ssl_target_name_override`) whatever address the directory lists, and a server reads its
caller's identity from the verified certificate, never from a request field.

A name alone does not single out one certificate: a node that replaced a stolen TLS key still has
its old certificate, valid under the same name, in the thief's hands. So a node dialling a peer
also pins the certificate itself (`check_pinned_certificate`): the peer must present one whose
SHA-256 the directory lists for it. gRPC's Python API does not show a client the server's
certificate, so the check is a TLS 1.3 handshake of its own to the same endpoint, before a channel
is used and again each time it (re)connects.
"""

from __future__ import annotations

import enum
import hashlib
import os
import socket
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from federation import tracing
from federation.errors import UnavailableError
from signing.keys import read_private_file

NODE_NAME_SUFFIX = ".node.certfed"
ADMIN_NAME_SUFFIX = ".admin.certfed"
REGISTRY_TLS_NAME = "registry.certfed"


class PeerKind(enum.StrEnum):
    NODE = "node"
    ADMIN = "admin"
    REGISTRY = "registry"


def tls_name(kind: PeerKind, name: str) -> str:
    """The DNS SAN that identifies `name` of `kind` in a federation certificate."""
    if kind is PeerKind.REGISTRY:
        return REGISTRY_TLS_NAME
    suffix = NODE_NAME_SUFFIX if kind is PeerKind.NODE else ADMIN_NAME_SUFFIX
    return f"{name}{suffix}"


def node_tls_name(node_id: str) -> str:
    return tls_name(PeerKind.NODE, node_id)


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end of a verified TLS connection."""

    kind: PeerKind
    name: str
    certificate_sha256: str


def identity_from_certificate(certificate: x509.Certificate) -> PeerIdentity | None:
    """Read the one federation name a certificate carries; None if it carries none or several."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    found: list[PeerIdentity] = []
    fingerprint = certificate_sha256(certificate)
    for dns in san.value.get_values_for_type(x509.DNSName):
        if dns == REGISTRY_TLS_NAME:
            found.append(PeerIdentity(PeerKind.REGISTRY, "registry", fingerprint))
        elif dns.endswith(NODE_NAME_SUFFIX):
            found.append(PeerIdentity(PeerKind.NODE, dns[: -len(NODE_NAME_SUFFIX)], fingerprint))
        elif dns.endswith(ADMIN_NAME_SUFFIX):
            found.append(PeerIdentity(PeerKind.ADMIN, dns[: -len(ADMIN_NAME_SUFFIX)], fingerprint))
    return found[0] if len(found) == 1 else None


def client_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    """The client certificate gRPC has already verified for this call, if any."""
    # gRPC hands each auth property as a list of bytes values (the type stubs say bytes).
    pems = cast("Sequence[bytes]", context.auth_context().get("x509_pem_cert") or ())
    if not pems:
        return None
    return x509.load_pem_x509_certificate(pems[0])


def peer_identity(context: grpc.ServicerContext) -> PeerIdentity | None:
    """The caller's identity from the client certificate gRPC has already verified, if any."""
    certificate = client_certificate(context)
    return None if certificate is None else identity_from_certificate(certificate)


def certificate_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def pem_certificate_sha256(pem: bytes) -> str:
    return certificate_sha256(x509.load_pem_x509_certificate(pem))


def generate_tls_key() -> bytes:
    """A new P-256 TLS private key as unencrypted PKCS#8 PEM (the caller stores it 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_request(kind: PeerKind, name: str, private_key_pem: bytes) -> bytes:
    """A PKCS#10 request, self-signed by the TLS key, naming `name` the federation way."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("a federation TLS key must be an elliptic-curve key")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(tls_name(kind, name))]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsMaterial:
    """A party's certificate chain and key, and the federation CA it trusts."""

    certificate_pem: bytes
    private_key_pem: bytes = field(repr=False)
    ca_certificate_pem: bytes

    @classmethod
    def load(cls, certificate: Path, private_key: Path, ca_certificate: Path) -> TlsMaterial:
        """Read the files; the private key only from a file its owner alone may read (0600)."""
        return cls(
            certificate.read_bytes(), read_private_file(private_key), ca_certificate.read_bytes()
        )

    def server_credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key_pem, self.certificate_pem)],
            root_certificates=self.ca_certificate_pem,
            require_client_auth=require_client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_certificate_pem,
            private_key=self.private_key_pem,
            certificate_chain=self.certificate_pem,
        )


def anonymous_channel_credentials(ca_certificate_pem: bytes) -> grpc.ChannelCredentials:
    """Server-authenticated TLS without a client certificate (enrolment, desk clients)."""
    return grpc.ssl_channel_credentials(root_certificates=ca_certificate_pem)


# A channel's reconnect backoff, first and longest, in milliseconds.
RECONNECT_BACKOFF_MS = (200, 1_000)


def secure_channel(
    endpoint: str,
    peer_tls_name: str,
    credentials: grpc.ChannelCredentials,
    *,
    max_message_bytes: int,
) -> grpc.Channel:
    """A channel that accepts only the peer whose certificate carries `peer_tls_name`."""
    channel = grpc.secure_channel(
        endpoint,
        credentials,
        options=[
            ("grpc.ssl_target_name_override", peer_tls_name),
            ("grpc.default_authority", peer_tls_name),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.enable_retries", 0),
            # A peer or registry that restarted is dialled again within a second, not after
            # gRPC's default backoff of up to two minutes; a failed dial costs one connection
            # attempt a second at most.
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
            ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
        ],
    )
    # With tracing on, every call sends the caller's trace context (federation/tracing.py).
    return tracing.instrument_channel(channel)


class PeerUnreachableError(UnavailableError):
    """The certificate check could not reach the server at a peer's endpoint (refused, reset,
    timed out): the peer is down, as much as when a call fails to connect."""


class PeerCertificateMismatchError(UnavailableError):
    """The server at a peer's endpoint presented a certificate the directory does not list for
    that peer (a superseded one, e.g. with a stolen key); retried once the directory or the
    server changes."""


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _load_client_certificate(context: ssl.SSLContext, client: TlsMaterial) -> None:
    """Present `client`'s certificate from memory: `ssl` reads a key only from a path, so the
    chain and key go through an anonymous in-memory file (never onto a disk)."""
    fd = os.memfd_create("certfed-client-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, client.certificate_pem.rstrip(b"\n") + b"\n" + client.private_key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def presented_certificate_sha256(
    endpoint: str,
    peer_tls_name: str,
    ca_certificate_pem: bytes,
    *,
    timeout_s: float,
    client: TlsMaterial | None = None,
) -> str:
    """The SHA-256 of the certificate the server at `endpoint` presents, after checking that the
    federation CA issued it for `peer_tls_name`. TLS 1.3 sends the server's certificate before
    the client's, so none is needed to read it; a node presents its own (`client`) all the
    same, so that a peer requiring mutual TLS sees an ordinary, successful handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cadata=ca_certificate_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        _load_client_certificate(context, client)
    with (
        socket.create_connection(_host_port(endpoint), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=peer_tls_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


def check_pinned_certificate(
    endpoint: str,
    peer_tls_name: str,
    ca_certificate_pem: bytes,
    pinned_sha256: Collection[str],
    *,
    timeout_s: float,
    client: TlsMaterial | None = None,
) -> None:
    """Raise unless the server at `endpoint` presents one of the `pinned_sha256` certificates."""
    try:
        presented = presented_certificate_sha256(
            endpoint, peer_tls_name, ca_certificate_pem, timeout_s=timeout_s, client=client
        )
    except OSError as error:
        # ssl.SSLError and socket errors are OSErrors.
        raise PeerUnreachableError(
            f"cannot check the certificate of {peer_tls_name} at {endpoint}: {error}"
        ) from error
    except ValueError as error:
        # A malformed endpoint.
        raise UnavailableError(
            f"cannot check the certificate of {peer_tls_name} at {endpoint}: {error}"
        ) from error
    if presented not in pinned_sha256:
        raise PeerCertificateMismatchError(
            f"the server at {endpoint} presents a certificate for {peer_tls_name} "
            f"(SHA-256 {presented[:16]}...) that the directory does not list; it is not "
            "that node's current server (a superseded or stolen certificate): refusing it"
        )
