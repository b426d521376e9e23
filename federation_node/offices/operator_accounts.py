"""What an administrator does to operator accounts, on the audit record: add an operator with a
user name and password, disable one, reset a password; and an operator's own preferences.

Disabling an operator or resetting their password ends their open sessions in the same
transaction, so the next call with one of them is refused. Passwords are hashed before the
transaction opens (rules/passwords.py), never inside it, and never logged or audited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session

from federation.errors import AlreadyExistsError, InvalidInputError, PreconditionError
from federation.limits import Limits
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.passwords import (
    hash_password,
    require_locale,
    require_password,
    require_user_name,
)
from federation_node.rules.validation import require_text
from federation_node.store import audit, operator_sessions, operators, sign_in_failures
from federation_node.store.db import session_scope
from federation_node.store.models import Operator, OperatorRole, SessionEndReason

LABEL_MAX = 128  # the operator.label column
MAX_SOURCE_LENGTH = 64  # the data_signal.source column
_OPERATOR_ID = re.compile(r"^op-[0-9a-f]{12}$")


def require_operator_id(value: str, field_name: str = "operator_id") -> str:
    if not _OPERATOR_ID.match(value):
        raise InvalidInputError(field_name, "is not an operator id (op- and 12 hex digits)")
    return value


def new_operator(
    session: Session,
    *,
    label: str,
    roles: Sequence[OperatorRole],
    actor: str,
    now: datetime,
    user_name: str | None = None,
    password_hash: str | None = None,
    locale: str = "",
    token_lifetime: timedelta = operators.DEFAULT_TOKEN_LIFETIME,
    feed_sources: Sequence[str] = (),
) -> tuple[Operator, str]:
    """A new operator and its bearer token (shown once), with its audit record, in `session`.

    `user_name` is checked here; `password_hash` comes from `hash_password` of a password
    `require_password` accepted. A feed account (role `feed`) is a service account: that role
    alone, bound to one or more sources, a bearer token and no password.
    """
    require_text(label, "label", Limits(max_text_length=LABEL_MAX), required=True)
    if not roles:
        raise InvalidInputError("roles", "an operator needs at least one role")
    if token_lifetime <= timedelta(0):
        raise InvalidInputError("token_days", "must be at least 1")
    require_locale(locale)
    require_feed_binding(roles, feed_sources, password=password_hash is not None)
    name = require_user_name(user_name) if user_name is not None else None
    if password_hash is not None and name is None:
        raise InvalidInputError("user_name", "is required to sign in with a password")
    if name is not None and operators.find_by_user_name(session, name) is not None:
        raise AlreadyExistsError(f"the user name {name} is taken at this node")
    operator, token = operators.create(
        session,
        label=label,
        roles=roles,
        now=now,
        token_lifetime=token_lifetime,
        user_name=name,
        password_hash=password_hash,
        locale=locale,
        feed_sources=feed_sources,
    )
    audit.append(
        session,
        actor=actor,
        action="operator.create",
        subject_type="operator",
        subject_id=operator.operator_id,
        details={
            "roles": sorted(operator.roles),
            "user_name": name,
            "password": password_hash is not None,
            "feed_sources": sorted(operator.feed_sources),
        },
        now=now,
    )
    return operator, token


def require_feed_binding(
    roles: Sequence[OperatorRole], feed_sources: Sequence[str], *, password: bool
) -> None:
    """A feed account holds the feed role alone, is bound to sources and has no password; no
    other operator is bound to a source."""
    if OperatorRole.FEED not in roles:
        if feed_sources:
            raise InvalidInputError("sources", "only a feed account (role feed) has sources")
        return
    if len(set(roles)) > 1:
        raise InvalidInputError(
            "roles", "a feed account holds the feed role alone; a person needs their own account"
        )
    if password:
        raise InvalidInputError(
            "password", "a feed account uses its bearer token and never signs in with a password"
        )
    if not feed_sources:
        raise InvalidInputError(
            "sources",
            "a feed account needs at least one source; create it on the node's host with "
            "certfed node add-operator --role feed --source NAME",
        )
    for source in feed_sources:
        if not source or len(source) > MAX_SOURCE_LENGTH or source != source.strip():
            raise InvalidInputError(
                "sources", f"a source name has 1 to {MAX_SOURCE_LENGTH} characters, no blanks"
            )


def disable(session: Session, operator_id: str, *, actor: str, now: datetime) -> bool:
    """Disable an operator and end their sessions; False when disabled already."""
    operator = operators.get(session, operator_id)
    if operator.disabled:
        return False
    operators.disable(session, operator_id, now)
    ended = operator_sessions.end_all_of(
        session, operator_id, SessionEndReason.OPERATOR_DISABLED, now
    )
    audit.append(
        session,
        actor=actor,
        action="operator.disable",
        subject_type="operator",
        subject_id=operator_id,
        details={"sessions_ended": ended},
        now=now,
    )
    return True


def set_password(
    session: Session,
    operator_id: str,
    password_hash: str,
    *,
    actor: str,
    now: datetime,
    user_name: str | None = None,
) -> Operator:
    """Give the operator a new password (and a user name, when they had none); their open
    sessions end and their account's failed sign-ins are forgotten."""
    operator = operators.get(session, operator_id)
    if operator.has_role(OperatorRole.FEED):
        raise PreconditionError(
            f"operator {operator_id} is a feed account: it uses its bearer token, never a password"
        )
    if user_name is not None:
        name = require_user_name(user_name)
        holder = operators.find_by_user_name(session, name)
        if holder is not None and holder.operator_id != operator_id:
            raise AlreadyExistsError(f"the user name {name} is taken at this node")
        operator.user_name = name
    if operator.user_name is None:
        raise PreconditionError(
            f"operator {operator_id} has no user name; give one to sign in with a password"
        )
    operators.set_password(session, operator_id, password_hash, now)
    ended = operator_sessions.end_all_of(session, operator_id, SessionEndReason.PASSWORD_RESET, now)
    sign_in_failures.clear(session, sign_in_failures.account_key(operator.user_name))
    audit.append(
        session,
        actor=actor,
        action="operator.reset_password",
        subject_type="operator",
        subject_id=operator_id,
        details={"sessions_ended": ended, "user_name": operator.user_name},
        now=now,
    )
    return operator


class OperatorAccounts:
    """The desk's operator administration, one transaction per call."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def add(
        self,
        actor: Actor,
        *,
        label: str,
        user_name: str,
        password: str,
        roles: Sequence[OperatorRole],
        locale: str,
    ) -> Operator:
        require_user_name(user_name)
        password_hash = hash_password(require_password(password))
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            operator, _token = new_operator(
                session,
                label=label,
                roles=roles,
                actor=actor.label,
                now=now,
                user_name=user_name,
                password_hash=password_hash,
                locale=locale,
            )
        return operator

    def disable(self, actor: Actor, operator_id: str) -> Operator:
        require_operator_id(operator_id)
        if operator_id == actor.name:
            raise PreconditionError(
                "an administrator cannot disable themselves; ask another administrator"
            )
        with session_scope(self._context.engine) as session:
            disable(session, operator_id, actor=actor.label, now=self._context.now())
            return operators.get(session, operator_id)

    def reset_password(self, actor: Actor, operator_id: str, new_password: str) -> None:
        require_operator_id(operator_id)
        password_hash = hash_password(require_password(new_password, "new_password"))
        with session_scope(self._context.engine) as session:
            set_password(
                session, operator_id, password_hash, actor=actor.label, now=self._context.now()
            )

    def set_locale(self, actor: Actor, locale: str) -> None:
        require_locale(locale)
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            operator = operators.get(session, actor.name)
            if operator.locale == locale:
                return
            operator.locale = locale
            session.add(operator)
            audit.append(
                session,
                actor=actor.label,
                action="operator.set_preferences",
                subject_type="operator",
                subject_id=actor.name,
                details={"locale": locale},
                now=now,
            )

    def list_all(self) -> list[Operator]:
        with self._context.session() as session:
            return operators.list_all(session)
