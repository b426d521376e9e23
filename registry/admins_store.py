"""Storage of revoked administrator certificates.

Promises: the only code that writes `revoked_admin_certificate`. A certificate is revoked once
and for good; `is_revoked` is what the authorizer asks on every administrator call, so a
revocation takes effect with the next call. Every function works inside the caller's session.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from registry.tables import RevokedAdminCertificate


def is_revoked(session: Session, sha256: str) -> bool:
    return session.get(RevokedAdminCertificate, sha256) is not None


def revoked(session: Session) -> dict[str, RevokedAdminCertificate]:
    """Every revoked administrator certificate, by its SHA-256."""
    return {row.sha256: row for row in session.exec(select(RevokedAdminCertificate)).all()}


def revoke(
    session: Session, *, sha256: str, name: str, revoked_by: str, reason: str, now: datetime
) -> RevokedAdminCertificate:
    row = RevokedAdminCertificate(
        sha256=sha256, name=name, revoked_at=now, revoked_by=revoked_by, reason=reason
    )
    session.add(row)
    session.flush()
    return row
