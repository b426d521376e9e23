"""Monthly amount changes awaiting a reviewer, and their outcome: the `amount_change` rows.

Every function works inside the caller's transaction. At most one change per beneficiary is
proposed at a time: proposing another marks the earlier one superseded. The rule that the
proposer never reviews their own proposal is the office's (offices/monthly_amounts.py); this
module only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation.errors import NotFoundError
from federation_node.ids import new_ids
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import count_of, keyset_page, lock_and_refresh
from federation_node.store.models import AmountChange, AmountChangeState

_IN_BATCH = 500


class UnknownAmountChangeError(NotFoundError):
    """No amount change with that id at this office."""


def propose(
    session: Session,
    *,
    beneficiary_id: str,
    previous_amount_fen: int,
    proposed_amount_fen: int,
    reason: str,
    proposed_by: str,
    now: datetime,
) -> tuple[AmountChange, AmountChange | None]:
    """Record a proposed amount (`propose_many` for one person); returns it and the proposal
    it superseded, if any."""
    superseded = pending_for(session, [beneficiary_id]).get(beneficiary_id)
    [change_id] = propose_many(
        session,
        [Proposal(beneficiary_id, previous_amount_fen, proposed_amount_fen)],
        reason=reason,
        proposed_by=proposed_by,
        now=now,
    )
    if superseded is not None:
        # The row changed under the session: read it as it is now.
        session.refresh(superseded)
    return get(session, change_id), superseded


class Proposal(NamedTuple):
    beneficiary_id: str
    previous_amount_fen: int
    proposed_amount_fen: int


def propose_many(
    session: Session,
    proposals: Sequence[Proposal],
    *,
    reason: str,
    proposed_by: str,
    now: datetime,
) -> list[str]:
    """`propose` for many people at once, one proposal each: their proposals awaiting review
    are marked superseded and the new ones inserted together. Returns the new ids, in order."""
    people = [proposal.beneficiary_id for proposal in proposals]
    for start in range(0, len(people), _IN_BATCH):
        session.execute(
            update(AmountChange)
            .where(
                col(AmountChange.state) == AmountChangeState.PROPOSED,
                col(AmountChange.beneficiary_id).in_(people[start : start + _IN_BATCH]),
            )
            .values(state=AmountChangeState.SUPERSEDED)
            .execution_options(synchronize_session=False)
        )
    change_ids = new_ids(len(proposals))
    insert_rows(
        session,
        AmountChange.__table__,  # type: ignore[attr-defined]
        ("change_id", "beneficiary_id", "previous_amount_fen", "proposed_amount_fen"),
        ((change_id, *proposal) for change_id, proposal in zip(change_ids, proposals, strict=True)),
        same={
            "state": AmountChangeState.PROPOSED,
            "reason": reason,
            "proposed_by": proposed_by,
            "proposed_at": now,
        },
    )
    return change_ids


def get(session: Session, change_id: str, *, for_update: bool = False) -> AmountChange:
    change = session.get(AmountChange, change_id)
    if change is None:
        raise UnknownAmountChangeError(
            f"no amount change {change_id} at this office; list them with "
            "`certfed desk amount-changes`"
        )
    if for_update:
        lock_and_refresh(session, change)
    return change


def decide(
    session: Session,
    change: AmountChange,
    state: AmountChangeState,
    reviewer: str,
    reason: str,
    now: datetime,
) -> None:
    change.state = state
    change.reviewed_by = reviewer
    change.reviewed_at = now
    change.review_reason = reason
    session.add(change)


def locked(session: Session, change_ids: Sequence[str]) -> dict[str, AmountChange]:
    """The changes among `change_ids` that exist, by id, each row locked until the transaction
    ends (in id order, so two reviewers' batches never wait for each other in a circle)."""
    found: dict[str, AmountChange] = {}
    ordered = sorted(set(change_ids))
    for start in range(0, len(ordered), _IN_BATCH):
        statement = (
            select(AmountChange)
            .where(col(AmountChange.change_id).in_(ordered[start : start + _IN_BATCH]))
            .order_by(col(AmountChange.change_id))
            .with_for_update()
        )
        found.update((row.change_id, row) for row in session.exec(statement))
    return found


def decide_many(
    session: Session,
    change_ids: Sequence[str],
    state: AmountChangeState,
    reviewer: str,
    reason: str,
    now: datetime,
) -> None:
    """`decide` for many changes with one outcome."""
    for start in range(0, len(change_ids), _IN_BATCH):
        session.execute(
            update(AmountChange)
            .where(col(AmountChange.change_id).in_(list(change_ids[start : start + _IN_BATCH])))
            .values(state=state, reviewed_by=reviewer, reviewed_at=now, review_reason=reason)
            .execution_options(synchronize_session=False)
        )


def pending_for(session: Session, beneficiary_ids: Sequence[str]) -> dict[str, AmountChange]:
    """The proposal awaiting review for each of `beneficiary_ids` that has one."""
    found: dict[str, AmountChange] = {}
    for start in range(0, len(beneficiary_ids), _IN_BATCH):
        statement = select(AmountChange).where(
            AmountChange.state == AmountChangeState.PROPOSED,
            col(AmountChange.beneficiary_id).in_(list(beneficiary_ids[start : start + _IN_BATCH])),
        )
        found.update((row.beneficiary_id, row) for row in session.exec(statement))
    return found


def _listing(state: AmountChangeState | None) -> SelectOfScalar[AmountChange]:
    statement = select(AmountChange)
    if state is not None:
        statement = statement.where(AmountChange.state == state)
    return statement


def count(session: Session, state: AmountChangeState | None) -> int:
    return count_of(session, _listing(state))


def page(
    session: Session, state: AmountChangeState | None, page_size: int, page_token: str
) -> tuple[list[AmountChange], str]:
    """Changes in the order they were proposed, optionally in one state."""
    return keyset_page(
        session,
        _listing(state),
        key=col(AmountChange.change_id),
        key_of=lambda row: row.change_id,
        page_size=page_size,
        page_token=page_token,
    )
