"""A beneficiary's monthly amount, changed under four eyes: a clerk proposes, and another
operator, a reviewer, approves or rejects (separation of duties, docs/domain.md). Until a
reviewer approves, the entitlement keeps its amount; approved, the new amount counts for back pay
and overpayments from then on. Every step is audited with the amounts, never a name or number.

A roll's yearly adjustment proposes a new amount for most of the roll at once (roll.py); a
reviewer decides those in batches (`review_many`), each change under the same rules as on its
own, and approved in bulk only when it moves the amount by at most the policy's
`amounts.bulk_change_percent`. A change that may not be decided so is left as it is, with the
reason, for a review on its own. Each change decided leaves its own audit record, so a person's
history shows it.
"""

from __future__ import annotations

from typing import NamedTuple

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError, PreconditionError, SeparationOfDutiesError
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.entitlement import EntitlementState
from federation_node.rules.validation import require_id, require_text
from federation_node.store import amount_changes, audit, entitlements_store
from federation_node.store.db import session_scope
from federation_node.store.models import AmountChange, AmountChangeState

_DECIDED = {True: AmountChangeState.APPROVED, False: AmountChangeState.REJECTED}


class Left(NamedTuple):
    """A change a reviewer listed that was not decided: which kind of reason, and its words."""

    change_id: str
    kind: desk_pb2.AmountChangeLeftReason.ValueType
    reason: str


class MonthlyAmounts:
    """Proposals of a new monthly amount and their review, at a paying office of this node."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def propose(self, actor: Actor, request: desk_pb2.ProposeMonthlyAmountRequest) -> AmountChange:
        context = self._context
        limits = context.config.limits
        require_id(request.beneficiary_id, "beneficiary_id")
        amount = request.monthly_amount_fen
        if not 0 <= amount <= limits.max_monthly_amount_fen:
            raise InvalidInputError(
                "monthly_amount_fen", f"must be between 0 and {limits.max_monthly_amount_fen} fen"
            )
        reason = require_text(request.reason, "reason", limits)
        now = context.now()
        with session_scope(context.engine) as session:
            entitlement = entitlements_store.get(session, request.beneficiary_id, for_update=True)
            if entitlement.state is EntitlementState.TERMINATED:
                raise PreconditionError(
                    f"the entitlement of beneficiary {request.beneficiary_id} has ended; "
                    "its amount no longer changes"
                )
            if amount == entitlement.monthly_amount_fen:
                raise PreconditionError(
                    f"beneficiary {request.beneficiary_id} already has a monthly amount of "
                    f"{amount} fen"
                )
            change, superseded = amount_changes.propose(
                session,
                beneficiary_id=entitlement.beneficiary_id,
                previous_amount_fen=entitlement.monthly_amount_fen,
                proposed_amount_fen=amount,
                reason=reason,
                proposed_by=actor.name,
                now=now,
            )
            audit.append(
                session,
                actor=actor.label,
                action="entitlement.amount_proposed",
                subject_type="beneficiary",
                subject_id=entitlement.beneficiary_id,
                details={
                    "change_id": change.change_id,
                    "from_fen": change.previous_amount_fen,
                    "to_fen": amount,
                    "superseded": superseded.change_id if superseded is not None else None,
                },
                now=now,
            )
        return change

    def review(self, actor: Actor, request: desk_pb2.ReviewMonthlyAmountRequest) -> AmountChange:
        context = self._context
        require_id(request.change_id, "change_id")
        reason = require_text(
            request.reason, "reason", context.config.limits, required=not request.approve
        )
        now = context.now()
        with session_scope(context.engine) as session:
            change = amount_changes.get(session, request.change_id, for_update=True)
            _require_reviewable(change, actor)
            if request.approve:
                entitlement = entitlements_store.get(
                    session, change.beneficiary_id, for_update=True
                )
                entitlement.monthly_amount_fen = change.proposed_amount_fen
                entitlements_store.save(session, entitlement, now)
            state = _DECIDED[request.approve]
            amount_changes.decide(session, change, state, actor.name, reason, now)
            audit.append_many(session, [_decision_record(actor, change, state, reason)], now)
        return change

    def review_many(
        self, actor: Actor, request: desk_pb2.ReviewMonthlyAmountsRequest
    ) -> tuple[int, list[Left]]:
        """Decide every change listed that may be decided this way; returns how many were, and
        the others with why, in the order given."""
        context = self._context
        limits = context.config.limits
        if not request.change_ids:
            raise InvalidInputError("change_ids", "give at least one amount change")
        if len(request.change_ids) > limits.max_repeated:
            raise InvalidInputError(
                "change_ids",
                f"has {len(request.change_ids)} items; the limit is {limits.max_repeated}",
            )
        ids = [
            require_id(value, f"change_ids[{index}]")
            for index, value in enumerate(request.change_ids)
        ]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("change_ids", "lists an amount change twice")
        reason = require_text(request.reason, "reason", limits, required=not request.approve)
        bound = context.policy.bulk_amount_change_percent
        state = _DECIDED[request.approve]
        now = context.now()
        with session_scope(context.engine) as session:
            found = amount_changes.locked(session, ids)
            unknown = [change_id for change_id in ids if change_id not in found]
            if unknown:
                raise amount_changes.UnknownAmountChangeError(
                    f"no amount change {unknown[0]} at this office ({len(unknown)} of the "
                    f"{len(ids)} listed are unknown); nothing was decided"
                )
            deciding: list[AmountChange] = []
            left: list[Left] = []
            for change in (found[change_id] for change_id in ids):
                why = _not_reviewable(change, actor)
                if why is None and request.approve and not _within(change, bound):
                    why = (
                        desk_pb2.AMOUNT_CHANGE_LEFT_REASON_OVER_BULK_BOUND,
                        f"moves the amount from {change.previous_amount_fen} to "
                        f"{change.proposed_amount_fen} fen, more than the {bound}% a change "
                        "approved with others may; review it on its own",
                    )
                if why is None:
                    deciding.append(change)
                else:
                    left.append(Left(change.change_id, *why))
            decided_ids = [change.change_id for change in deciding]
            amount_changes.decide_many(session, decided_ids, state, actor.name, reason, now)
            if request.approve:
                entitlements_store.set_amounts(
                    session,
                    [(change.beneficiary_id, change.proposed_amount_fen) for change in deciding],
                    now,
                )
            audit.append_many(
                session, [_decision_record(actor, c, state, reason) for c in deciding], now
            )
        return len(deciding), left


def _not_reviewable(
    change: AmountChange, actor: Actor
) -> tuple[desk_pb2.AmountChangeLeftReason.ValueType, str] | None:
    """Why `actor` may not decide the change, or None when they may."""
    if change.state is not AmountChangeState.PROPOSED:
        return (
            desk_pb2.AMOUNT_CHANGE_LEFT_REASON_NOT_AWAITING_REVIEW,
            f"is {change.state.value}; only a proposed change can be approved or rejected",
        )
    if change.proposed_by == actor.name:
        return (
            desk_pb2.AMOUNT_CHANGE_LEFT_REASON_OWN_PROPOSAL,
            "was proposed by you; another reviewer must decide (separation of duties)",
        )
    return None


def _require_reviewable(change: AmountChange, actor: Actor) -> None:
    why = _not_reviewable(change, actor)
    if why is None:
        return
    kind, words = why
    message = f"amount change {change.change_id} {words}"
    if kind == desk_pb2.AMOUNT_CHANGE_LEFT_REASON_OWN_PROPOSAL:
        raise SeparationOfDutiesError(message)
    raise PreconditionError(message)


def _within(change: AmountChange, percent: int) -> bool:
    """Whether the change moves the amount by at most `percent` of the amount before it (a
    first amount, from zero, never is)."""
    moved = abs(change.proposed_amount_fen - change.previous_amount_fen)
    return moved * 100 <= percent * change.previous_amount_fen


def _decision_record(
    actor: Actor, change: AmountChange, state: AmountChangeState, reason: str
) -> audit.NewRecord:
    """The audit record of a decided change, under the person it changes."""
    return audit.NewRecord(
        actor=actor.label,
        action=f"entitlement.amount_{state.value}",
        subject_type="beneficiary",
        subject_id=change.beneficiary_id,
        details={
            "change_id": change.change_id,
            "from_fen": change.previous_amount_fen,
            "to_fen": change.proposed_amount_fen,
            "reason_given": bool(reason),
        },
    )
