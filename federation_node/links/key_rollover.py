"""A node's own keys over time: a new attestation signing key and a renewed TLS certificate,
taken into use without a restart and without a moment in which peers cannot verify the node.

Both follow one pattern:

1. the successor is made on the node (private keys never leave it) and kept as `*.next.*`
   (`KeyPaths`), next to the key in use;
2. the registry is asked to list it, authenticated by what is in use now: RotateSigningKey
   carries a statement signed by the current signing key and by the new one; RenewCertificate
   is called over mutual TLS with the current certificate and carries a CSR of the new TLS key;
3. the running node switches once the directory it holds lists the successor (so every peer that
   refreshed its directory accepts it; a peer that has not yet refreshes when it meets an unknown
   certificate): the `*.next.*` file replaces the one in use and the in-memory copy is swapped;
   server credentials are re-read at the next TLS handshake (`ReloadableTls`), client channels
   are rebuilt (`PeerChannels`, `RegistryClient`), calls under way finish on the old ones;
4. the registry keeps the previous key valid for its overlap window, so what was signed or
   connected just before the switch keeps verifying.

`certfed node rotate-key` / `renew-certificate` do steps 1-2 from the command line; a running
node does step 3 after every directory refresh (`KeyRollover.on_directory`), and steps 1-2 for the
certificate on its own when less than `certificate_renew_fraction` of its validity is left.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Engine

from certfed.v1 import registry_pb2
from federation.directory import TrustedDirectory
from federation.errors import CertfedError
from federation.key_rotation import sign_rotation
from federation.registry_client import RegistryClient
from federation.transport import (
    PeerKind,
    TlsMaterial,
    certificate_request,
    generate_tls_key,
    pem_certificate_sha256,
)
from federation_node.keystore import KeyPaths
from federation_node.links.directory_client import DirectoryClient
from federation_node.links.peers import PeerChannels
from federation_node.offices.context import NodeContext
from federation_node.offices.revocation_review import review_revocations
from signing.keys import SigningKey, write_private_file

log = structlog.get_logger("certfed.keys")


# Signing key.


def request_signing_key_rotation(
    node_id: str, paths: KeyPaths, registry: RegistryClient, now: datetime
) -> registry_pb2.RotateSigningKeyResponse:
    """Create the successor signing key (or reuse one that waits) and have the registry list it."""
    current = SigningKey.load(paths.signing_key)
    if paths.next_signing_key.exists():
        # Asked before, perhaps without an answer: the registry takes the same rotation again.
        successor = SigningKey.load(paths.next_signing_key)
    else:
        successor = SigningKey.generate()
        successor.save(paths.next_signing_key)
    return registry.rotate_signing_key(sign_rotation(node_id, current, successor, now))


def promote_signing_key(
    paths: KeyPaths, directory: TrustedDirectory, node_id: str, now: datetime
) -> SigningKey | None:
    """Take the successor signing key into use if the directory lets it sign now."""
    if not paths.next_signing_key.exists():
        return None
    successor = SigningKey.load(paths.next_signing_key)
    if directory.find(node_id) is None:
        return None
    if successor.key_id not in directory.signing_keys(node_id, now):
        return None
    os.replace(paths.next_signing_key, paths.signing_key)
    return successor


# TLS certificate.


def renewal_due(certificate_pem: bytes, now: datetime, fraction: float) -> bool:
    """Whether less than `fraction` of the certificate's validity period is left at `now`."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return certificate.not_valid_after_utc - now < lifetime * fraction


def request_certificate_renewal(
    node_id: str, paths: KeyPaths, registry: RegistryClient
) -> registry_pb2.RenewCertificateResponse:
    """Create the successor TLS key (or reuse one that waits) and get its certificate."""
    if paths.next_tls_key.exists():
        key_pem = paths.next_tls_key.read_bytes()
    else:
        key_pem = generate_tls_key()
        write_private_file(paths.next_tls_key, key_pem)
    response = registry.renew_certificate(certificate_request(PeerKind.NODE, node_id, key_pem))
    temporary = paths.next_tls_certificate.with_name(f".{paths.next_tls_certificate.name}.tmp")
    temporary.write_bytes(response.tls_certificate_pem)
    os.replace(temporary, paths.next_tls_certificate)
    return response


def finish_interrupted_promotion(paths: KeyPaths) -> None:
    """After a crash between replacing the TLS key and its certificate: replace the certificate."""
    if paths.next_tls_key.exists() or not paths.next_tls_certificate.exists():
        return
    certificate = x509.load_pem_x509_certificate(paths.next_tls_certificate.read_bytes())
    key = serialization.load_pem_private_key(paths.tls_key.read_bytes(), password=None)
    if key.public_key() == certificate.public_key():
        os.replace(paths.next_tls_certificate, paths.tls_certificate)
        log.warning("keys.certificate_promotion_finished")


def promote_certificate(
    paths: KeyPaths, directory: TrustedDirectory, node_id: str, ca_certificate: Path
) -> TlsMaterial | None:
    """Take the renewed certificate into use if the directory lists it for this node."""
    if not (paths.next_tls_key.exists() and paths.next_tls_certificate.exists()):
        return None
    node = directory.find(node_id)
    fingerprint = pem_certificate_sha256(paths.next_tls_certificate.read_bytes())
    if node is None or fingerprint not in node.tls_certificate_sha256:
        return None
    # Key first: a crash between the two is finished by `finish_interrupted_promotion`.
    os.replace(paths.next_tls_key, paths.tls_key)
    os.replace(paths.next_tls_certificate, paths.tls_certificate)
    return TlsMaterial.load(paths.tls_certificate, paths.tls_key, ca_certificate)


class ReloadableTls:
    """The TLS material a server presents, replaceable while it serves.

    Each `server_credentials` is dynamic (gRPC asks the fetcher at every new handshake): after
    `replace`, new connections get the new certificate, open ones keep the old.
    """

    def __init__(self, tls: TlsMaterial) -> None:
        self._state = (0, tls)

    @property
    def current(self) -> TlsMaterial:
        return self._state[1]

    def replace(self, tls: TlsMaterial) -> None:
        generation, _ = self._state
        self._state = (generation + 1, tls)

    def server_credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        served, initial = self._state
        last = [served]
        lock = threading.Lock()

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            generation, tls = self._state
            with lock:
                if generation == last[0]:
                    return None
                last[0] = generation
            return _certificate_configuration(tls)

        # gRPC keeps the current certificate when the fetcher returns None; the type stubs
        # do not say so.
        fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", fetch)
        return grpc.dynamic_ssl_server_credentials(
            _certificate_configuration(initial),
            fetcher,
            require_client_authentication=require_client_auth,
        )


def _certificate_configuration(tls: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(tls.private_key_pem, tls.certificate_pem)], root_certificates=tls.ca_certificate_pem
    )


class KeyRollover:
    """The running node's side: switch to successors the directory lists, renew when due."""

    def __init__(
        self,
        context: NodeContext,
        paths: KeyPaths,
        serving: ReloadableTls,
        peers: PeerChannels,
        registry: RegistryClient,
        *,
        renew_fraction: float,
        refresh_directory: Callable[[], object],
    ) -> None:
        self._context = context
        self._paths = paths
        self._serving = serving
        self._peers = peers
        self._registry = registry
        self._renew_fraction = renew_fraction
        self._refresh_directory = refresh_directory
        self._lock = threading.Lock()

    def on_directory(self, directory: TrustedDirectory) -> None:
        with self._lock:
            node = self._context
            signing = promote_signing_key(self._paths, directory, node.node_id, node.now())
            if signing is not None:
                node.keys = dataclasses.replace(node.keys, signing=signing)
                log.warning("keys.signing_key_switched", key_id=signing.key_id)
            tls = promote_certificate(
                self._paths, directory, node.node_id, node.config.ca_certificate
            )
            if tls is not None:
                self._serving.replace(tls)
                self._peers.replace_credentials(tls)
                self._registry.replace_credentials(tls.channel_credentials())
                node.keys = dataclasses.replace(node.keys, tls=tls)
                log.warning(
                    "keys.certificate_switched",
                    certificate_sha256=pem_certificate_sha256(tls.certificate_pem),
                )

    def renew_if_due(self) -> None:
        """Renew the TLS certificate when less than the configured fraction of it is left."""
        node = self._context
        if self._paths.next_tls_certificate.exists():
            return  # renewed already; waiting for the directory to list it
        if not renewal_due(node.keys.tls.certificate_pem, node.now(), self._renew_fraction):
            return
        try:
            response = request_certificate_renewal(node.node_id, self._paths, self._registry)
        except CertfedError as error:
            log.warning("keys.certificate_renewal_failed", error=str(error), retry="next refresh")
            return
        log.warning(
            "keys.certificate_renewed",
            certificate_sha256=pem_certificate_sha256(response.tls_certificate_pem),
            directory_version=response.directory_version,
        )
        self._refresh_directory()


def catch_up_with_directory(
    directory: DirectoryClient, rollover: KeyRollover, engine: Engine, now: datetime
) -> None:
    """At start, do for the directory already held what listeners do for each new one."""
    try:
        trusted = directory.current()
    except CertfedError:
        return
    rollover.on_directory(trusted)
    review_revocations(engine, trusted, now)
