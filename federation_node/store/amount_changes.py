"""Monthly amount changes awaiting a reviewer, and their outcome: the `amount_change` rows.

Every function works inside the caller's transaction. At most one change per beneficiary is
proposed at a time: proposing another marks the earlier one superseded. The rule that the
proposer never reviews their own proposal is the office's (offices/monthly_amounts.py); this
module only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation.errors import NotFoundError
from federation_node.ids import new_id
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
    """Record a proposed amount; returns it and the proposal it superseded, if any."""
    superseded = pending_for(session, [beneficiary_id]).get(beneficiary_id)
    if superseded is not None:
        superseded.state = AmountChangeState.SUPERSEDED
        session.add(superseded)
    change = AmountChange(
        change_id=new_id(),
        beneficiary_id=beneficiary_id,
        state=AmountChangeState.PROPOSED,
        previous_amount_fen=previous_amount_fen,
        proposed_amount_fen=proposed_amount_fen,
        reason=reason,
        proposed_by=proposed_by,
        proposed_at=now,
        reviewed_by=None,
        reviewed_at=None,
        review_reason=None,
    )
    session.add(change)
    return change, superseded


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
