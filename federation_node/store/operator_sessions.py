"""Operator sessions: made at sign-in, checked on every call that carries one, ended at once.

A session token is `ses-<16 hex>.<32 random bytes, urlsafe base64>`; like a bearer token
(store/operators.py, whose reasoning applies unchanged) it is stored only as a salted SHA-256
and compared in constant time. The `ses-` prefix tells it from a bearer token (`op-`).

A session ends at its absolute `expires_at`, after `idle` without a call, at sign-out, or when
its operator is disabled or has their password reset. `last_used_at` is written at most once
per `touch_interval` (a fraction of the idle time, at most 30 s), so a busy desk does not turn
every call into a write; the idle time is therefore kept to within that interval.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, bindparam, delete, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from federation.errors import PermissionDeniedError, UnauthenticatedError
from federation_node.store.models import Operator, OperatorSession, SessionEndReason
from federation_node.store.operators import SignedIn, decode_secret

SESSION_ID_PREFIX = "ses-"
SECRET_BYTES = 32
SALT_BYTES = 16
MAX_TOUCH_INTERVAL = timedelta(seconds=30)
# Ended or expired sessions are deleted this long after the fact (the audit trail keeps the
# sign-ins and sign-outs).
KEEP_ENDED = timedelta(days=30)
_DUMMY_SALT = bytes(SALT_BYTES)
_UNKNOWN = "unknown or malformed session token; sign in again"
_ENDED = {
    SessionEndReason.SIGNED_OUT: "this session was signed out; sign in again",
    SessionEndReason.PASSWORD_RESET: (
        "this session ended because the operator's password was reset; sign in again"
    ),
}


@dataclass(frozen=True)
class SessionTimes:
    idle: timedelta
    lifetime: timedelta

    @property
    def touch_interval(self) -> timedelta:
        return min(MAX_TOUCH_INTERVAL, self.idle / 10)


def is_session_token(token: str) -> bool:
    return token.startswith(SESSION_ID_PREFIX)


def start(
    session: Session, operator_id: str, times: SessionTimes, now: datetime
) -> tuple[OperatorSession, str]:
    """A new session for the operator and its token, returned here once."""
    session_id = SESSION_ID_PREFIX + secrets.token_hex(8)
    secret = secrets.token_bytes(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    record = OperatorSession(
        session_id=session_id,
        operator_id=operator_id,
        secret_salt=salt,
        secret_hash=_hash(salt, secret),
        created_at=now,
        last_used_at=now,
        expires_at=now + times.lifetime,
        ended_at=None,
        ended_reason=None,
    )
    session.add(record)
    session.flush()
    token = session_id + "." + base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")
    return record, token


@dataclass(frozen=True)
class Checked:
    signed_in: SignedIn
    session_id: str
    expires_at: datetime
    needs_touch: bool


# Built once: every desk call of a signed-in clerk runs it. SQLAlchemy's select: sqlmodel's
# typed one takes at most four columns.
_SESSION_CHECK = (
    sa_select(
        col(OperatorSession.secret_salt),
        col(OperatorSession.secret_hash),
        col(OperatorSession.last_used_at),
        col(OperatorSession.expires_at),
        col(OperatorSession.ended_reason),
        col(Operator.operator_id),
        col(Operator.disabled),
        col(Operator.roles),
    )
    .join(Operator, col(Operator.operator_id) == col(OperatorSession.operator_id))
    .where(col(OperatorSession.session_id) == bindparam("session_id"))
)


def check(session: Connection | Session, token: str, times: SessionTimes, now: datetime) -> Checked:
    """The operator a live session token belongs to; refused with a plain reason otherwise.

    One SELECT of the session joined with its operator, on a connection or a session; no
    write (see `touch`).
    """
    session_id, _, encoded = token.partition(".")
    secret = decode_secret(encoded)
    if not session_id.startswith(SESSION_ID_PREFIX) or secret is None:
        raise UnauthenticatedError(_UNKNOWN)
    row = session.execute(_SESSION_CHECK, {"session_id": session_id}).first()
    if row is None:
        hmac.compare_digest(_hash(_DUMMY_SALT, secret), _hash(_DUMMY_SALT, b""))
        raise UnauthenticatedError(_UNKNOWN)
    salt, secret_hash, last_used_at, expires_at, ended, operator_id, disabled, roles = row
    if not hmac.compare_digest(_hash(salt, secret), secret_hash):
        raise UnauthenticatedError(_UNKNOWN)
    if disabled or ended is SessionEndReason.OPERATOR_DISABLED:
        raise PermissionDeniedError(f"operator {operator_id} is disabled")
    if ended is not None:
        raise UnauthenticatedError(_ENDED[ended])
    if now >= expires_at:
        raise UnauthenticatedError(
            f"this session reached its limit of {_duration(times.lifetime)}; sign in again"
        )
    if now - last_used_at >= times.idle:
        raise UnauthenticatedError(
            f"this session ended after {_duration(times.idle)} without activity; sign in again"
        )
    return Checked(
        SignedIn(operator_id, tuple(roles)),
        session_id,
        expires_at,
        needs_touch=now - last_used_at >= times.touch_interval,
    )


def touch(engine: Engine, session_id: str, now: datetime) -> None:
    """Record that the session was used now (a single UPDATE in its own transaction)."""
    with engine.begin() as connection:
        connection.execute(
            update(OperatorSession)
            .where(col(OperatorSession.session_id) == session_id)
            .where(col(OperatorSession.last_used_at) < now)
            .values(last_used_at=now)
        )


def end(session: Session, session_id: str, reason: SessionEndReason, now: datetime) -> bool:
    """End one session; False when it had ended already."""
    return _end(session, col(OperatorSession.session_id) == session_id, reason, now) > 0


def end_all_of(session: Session, operator_id: str, reason: SessionEndReason, now: datetime) -> int:
    """End every open session of an operator; returns how many were open."""
    return _end(session, col(OperatorSession.operator_id) == operator_id, reason, now)


def get(session: Session, session_id: str) -> OperatorSession | None:
    return session.get(OperatorSession, session_id)


def forget_old(session: Session, now: datetime) -> None:
    """Delete sessions that expired or ended long ago."""
    cutoff = now - KEEP_ENDED
    session.execute(delete(OperatorSession).where(col(OperatorSession.expires_at) < cutoff))
    session.execute(delete(OperatorSession).where(col(OperatorSession.ended_at) < cutoff))


def _end(session: Session, which: Any, reason: SessionEndReason, now: datetime) -> int:
    result = session.execute(
        update(OperatorSession)
        .where(which)
        .where(col(OperatorSession.ended_at).is_(None))
        .values(ended_at=now, ended_reason=reason)
    )
    return cast(CursorResult[Any], result).rowcount


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(salt + secret).digest()


def _duration(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    if minutes >= 1 and minutes == int(minutes):
        return f"{int(minutes)} minutes"
    return f"{span.total_seconds():g} seconds"
