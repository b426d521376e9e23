"""The registry's administrator certificates: the ones in its data directory, and revocations.

An administrator is whoever holds a certificate in `admin/<name>.pem` of the registry's data
directory, issued by the federation CA for an administrator. A revocation is recorded in the
registry's database (with who revoked it, when and why, in the audit too) and refuses that
certificate from then on, even while its file stays on disk; the last certificate not revoked
cannot be revoked, or the registry could no longer be administered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from cryptography import x509
from sqlalchemy.engine import Engine

from federation.errors import InvalidInputError, NotFoundError, PreconditionError
from federation.transport import PeerKind, identity_from_certificate
from registry import admins_store, audit_store
from registry.db import transaction

log = structlog.get_logger("certfed.registry")


@dataclass(frozen=True)
class AdminCertificate:
    """An administrator certificate in the data directory, and its revocation if any."""

    name: str
    sha256: str
    not_after: datetime
    revoked_at: datetime | None
    revoked_by: str
    revocation_reason: str


class UnknownAdminCertificateError(NotFoundError):
    """No administrator certificate with that fingerprint is in the registry's data directory."""


class AdminCertificates:
    """The certificates in `admin_dir` and the revocations recorded behind `engine`."""

    def __init__(self, engine: Engine, admin_dir: Path, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._admin_dir = admin_dir
        self._clock = clock

    def _on_disk(self) -> dict[str, tuple[str, datetime]]:
        """sha256 -> (administrator name, not_after) of every admin/<name>.pem."""
        found: dict[str, tuple[str, datetime]] = {}
        for path in sorted(self._admin_dir.glob("*.pem")):
            try:
                certificate = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError:
                log.warning("registry.admin_certificate_unreadable", file=path.name)
                continue
            identity = identity_from_certificate(certificate)
            if identity is not None and identity.kind is PeerKind.ADMIN:
                found[identity.certificate_sha256] = (
                    identity.name,
                    certificate.not_valid_after_utc,
                )
        return found

    def list(self) -> list[AdminCertificate]:
        """The administrator certificates in the data directory and every revoked one."""
        on_disk = self._on_disk()
        with transaction(self._engine) as session:
            revoked = admins_store.revoked(session)
        listed = [
            AdminCertificate(
                name=name,
                sha256=sha256,
                not_after=not_after,
                revoked_at=revoked[sha256].revoked_at if sha256 in revoked else None,
                revoked_by=revoked[sha256].revoked_by if sha256 in revoked else "",
                revocation_reason=revoked[sha256].reason if sha256 in revoked else "",
            )
            for sha256, (name, not_after) in on_disk.items()
        ]
        listed.extend(
            AdminCertificate(
                row.name, sha256, row.revoked_at, row.revoked_at, row.revoked_by, row.reason
            )
            for sha256, row in revoked.items()
            if sha256 not in on_disk
        )
        return sorted(listed, key=lambda item: (item.name, item.sha256))

    def revoke(self, sha256: str, reason: str, admin: str) -> None:
        """Refuse an administrator certificate from now on; never the last one not revoked."""
        if not reason.strip():
            raise InvalidInputError("reason", "say why the certificate is revoked")
        on_disk = self._on_disk()
        now = self._clock()
        with transaction(self._engine) as session:
            revoked = admins_store.revoked(session)
            if sha256 in revoked:
                raise PreconditionError(
                    f"administrator certificate {sha256[:16]}... was revoked already, at "
                    f"{revoked[sha256].revoked_at.isoformat()}"
                )
            if sha256 not in on_disk:
                raise UnknownAdminCertificateError(
                    f"no administrator certificate {sha256[:16]}... in the registry's admin "
                    "directory; list them with `certfed registry admins`"
                )
            if not set(on_disk) - set(revoked) - {sha256}:
                raise PreconditionError(
                    "this is the last administrator certificate not revoked; issue another "
                    "before revoking it, or the registry could not be administered"
                )
            name = on_disk[sha256][0]
            admins_store.revoke(
                session, sha256=sha256, name=name, revoked_by=admin, reason=reason, now=now
            )
            audit_store.record(
                session,
                actor=f"admin:{admin}",
                action="revoke-admin-certificate",
                node_id=f"admin:{name}"[:64],
                at=now,
                detail=f"{sha256}: {reason}"[:1024],
            )
        log.warning("registry.admin_certificate_revoked", name=name, admin=admin)

    def is_revoked(self, sha256: str) -> bool:
        with transaction(self._engine) as session:
            return admins_store.is_revoked(session, sha256)
