"""Sessions, failed sign-ins and token expiry in the store, on SQLite and PostgreSQL, with the
time given explicitly; and migration 0009 over a database the previous version wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from federation.errors import PermissionDeniedError, UnauthenticatedError
from federation_node.store import operator_sessions, operators, sign_in_failures
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import OperatorRole, SessionEndReason
from federation_node.store.operator_sessions import SessionTimes
from tests.integration.node_store.conftest import migrate_to

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
TIMES = SessionTimes(idle=timedelta(minutes=15), lifetime=timedelta(hours=10))


def _operator(engine: Engine) -> str:
    with session_scope(engine) as session:
        operator, _ = operators.create(
            session, label="counter", roles=[OperatorRole.CLERK], now=NOW, user_name="counter"
        )
        return operator.operator_id


def _start(engine: Engine, operator_id: str) -> str:
    with session_scope(engine) as session:
        _, token = operator_sessions.start(session, operator_id, TIMES, NOW)
        return token


def _check(engine: Engine, token: str, at: datetime) -> operator_sessions.Checked:
    with session_scope(engine) as session:
        return operator_sessions.check(session, token, TIMES, at)


def test_a_session_lives_while_used_and_ends_when_idle(engine: Engine) -> None:
    operator_id = _operator(engine)
    token = _start(engine, operator_id)
    checked = _check(engine, token, NOW + timedelta(minutes=14))
    assert checked.signed_in.operator_id == operator_id
    assert checked.needs_touch
    operator_sessions.touch(engine, checked.session_id, NOW + timedelta(minutes=14))
    assert not _check(engine, token, NOW + timedelta(minutes=14, seconds=20)).needs_touch
    assert _check(engine, token, NOW + timedelta(minutes=28)).session_id == checked.session_id
    with pytest.raises(UnauthenticatedError, match="after 15 minutes without activity"):
        _check(engine, token, NOW + timedelta(minutes=29))


def test_a_session_ends_at_its_lifetime_however_busy(engine: Engine) -> None:
    token = _start(engine, _operator(engine))
    at = NOW
    while at < NOW + timedelta(hours=10) - timedelta(minutes=10):
        at += timedelta(minutes=10)
        checked = _check(engine, token, at)
        operator_sessions.touch(engine, checked.session_id, at)
    with pytest.raises(UnauthenticatedError, match="reached its limit of 10 hours"):
        _check(engine, token, NOW + timedelta(hours=10))


def test_ended_sessions_and_wrong_secrets_are_refused(engine: Engine) -> None:
    operator_id = _operator(engine)
    token = _start(engine, operator_id)
    with pytest.raises(UnauthenticatedError, match="unknown or malformed session token"):
        _check(engine, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), NOW)
    other = _start(engine, operator_id)
    with session_scope(engine) as session:
        session_id = token.split(".")[0]
        assert operator_sessions.end(session, session_id, SessionEndReason.SIGNED_OUT, NOW)
        assert not operator_sessions.end(session, session_id, SessionEndReason.SIGNED_OUT, NOW)
    with pytest.raises(UnauthenticatedError, match="signed out"):
        _check(engine, token, NOW)
    with session_scope(engine) as session:
        ended = operator_sessions.end_all_of(
            session, operator_id, SessionEndReason.OPERATOR_DISABLED, NOW
        )
    assert ended == 1  # the other one; the signed-out one had ended
    with pytest.raises(PermissionDeniedError, match=f"operator {operator_id} is disabled"):
        _check(engine, other, NOW)


def test_an_account_is_blocked_until_its_oldest_recent_failure_leaves_the_window(
    engine: Engine,
) -> None:
    key = sign_in_failures.account_key("counter")
    window = timedelta(minutes=15)
    with session_scope(engine) as session:
        for minute in range(5):
            sign_in_failures.record(session, [key], NOW + timedelta(minutes=minute))
    at = NOW + timedelta(minutes=5)
    with session_scope(engine) as session:
        assert sign_in_failures.blocked_until(session, key, 5, window, at) == NOW + window
        assert sign_in_failures.blocked_until(session, key, 6, window, at) is None
        assert sign_in_failures.blocked_until(session, key, 5, window, NOW + window) is None
        other = sign_in_failures.account_key("someone-else")
        assert sign_in_failures.blocked_until(session, other, 1, window, at) is None
        sign_in_failures.clear(session, key)
        assert sign_in_failures.blocked_until(session, key, 1, window, at) is None


def test_a_bearer_token_expires(engine: Engine) -> None:
    with session_scope(engine) as session:
        operator, token = operators.create(
            session,
            label="script",
            roles=[OperatorRole.CLERK],
            now=NOW,
            token_lifetime=timedelta(days=30),
        )
        assert operators.authenticate(session, token, NOW + timedelta(days=29)).operator_id
        with pytest.raises(UnauthenticatedError, match="expired on 2027-01-02"):
            operators.authenticate(session, token, NOW + timedelta(days=30))
    assert operator.token_expires_at == NOW + timedelta(days=30)


def test_migration_0009_keeps_what_the_previous_version_wrote(store_url: str) -> None:
    engine = create_engine_for(store_url)
    try:
        migrate_to(engine, "0008")
        created = datetime(2026, 1, 5, tzinfo=UTC)
        stored = created.replace(tzinfo=None) if store_url.startswith("sqlite") else created
        insert = sa.text(
            "INSERT INTO operator (operator_id, label, roles, token_salt, token_hash, disabled,"
            " created_at) VALUES (:id, 'old', '[\"clerk\"]', :salt, :hash, false, :at)"
        )
        with engine.begin() as connection:
            connection.execute(
                insert, {"id": "op-0000000000aa", "salt": b"s", "hash": b"h", "at": stored}
            )
        migrate(store_url)
        # A replica still on the previous version keeps inserting operators as before.
        with engine.begin() as connection:
            connection.execute(
                insert, {"id": "op-0000000000bb", "salt": b"s", "hash": b"h", "at": stored}
            )
        with session_scope(engine) as session:
            old = operators.get(session, "op-0000000000aa")
            newer = operators.get(session, "op-0000000000bb")
    finally:
        engine.dispose()
    assert old.token_expires_at is not None
    year_from_now = datetime.now(UTC) + timedelta(days=365)
    assert abs(old.token_expires_at - year_from_now) < timedelta(hours=1)
    assert (old.user_name, old.password_hash, old.locale) == (None, None, "")
    assert newer.token_expires_at is None
    assert operators.token_expiry(newer.created_at, None) == created + timedelta(days=365)
