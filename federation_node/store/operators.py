"""Operators of the desk (clerks, reviewers, administrators) and their bearer tokens.

A token is `<operator id>.<32 random bytes, urlsafe base64>`, shown once when the operator is
created and stored only as a salted SHA-256. A fast hash is the right tool here, unlike for
passwords: the secret part has 256 bits of entropy from the operating system's CSPRNG, so no
dictionary or brute-force search can reach it however fast the hash, and a slow KDF would only
add latency to every desk call. The salt keeps equal hashes from ever revealing equal tokens.
Comparison is constant-time.

A token expires (`token_expires_at`; a row written without one by a replica older than
migration 0009 expires `DEFAULT_TOKEN_LIFETIME` after it was created). An operator may also
have a user name and a password hash, for signing in to a session (store/operator_sessions.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from federation.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from federation_node.store.models import Operator, OperatorRole

OPERATOR_ID_PREFIX = "op-"
TOKEN_SECRET_BYTES = 32
SALT_BYTES = 16
DEFAULT_TOKEN_LIFETIME = timedelta(days=365)
_UNAUTHENTICATED = "unknown or malformed operator token"
# Hashed against when the operator id is unknown, so that case takes as long as a wrong secret.
_DUMMY_SALT = bytes(SALT_BYTES)


def create(
    session: Session,
    *,
    label: str,
    roles: Sequence[OperatorRole],
    now: datetime,
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
    user_name: str | None = None,
    password_hash: str | None = None,
    locale: str = "",
    feed_sources: Sequence[str] = (),
) -> tuple[Operator, str]:
    """A new operator and their token; the token is returned here once and never again.

    `user_name` must be normalised and `password_hash` made by rules/passwords.py already."""
    operator_id = OPERATOR_ID_PREFIX + secrets.token_hex(6)
    secret = secrets.token_bytes(TOKEN_SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    operator = Operator(
        operator_id=operator_id,
        label=label,
        roles=sorted({OperatorRole(role).value for role in roles}),
        token_salt=salt,
        token_hash=_hash(salt, secret),
        disabled=False,
        created_at=now,
        disabled_at=None,
        user_name=user_name,
        password_hash=password_hash,
        password_set_at=now if password_hash else None,
        locale=locale,
        token_expires_at=now + token_lifetime,
        feed_sources=sorted(set(feed_sources)),
    )
    session.add(operator)
    session.flush()
    token = operator_id + "." + base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")
    return operator, token


@dataclass(frozen=True)
class SignedIn:
    """Who a valid bearer token belongs to, as every desk call needs it: id and roles."""

    operator_id: str
    roles: tuple[str, ...]

    def has_role(self, role: OperatorRole) -> bool:
        return role.value in self.roles


# Built once: every desk call with a bearer token runs it. SQLAlchemy's select: sqlmodel's typed
# one takes at most four columns.
_TOKEN_CHECK = sa_select(
    col(Operator.token_salt),
    col(Operator.token_hash),
    col(Operator.disabled),
    col(Operator.roles),
    col(Operator.created_at),
    col(Operator.token_expires_at),
).where(col(Operator.operator_id) == bindparam("operator_id"))


def authenticate(session: Connection | Session, token: str, now: datetime) -> SignedIn:
    """The operator a bearer token belongs to; refused when unknown, wrong, expired or disabled.

    Every desk call comes through here, so it reads the six columns it needs in one SELECT,
    without loading an ORM object, on a connection or a session.
    """
    operator_id, _, encoded = token.partition(".")
    secret = decode_secret(encoded)
    if not operator_id.startswith(OPERATOR_ID_PREFIX) or secret is None:
        raise UnauthenticatedError(_UNAUTHENTICATED)
    row = session.execute(_TOKEN_CHECK, {"operator_id": operator_id}).first()
    if row is None:
        hmac.compare_digest(_hash(_DUMMY_SALT, secret), _hash(_DUMMY_SALT, b""))
        raise UnauthenticatedError(_UNAUTHENTICATED)
    salt, token_hash, disabled, roles, created_at, expires_at = row
    if not hmac.compare_digest(_hash(salt, secret), token_hash):
        raise UnauthenticatedError(_UNAUTHENTICATED)
    # Only a holder of the right token learns that the operator is disabled or the token old.
    if disabled:
        raise PermissionDeniedError(f"operator {operator_id} is disabled")
    expiry = token_expiry(created_at, expires_at)
    if now >= expiry:
        raise UnauthenticatedError(
            f"the token of operator {operator_id} expired on {expiry.date().isoformat()}; "
            "ask an administrator for a new one, or sign in with your user name"
        )
    return SignedIn(operator_id, tuple(roles))


def token_expiry(created_at: datetime, token_expires_at: datetime | None) -> datetime:
    return token_expires_at or created_at + DEFAULT_TOKEN_LIFETIME


def find_by_user_name(session: Session, user_name: str) -> Operator | None:
    """The operator with this (normalised) user name, if any."""
    return session.exec(select(Operator).where(Operator.user_name == user_name)).first()


def set_password(session: Session, operator_id: str, password_hash: str, now: datetime) -> Operator:
    operator = get(session, operator_id)
    operator.password_hash = password_hash
    operator.password_set_at = now
    session.add(operator)
    session.flush()
    return operator


def get(session: Session, operator_id: str) -> Operator:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFoundError(f"no operator {operator_id} at this node")
    return operator


def disable(session: Session, operator_id: str, now: datetime) -> Operator:
    """Refuse the operator's token from now on; their past actions stay on record."""
    operator = get(session, operator_id)
    if not operator.disabled:
        operator.disabled = True
        operator.disabled_at = now
    session.add(operator)
    session.flush()
    return operator


def feed_sources(session: Session, operator_id: str) -> frozenset[str]:
    """The sources a feed account may record signals for (none for any other operator)."""
    sources = session.exec(
        select(Operator.feed_sources).where(Operator.operator_id == operator_id)
    ).first()
    return frozenset(sources or ())


def bound_sources(session: Session) -> frozenset[str]:
    """Every source some enabled feed account is bound to."""
    rows = session.exec(select(Operator.feed_sources).where(col(Operator.disabled).is_(False)))
    return frozenset(source for sources in rows for source in sources or ())


def list_all(session: Session) -> list[Operator]:
    return list(
        session.exec(select(Operator).order_by(col(Operator.created_at), col(Operator.operator_id)))
    )


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(salt + secret).digest()


def decode_secret(encoded: str) -> bytes | None:
    """The secret part of a token, or None when it is not 32 bytes of urlsafe base64."""
    try:
        secret = base64.urlsafe_b64decode((encoded + "=" * (-len(encoded) % 4)).encode("ascii"))
    except (UnicodeError, binascii.Error, ValueError):
        return None
    return secret if len(secret) == TOKEN_SECRET_BYTES else None
