"""Every listing pages through all its rows exactly once, in id order, whatever the page size."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from federation.errors import InvalidInputError
from federation_node.ids import new_id
from federation_node.store import beneficiaries, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, DeliveryState, OutboxKind

# The rows are written once per database; the examples only read them.
READ_ONLY_EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

Lister = Callable[[Session, int, str], tuple[list[str], str]]


def _all_pages(engine: Engine, lister: Lister, page_size: int) -> list[str]:
    seen: list[str] = []
    token = ""
    with session_scope(engine) as session:
        while True:
            ids, token = lister(session, page_size, token)
            assert len(ids) <= page_size
            seen.extend(ids)
            if not token:
                return seen
            assert ids, "a page before the last one is never empty"


def _list_beneficiaries(session: Session, size: int, token: str) -> tuple[list[str], str]:
    rows, next_token = beneficiaries.page(session, size, token)
    return [row.beneficiary_id for row in rows], next_token


def _list_dead_letters(session: Session, size: int, token: str) -> tuple[list[str], str]:
    rows, next_token = outbox.page(session, DeliveryState.DEAD, size, token)
    return [row.message_id for row in rows], next_token


@READ_ONLY_EXAMPLES
@given(page_size=st.integers(min_value=1, max_value=30))
def test_beneficiary_pages_cover_every_row_once(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], page_size: int
) -> None:
    # Hypothesis runs the body many times against one database: register on the first call only.
    expected = _registered(engine, add_beneficiary)
    assert _all_pages(engine, _list_beneficiaries, page_size) == expected


def _registered(engine: Engine, add_beneficiary: Callable[..., Beneficiary]) -> list[str]:
    with session_scope(engine) as session:
        existing, _ = beneficiaries.page(session, 1000, "")
    if not existing:
        return sorted(add_beneficiary().beneficiary_id for _ in range(17))
    return [row.beneficiary_id for row in existing]


@READ_ONLY_EXAMPLES
@given(page_size=st.integers(min_value=1, max_value=15))
def test_filtered_pages_cover_exactly_the_matching_rows(
    engine: Engine, now: datetime, page_size: int
) -> None:
    expected = _dead_letters(engine, now)
    assert _all_pages(engine, _list_dead_letters, page_size) == expected


def _dead_letters(engine: Engine, now: datetime) -> list[str]:
    with session_scope(engine) as session:
        existing, _ = outbox.page(session, DeliveryState.DEAD, 1000, "")
        if existing:
            return [row.message_id for row in existing]
        dead = []
        for index in range(12):
            message = outbox.enqueue(
                session,
                kind=OutboxKind.UPDATE_ASSISTANCE_STATUS,
                destination="qingdao",
                subject_id=new_id(),
                payload=b"",
                now=now,
            )
            if index % 3:
                outbox.mark_dead(session, message, "INVALID_ARGUMENT", now)
                dead.append(message.message_id)
        return dead


def test_rows_added_between_pages_neither_repeat_nor_hide_earlier_rows(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary]
) -> None:
    before = [add_beneficiary().beneficiary_id for _ in range(5)]
    with session_scope(engine) as session:
        first, token = beneficiaries.page(session, 2, "")
    added = add_beneficiary().beneficiary_id
    seen = [row.beneficiary_id for row in first]
    while token:
        with session_scope(engine) as session:
            rows, token = beneficiaries.page(session, 2, token)
        seen.extend(row.beneficiary_id for row in rows)
    assert seen == [*before, added]


@pytest.mark.parametrize("token", ["not-base64!", "aGVsbG8", "djE6", "\u00e9"])
def test_a_token_this_node_did_not_issue_is_invalid_input(engine: Engine, token: str) -> None:
    with session_scope(engine) as session, pytest.raises(InvalidInputError, match="page_token"):
        beneficiaries.page(session, 10, token)


def test_page_size_must_be_positive(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(InvalidInputError, match="page_size"):
        beneficiaries.page(session, 0, "")
