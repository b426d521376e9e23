"""Signing in and out: a user name and password exchanged for a session, on the audit record.

What it promises:

* A wrong password and an unknown user name get the same answer ("wrong user name or
  password") after the same work: an unknown name is hashed against a dummy salt.
* `max_failed_sign_ins` failures for one account (by its hashed user name, known or not) within
  `lockout_minutes` lock it: every sign-in is refused with RESOURCE_EXHAUSTED and the time to
  try again, even with the right password, until the oldest of those failures leaves the
  window. The same holds for `max_failed_per_address` failures from one address: the client
  address a web desk reports, or else the connection's own. Counts are in the database
  (store/sign_in_failures.py), so every replica sees them.
* Every failure and refusal is audited as `operator.sign_in_failed` with its reason; every
  sign-in and sign-out as `operator.sign_in` / `operator.sign_out`. Neither the password nor an
  unknown user name is ever written anywhere (an address only as a hash).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from federation.errors import (
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
    RateLimitedError,
    UnauthenticatedError,
)
from federation_node.config import OperatorSessionsConfig
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.passwords import (
    MAX_PASSWORD_LENGTH,
    MAX_USER_NAME_LENGTH,
    hash_password,
    needs_rehash,
    normalised_user_name,
    verify_password,
)
from federation_node.store import audit, operator_sessions, operators, sign_in_failures
from federation_node.store.db import session_scope
from federation_node.store.models import Operator, OperatorSession, SessionEndReason
from federation_node.store.operator_sessions import SessionTimes

WRONG_CREDENTIALS = "wrong user name or password"


class RefusalReason(enum.StrEnum):
    """Why a sign-in was refused: in the audit trail and the metrics' label."""

    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a reason's name, not a password)
    UNKNOWN_USER_NAME = "unknown_user_name"
    ACCOUNT_LOCKED = "account_locked"
    ADDRESS_LIMITED = "address_limited"
    OPERATOR_DISABLED = "operator_disabled"


MAX_ADDRESS_LENGTH = 64


def session_times(config: OperatorSessionsConfig) -> SessionTimes:
    return SessionTimes(
        idle=timedelta(minutes=config.idle_minutes),
        lifetime=timedelta(hours=config.lifetime_hours),
    )


@dataclass(frozen=True)
class SignedInSession:
    operator: Operator
    session: OperatorSession
    token: str


class SignIn:
    """SignIn and SignOut for the desk; `on_failure(reason)` counts each refusal (metrics)."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context
        self.on_failure: Callable[[RefusalReason], None] = lambda reason: None

    @property
    def _config(self) -> OperatorSessionsConfig:
        return self._context.config.operator_sessions

    def sign_in(
        self, user_name: str, password: str, client_address: str, peer_address: str
    ) -> SignedInSession:
        name = normalised_user_name(user_name)
        if not name:
            raise InvalidInputError("user_name", "is required")
        if len(name) > MAX_USER_NAME_LENGTH:
            raise InvalidInputError("user_name", f"is at most {MAX_USER_NAME_LENGTH} characters")
        if not password:
            raise InvalidInputError("password", "is required")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidInputError("password", f"is at most {MAX_PASSWORD_LENGTH} characters")
        if len(client_address) > MAX_ADDRESS_LENGTH or not client_address.isprintable():
            raise InvalidInputError("client_address", "is not an address")
        account = sign_in_failures.account_key(name)
        address = sign_in_failures.address_key(client_address or peer_address)
        actor = Actor("address", address.removeprefix("address:")[:16])
        self._refuse_if_locked(account, address, actor)
        with self._context.session() as session:
            operator = operators.find_by_user_name(session, name)
        # The same work whether or not there is a hash to check (a dummy one otherwise).
        stored = operator.password_hash if operator is not None else None
        if not verify_password(password, stored or ""):
            reason = RefusalReason.WRONG_PASSWORD if stored else RefusalReason.UNKNOWN_USER_NAME
            self._failed(account, address, actor, reason, operator)
            raise UnauthenticatedError(WRONG_CREDENTIALS)
        assert operator is not None
        assert stored is not None
        if operator.disabled:
            self._refused(actor, RefusalReason.OPERATOR_DISABLED, operator.operator_id, account)
            raise PermissionDeniedError(f"operator {operator.operator_id} is disabled")
        rehashed = hash_password(password) if needs_rehash(stored) else None
        return self._start(operator.operator_id, account, actor, rehashed)

    def sign_out(self, actor: Actor, session_id: str) -> None:
        if not session_id:
            raise PreconditionError(
                "this call came with a bearer token, not a session; there is no session to end"
            )
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            operator_sessions.end(session, session_id, SessionEndReason.SIGNED_OUT, now)
            audit.append(
                session,
                actor=actor.label,
                action="operator.sign_out",
                subject_type="operator",
                subject_id=actor.name,
                details={"session_id": session_id},
                now=now,
            )

    def _refuse_if_locked(self, account: str, address: str, actor: Actor) -> None:
        config = self._config
        window = timedelta(minutes=config.lockout_minutes)
        now = self._context.now()
        with self._context.session() as session:
            account_until = sign_in_failures.blocked_until(
                session, account, config.max_failed_sign_ins, window, now
            )
            address_until = sign_in_failures.blocked_until(
                session, address, config.max_failed_per_address, window, now
            )
        if account_until is None and address_until is None:
            return
        if account_until is not None:
            reason, until, what = RefusalReason.ACCOUNT_LOCKED, account_until, "this account"
        else:
            assert address_until is not None
            reason, until, what = RefusalReason.ADDRESS_LIMITED, address_until, "this address"
        self._refused(actor, reason, None, account)
        wait_s = max(1.0, (until - now).total_seconds())
        raise RateLimitedError(
            f"too many failed sign-ins for {what}; try again after "
            f"{until.strftime('%H:%M')} UTC (in {math.ceil(wait_s / 60)} minutes)",
            retry_after_s=wait_s,
        )

    def _failed(
        self,
        account: str,
        address: str,
        actor: Actor,
        reason: RefusalReason,
        operator: Operator | None,
    ) -> None:
        now = self._context.now()
        window = timedelta(minutes=self._config.lockout_minutes)
        with session_scope(self._context.engine) as session:
            sign_in_failures.forget_before(session, now - window)
            sign_in_failures.record(session, [account, address], now)
            self._audit_failure(session, actor, reason, operator, account, now)
        self.on_failure(reason)

    def _refused(
        self, actor: Actor, reason: RefusalReason, operator_id: str | None, account: str
    ) -> None:
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            operator = operators.get(session, operator_id) if operator_id else None
            self._audit_failure(session, actor, reason, operator, account, now)
        self.on_failure(reason)

    @staticmethod
    def _audit_failure(
        session: Session,
        actor: Actor,
        reason: RefusalReason,
        operator: Operator | None,
        account: str,
        now: datetime,
    ) -> None:
        # An unknown user name may be a password typed in the wrong field: only its hash.
        subject = operator.operator_id if operator is not None else "unknown"
        details: dict[str, str | None] = {"reason": reason.value}
        if operator is None and account:
            details["account"] = account.removeprefix("account:")[:16]
        audit.append(
            session,
            actor=actor.label,
            action="operator.sign_in_failed",
            subject_type="operator",
            subject_id=subject,
            details=details,
            now=now,
        )

    def _start(
        self, operator_id: str, account: str, actor: Actor, rehashed: str | None
    ) -> SignedInSession:
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            operator = operators.get(session, operator_id)
            if rehashed is not None:
                operators.set_password(session, operator_id, rehashed, now)
            operator.last_sign_in_at = now
            session.add(operator)
            sign_in_failures.clear(session, account)
            operator_sessions.forget_old(session, now)
            record, token = operator_sessions.start(
                session, operator_id, session_times(self._config), now
            )
            audit.append(
                session,
                actor=Actor("operator", operator_id).label,
                action="operator.sign_in",
                subject_type="operator",
                subject_id=operator_id,
                details={"session_id": record.session_id, "address": actor.name},
                now=now,
            )
        return SignedInSession(operator, record, token)
