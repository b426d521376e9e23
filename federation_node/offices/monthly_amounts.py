"""A beneficiary's monthly amount, changed under four eyes: a clerk proposes, and another
operator, a reviewer, approves or rejects (separation of duties, docs/domain.md). Until a
reviewer approves, the entitlement keeps its amount; approved, the new amount counts for back pay
and overpayments from then on. Every step is audited with the amounts, never a name or number.
"""

from __future__ import annotations

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError, PreconditionError, SeparationOfDutiesError
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.entitlement import EntitlementState
from federation_node.rules.validation import require_id, require_text
from federation_node.store import amount_changes, audit, entitlements_store
from federation_node.store.db import session_scope
from federation_node.store.models import AmountChange, AmountChangeState


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
            if change.state is not AmountChangeState.PROPOSED:
                raise PreconditionError(
                    f"amount change {change.change_id} is {change.state.value}; only a proposed "
                    "change can be approved or rejected"
                )
            if change.proposed_by == actor.name:
                raise SeparationOfDutiesError(
                    "the operator who proposed this amount may not review it; another reviewer "
                    "must decide (separation of duties)"
                )
            if request.approve:
                entitlement = entitlements_store.get(
                    session, change.beneficiary_id, for_update=True
                )
                entitlement.monthly_amount_fen = change.proposed_amount_fen
                entitlements_store.save(session, entitlement, now)
                state = AmountChangeState.APPROVED
            else:
                state = AmountChangeState.REJECTED
            amount_changes.decide(session, change, state, actor.name, reason, now)
            audit.append(
                session,
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
                now=now,
            )
        return change
