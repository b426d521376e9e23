"""Monthly amount proposals keep one awaiting review per person, on SQLite and PostgreSQL: a new
proposal, one at a time or a roll's batch, supersedes the one awaiting review; a bulk decision
decides exactly the changes named."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from federation_node.store import amount_changes
from federation_node.store.db import session_scope
from federation_node.store.models import AmountChangeState
from tests.integration.node_store.conftest import AddBeneficiary


def _states(engine: Engine, change_ids: list[str]) -> list[AmountChangeState]:
    with session_scope(engine) as session:
        return [amount_changes.get(session, change_id).state for change_id in change_ids]


def test_a_new_proposal_supersedes_the_one_awaiting_review(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    person, other = add_beneficiary(), add_beneficiary()
    with session_scope(engine) as session:
        first, none = amount_changes.propose(
            session,
            beneficiary_id=person.beneficiary_id,
            previous_amount_fen=250_000,
            proposed_amount_fen=257_500,
            reason="clerk",
            proposed_by="op-clerk",
            now=now,
        )
        assert none is None
        assert (first.state, first.proposed_amount_fen) == (AmountChangeState.PROPOSED, 257_500)
        second, superseded = amount_changes.propose(
            session,
            beneficiary_id=person.beneficiary_id,
            previous_amount_fen=250_000,
            proposed_amount_fen=258_000,
            reason="clerk again",
            proposed_by="op-clerk",
            now=now + timedelta(seconds=1),
        )
        assert superseded is not None
        assert superseded.change_id == first.change_id
        assert superseded.state is AmountChangeState.SUPERSEDED
        ids = [first.change_id, second.change_id]
    # A roll's batch supersedes the one awaiting review and proposes for the other person too.
    with session_scope(engine) as session:
        batch = amount_changes.propose_many(
            session,
            [
                amount_changes.Proposal(person.beneficiary_id, 250_000, 257_000),
                amount_changes.Proposal(other.beneficiary_id, 300_000, 309_000),
            ],
            reason="roll import",
            proposed_by="op-import",
            now=now,
        )
        pending = amount_changes.pending_for(session, [person.beneficiary_id, other.beneficiary_id])
    assert {change.change_id for change in pending.values()} == set(batch)
    assert _states(engine, ids) == [AmountChangeState.SUPERSEDED] * 2
    with session_scope(engine) as session:
        amount_changes.decide_many(
            session, batch[:1], AmountChangeState.APPROVED, "op-reviewer", "", now
        )
    assert _states(engine, batch) == [AmountChangeState.APPROVED, AmountChangeState.PROPOSED]
