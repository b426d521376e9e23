"""Operator tokens: shown once, stored only as a salted hash, refused when wrong or disabled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from federation.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from federation_node.store import operators
from federation_node.store.db import session_scope
from federation_node.store.models import Operator, OperatorRole


def _create(engine: Engine, now: datetime) -> tuple[Operator, str]:
    with session_scope(engine) as session:
        return operators.create(
            session,
            label="Qingdao clerk 1",
            roles=[OperatorRole.REVIEWER, OperatorRole.CLERK],
            now=now,
        )


def _authenticate(engine: Engine, token: str) -> operators.SignedIn:
    # The day after the tests' `now`: the token was made then, and is valid for a year.
    with session_scope(engine) as session:
        return operators.authenticate(session, token, datetime(2025, 6, 24, tzinfo=UTC))


def test_token_authenticates_its_operator(engine: Engine, now: datetime) -> None:
    created, token = _create(engine, now)
    assert token.startswith(created.operator_id + ".")
    found = _authenticate(engine, token)
    assert found.operator_id == created.operator_id
    assert found.has_role(OperatorRole.CLERK)
    assert found.has_role(OperatorRole.REVIEWER)
    assert not found.has_role(OperatorRole.ADMIN)


def test_token_is_not_stored_in_clear(engine: Engine, now: datetime) -> None:
    created, token = _create(engine, now)
    secret = token.split(".", 1)[1]
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT * FROM operator WHERE operator_id = :id"),
            {"id": created.operator_id},
        ).one()
    flattened = repr(tuple(row))
    assert secret not in flattened
    assert token not in flattened


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "op-000000000000." + token.split(".", 1)[1],
        lambda token: token.split(".", 1)[0],
        lambda token: "",
        lambda token: "Bearer " + token,
        lambda token: token + "A",
        lambda token: token.split(".", 1)[0] + ".***",
    ],
    ids=["wrong-secret", "unknown-operator", "no-secret", "empty", "prefixed", "long", "garbage"],
)
def test_wrong_or_malformed_token_is_unauthenticated(
    engine: Engine, now: datetime, mangle: object
) -> None:
    _, token = _create(engine, now)
    bad = mangle(token)  # type: ignore[operator]
    with pytest.raises(UnauthenticatedError, match="unknown or malformed operator token"):
        _authenticate(engine, bad)


def test_disabled_operator_is_refused_but_only_told_with_the_right_token(
    engine: Engine, now: datetime
) -> None:
    created, token = _create(engine, now)
    with session_scope(engine) as session:
        disabled = operators.disable(session, created.operator_id, now)
        assert disabled.disabled_at == now
    with pytest.raises(PermissionDeniedError, match=f"operator {created.operator_id} is disabled"):
        _authenticate(engine, token)
    with pytest.raises(UnauthenticatedError):
        _authenticate(engine, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))


def test_disabling_an_unknown_operator_is_not_found(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session, pytest.raises(NotFoundError):
        operators.disable(session, "op-404", now)


def test_list_all_shows_every_operator(engine: Engine, now: datetime) -> None:
    first, _ = _create(engine, now)
    second, _ = _create(engine, now)
    with session_scope(engine) as session:
        listed = {o.operator_id for o in operators.list_all(session)}
    assert listed == {first.operator_id, second.operator_id}
