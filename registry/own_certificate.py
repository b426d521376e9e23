"""The registry's own TLS certificate, renewed before it expires, without a restart.

Promises: while the registry runs, its certificate is never within `renew_before` of its
notAfter for longer than until the next connection: at start and before each new connection's
handshake (gRPC asks `server_credentials`' fetcher), a certificate that close to expiry is
replaced by a new key and a certificate the federation CA issues for `registry.certfed`, which
nodes accept through the CA they already trust. The new key and certificate are written as
registry.next.key/.pem and then moved over registry.key/.pem (the key first); a renewal
interrupted between the two moves is finished at the next start.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509

from federation.transport import PeerKind, certificate_request, generate_tls_key
from registry.ca import FederationCA
from registry.config import RegistryPaths
from registry.utc import utc_now
from signing.keys import read_private_file, write_private_file

log = structlog.get_logger("certfed.registry")

REGISTRY_NAME = "registry"
# As long as `certfed registry init` issues it for (registry/provision.py).
RENEWED_LIFETIME = timedelta(days=730)


def _next_paths(paths: RegistryPaths) -> tuple[Path, Path]:
    return (
        paths.registry_key.with_name("registry.next.key"),
        paths.registry_certificate.with_name("registry.next.pem"),
    )


def finish_interrupted_renewal(paths: RegistryPaths) -> None:
    """Move a renewal's new key and certificate into place if a crash stopped it half way."""
    next_key, next_certificate = _next_paths(paths)
    if next_certificate.exists():
        if next_key.exists():
            os.replace(next_key, paths.registry_key)
        os.replace(next_certificate, paths.registry_certificate)
    elif next_key.exists():
        next_key.unlink()


class RegistryCertificate:
    """The registry's key and certificate, renewed `renew_before` their end."""

    def __init__(
        self,
        paths: RegistryPaths,
        ca: FederationCA,
        renew_before: timedelta,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._paths = paths
        self._ca = ca
        self._renew_before = renew_before
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        finish_interrupted_renewal(paths)
        self._load()
        self.renew_if_due()

    def _load(self) -> None:
        self._key_pem = read_private_file(self._paths.registry_key)
        self._certificate_pem = self._paths.registry_certificate.read_bytes()
        certificate = x509.load_pem_x509_certificate(self._certificate_pem)
        self.not_after = certificate.not_valid_after_utc

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._key_pem, self._certificate_pem)], root_certificates=self._ca.certificate_pem
        )

    def renew_if_due(self) -> bool:
        """Issue and install a new certificate if the current one ends within `renew_before`."""
        with self._lock:
            now = self._clock()
            if self.not_after - now > self._renew_before:
                return False
            key_pem = generate_tls_key()
            certificate_pem = self._ca.issue(
                certificate_request(PeerKind.REGISTRY, REGISTRY_NAME, key_pem),
                PeerKind.REGISTRY,
                REGISTRY_NAME,
                RENEWED_LIFETIME,
                now=now,
            )
            next_key, next_certificate = _next_paths(self._paths)
            write_private_file(next_key, key_pem)
            temporary = self._paths.registry_certificate.with_name(".registry.next.pem.tmp")
            temporary.write_bytes(certificate_pem)
            os.replace(temporary, next_certificate)
            finish_interrupted_renewal(self._paths)
            previous = self.not_after
            self._load()
            self._generation += 1
        log.warning(
            "registry.certificate_renewed",
            previous_not_after=previous.isoformat(),
            not_after=self.not_after.isoformat(),
        )
        return True

    def server_credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        """Credentials that take up a renewed certificate from the next handshake on."""
        served = [self._generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            try:
                self.renew_if_due()
            except Exception as error:
                # Keep serving the current certificate; the next connection tries again.
                log.error("registry.certificate_renewal_failed", error=str(error))
            with self._lock:
                if served[0] == self._generation:
                    return None
                served[0] = self._generation
                return self._configuration()

        # gRPC documents None as "no change"; the type stubs leave it out.
        fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", fetch)
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), fetcher, require_client_authentication=require_client_auth
        )
