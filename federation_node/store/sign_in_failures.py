"""Failed sign-ins, counted per account and per address over a sliding window.

The counts live in the database, not in a replica's memory, so an attacker spreading guesses
over the replicas of a node meets one limit. Keys are SHA-256 hashes of the normalised user
name (known or not) and of the address, prefixed by what they count: the table never holds a
user name or an address in clear.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from federation_node.store.models import SignInFailure


def account_key(user_name: str) -> str:
    return "account:" + hashlib.sha256(b"certfed-account\n" + user_name.encode()).hexdigest()


def address_key(address: str) -> str:
    return "address:" + hashlib.sha256(b"certfed-address\n" + address.encode()).hexdigest()


def record(session: Session, keys: list[str], now: datetime) -> None:
    for key in keys:
        session.add(SignInFailure(limit_key=key, failed_at=now))
    session.flush()


def recent(session: Session, key: str, since: datetime, limit: int) -> list[datetime]:
    """The times of the key's failures after `since`, newest first, at most `limit` of them."""
    return list(
        session.exec(
            select(col(SignInFailure.failed_at))
            .where(SignInFailure.limit_key == key)
            .where(col(SignInFailure.failed_at) > since)
            .order_by(col(SignInFailure.failed_at).desc())
            .limit(limit)
        )
    )


def clear(session: Session, key: str) -> None:
    """Forget an account's failures (after a successful sign-in or a password reset)."""
    session.execute(delete(SignInFailure).where(col(SignInFailure.limit_key) == key))


def forget_before(session: Session, cutoff: datetime) -> None:
    session.execute(delete(SignInFailure).where(col(SignInFailure.failed_at) <= cutoff))


def blocked_until(
    session: Session, key: str, maximum: int, window: timedelta, now: datetime
) -> datetime | None:
    """When the key may try again, if it has `maximum` failures within the window; else None.

    Blocked until the oldest of its last `maximum` failures leaves the window.
    """
    failures = recent(session, key, now - window, maximum)
    if len(failures) < maximum:
        return None
    return failures[-1] + window
