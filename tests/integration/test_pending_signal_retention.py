"""Alive signals a clerk entered at the desk, held for a second person's approval, are personal
data too: the daily cycle deletes those a reviewer decided once the policy's signal period has
passed, keeps those still awaiting a decision, and erasing a person removes theirs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.feed import person_number
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.store import audit, beneficiaries, retention_store
from federation_node.store.db import session_scope
from federation_node.store.models import PendingSignal, PendingSignalDecision
from tests.helpers.feed_office import EnrolledOffice, compose_office, enrolled_office

NOW = datetime.now(UTC).replace(microsecond=0)
CLERK = Actor("operator", "op-pending-clerk")
REVIEWER = Actor("operator", "op-pending-reviewer")
ADMIN = Actor("operator", "op-pending-admin")


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("pending-retention-office")) as enrolled:
        yield enrolled


def test_decided_desk_signals_are_deleted_when_due_and_pending_ones_kept_until_erasure(
    office: EnrolledOffice, store_url: str
) -> None:
    clock = [NOW]
    node = compose_office(office, store_url, bulk_feed=True, clock=lambda: clock[0])
    node.context.policy = dataclasses.replace(node.context.policy, signal_retention_days=10)
    people = node.registration.register_beneficiaries(
        CLERK,
        [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=person_number(40 + index),
                    full_name="Pending Person",
                ),
                residence_region="440600",
                valid_until=to_timestamp(NOW + timedelta(days=20)),
                monthly_amount_fen=300_000,
            )
            for index in range(3)
        ],
    )
    held = node.data_signals.record_signals(
        CLERK,
        [
            desk_pb2.DataSignal(
                source="desk",
                source_record_id=f"seen-{index}",
                kind=desk_pb2.SIGNAL_KIND_HEALTH_CHECK,
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                identity_number=person_number(40 + index),
                observed_at=to_timestamp(NOW - timedelta(hours=1)),
            )
            for index in range(3)
        ],
    )
    assert {result.outcome for result in held} == {desk_pb2.SIGNAL_OUTCOME_AWAITING_APPROVAL}

    def rows() -> dict[str, PendingSignalDecision]:
        with node.context.session() as session:
            return {row.beneficiary_id: row.decision for row in session.exec(select(PendingSignal))}

    ids = {}
    with node.context.session() as session:
        for row in session.exec(select(PendingSignal)):
            ids[row.beneficiary_id] = row.pending_signal_id
    applied, rejected, waiting = (person.beneficiary_id for person in people)
    node.data_signals.decide_pending(REVIEWER, ids[applied], True, "")
    node.data_signals.decide_pending(REVIEWER, ids[rejected], False, "not the person")

    clock[0] = NOW + timedelta(days=5)
    assert node.daily_cycle.run_cycle(ADMIN, None).ran
    assert set(rows()) == {applied, rejected, waiting}

    clock[0] = NOW + timedelta(days=12)
    assert node.daily_cycle.run_cycle(ADMIN, None).ran
    # Decided more than ten days ago: gone. Still awaiting a reviewer: work in progress, kept.
    assert rows() == {waiting: PendingSignalDecision.PENDING}

    with session_scope(node.context.engine) as session:
        erased = retention_store.erase_person(
            session, beneficiaries.get(session, waiting), clock[0]
        )
    assert erased.signals >= 1
    assert rows() == {}
    audit.flush(node.context.engine)
    with node.context.session() as session:
        assert audit.verify_chain(session) == []
