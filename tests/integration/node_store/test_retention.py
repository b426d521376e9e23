"""Retention deletes what is due and nothing else, on SQLite and on PostgreSQL.

Rows older and younger than each period are seeded, among them old ones that work in progress
still needs (an open request, a certification awaiting review, a termination awaiting review);
one retention run, as the daily cycle makes it, must leave exactly the expected rows, write one
audit record with counts only, and leave the audit chain intact.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from certfed.v1 import registry_pb2
from federation.errors import PreconditionError
from federation_node.offices import retention
from federation_node.rules.entitlement import EntitlementState, ReminderKind
from federation_node.rules.policy import Policy
from federation_node.store import audit, evidence_store, outbox, retention_store, signals_store
from federation_node.store.db import is_postgres, session_scope
from federation_node.store.models import (
    REGISTRY_DESTINATION,
    AssistanceRequest,
    AssistanceState,
    AuditRecord,
    Beneficiary,
    Certification,
    CertificationState,
    DataSignal,
    DeliveryState,
    Entitlement,
    Evidence,
    OutboxKind,
    OutboxMessage,
    Reminder,
    SignalOutcome,
)
from federation_node.store.reminders_store import queue as queue_reminder
from tests.helpers.statements import executed_statements
from tests.integration.node_store.conftest import NOW, AddBeneficiary, AddInbound

POLICY = Policy(
    closed_request_identity_days=30,
    signal_retention_days=100,
    unmatched_signal_days=30,
    delivered_message_days=30,
    evidence_retention_days=60,
    former_beneficiary_days=365,
)
# The day the cycle runs: 45 days after NOW.
DAY = NOW + timedelta(days=45)
ACTOR = "node:qingdao"


def _close(session: Session, request_id: str, state: AssistanceState, at: datetime) -> None:
    request = session.get(AssistanceRequest, request_id)
    assert request is not None
    request.status = state
    request.updated_at = at
    session.add(request)


def _certification(session: Session, request_id: str | None, digests: list[str]) -> None:
    session.add(
        Certification(
            certification_id=f"cert-{request_id or digests[0][:8]}",
            status=CertificationState.AWAITING_REVIEW,
            request_id=request_id,
            subject_locator=b"\x01" * 32,
            paying_node_id="qingdao",
            paying_region="370200",
            certifying_region="620102",
            method=2,
            outcome=1,
            observed_at=NOW,
            evidence_digests=digests,
            note="",
            clerk_id="op-clerk",
            reviewer_id=None,
            recorded_at=NOW,
            reviewed_at=None,
            rejection_reason="",
            attestation_id=None,
        )
    )


def _message(session: Session, subject: str, state: DeliveryState, at: datetime) -> None:
    message = outbox.enqueue(
        session,
        kind=OutboxKind.REQUEST_ASSISTANCE,
        destination="qingdao",
        subject_id=subject,
        payload=b"sealed identity inside",
        now=at,
    )
    message.state = state
    message.delivered_at = at if state is DeliveryState.DELIVERED else None
    session.add(message)


def _signal(session: Session, record_id: str, beneficiary_id: str | None, at: datetime) -> None:
    signals_store.add(
        session,
        source="hospital",
        source_record_id=record_id,
        kind=1,
        beneficiary_id=beneficiary_id,
        observed_at=at,
        outcome=SignalOutcome.APPLIED if beneficiary_id else SignalOutcome.UNKNOWN_PERSON,
        attestation_id=None,
        recorded_by="op-clerk",
        now=at,
    )


def _entitlement(
    session: Session,
    beneficiary_id: str,
    state: EntitlementState,
    at: datetime,
    *,
    pending_review: bool = False,
    overpayment_fen: int = 0,
) -> None:
    session.add(
        Entitlement(
            beneficiary_id=beneficiary_id,
            monthly_amount_fen=300_000,
            state=state,
            state_since=at,
            termination_pending_review=pending_review,
            pending_status=None,
            pending_effective_at=None,
            withheld_from_month=None,
            overpayment_fen=overpayment_fen,
            updated_at=at,
        )
    )


def test_retention_deletes_what_is_due_and_nothing_else(
    engine: Engine, add_inbound: AddInbound, add_beneficiary: AddBeneficiary
) -> None:
    requests = {
        name: add_inbound(f"req-{name}").request_id
        for name in ("closed-old", "declined-old", "closed-young", "open-old", "reviewed-old")
    }
    paid = add_beneficiary("paid")
    pending = add_beneficiary("pending-termination")
    former = add_beneficiary("former")
    recent = add_beneficiary("recently-ended")
    owing = add_beneficiary("owes-overpayment")
    old = NOW - timedelta(days=400)
    with session_scope(engine) as session:
        _close(session, requests["closed-old"], AssistanceState.COMPLETED, NOW)
        _close(session, requests["declined-old"], AssistanceState.DECLINED, NOW)
        _close(session, requests["closed-young"], AssistanceState.COMPLETED, DAY - timedelta(1))
        _close(session, requests["reviewed-old"], AssistanceState.COMPLETED, NOW)
        _certification(session, requests["reviewed-old"], [])
        _message(session, "delivered-old", DeliveryState.DELIVERED, NOW)
        _message(session, "delivered-young", DeliveryState.DELIVERED, DAY - timedelta(1))
        _message(session, "pending-old", DeliveryState.PENDING, NOW)
        _message(session, "dead-old", DeliveryState.DEAD, NOW)
        digests = {}
        for name, at in (
            ("evidence-old", NOW - timedelta(days=30)),
            ("evidence-young", NOW),
            ("evidence-reviewed", NOW - timedelta(days=30)),
        ):
            digests[name] = name.encode().hex().ljust(64, "0")
            evidence_store.store(
                session,
                sha256=digests[name],
                media_type="image/png",
                sealed_content=b"sealed",
                size_bytes=6,
                now=at,
            )
        _certification(session, None, [digests["evidence-reviewed"]])
        _signal(session, "paid-old", paid.beneficiary_id, NOW - timedelta(days=60))
        _signal(session, "paid-young", paid.beneficiary_id, NOW)
        _signal(session, "pending-old", pending.beneficiary_id, NOW - timedelta(days=60))
        _signal(session, "unmatched-old", None, NOW)
        _signal(session, "unmatched-young", None, DAY - timedelta(1))
        _signal(session, "former", former.beneficiary_id, old)
        _entitlement(session, paid.beneficiary_id, EntitlementState.ACTIVE, old)
        _entitlement(
            session, pending.beneficiary_id, EntitlementState.SUSPENDED, old, pending_review=True
        )
        _entitlement(session, former.beneficiary_id, EntitlementState.TERMINATED, old)
        _entitlement(session, recent.beneficiary_id, EntitlementState.TERMINATED, NOW)
        _entitlement(
            session, owing.beneficiary_id, EntitlementState.TERMINATED, old, overpayment_fen=100
        )
        queue_reminder(
            session,
            beneficiary_id=former.beneficiary_id,
            kind=next(iter(ReminderKind)),
            expires_at=old,
            offset_days=0,
            now=old,
        )

    with session_scope(engine) as session:
        outcome = retention.run(session, POLICY, ACTOR, DAY, DAY)
    assert outcome == retention.RetentionOutcome(
        request_identities_erased=2,
        signals_deleted=3,
        messages_deleted=1,
        evidence_deleted=1,
        people_erased=1,
    )

    with session_scope(engine) as session:
        identities = {
            row.request_id: row.sealed_identity is not None
            for row in session.exec(select(AssistanceRequest))
        }
        assert identities == {
            requests["closed-old"]: False,
            requests["declined-old"]: False,
            requests["closed-young"]: True,
            requests["open-old"]: True,
            requests["reviewed-old"]: True,
        }
        # The payload's hash stays with every request.
        assert all(row.payload_sha256 for row in session.exec(select(AssistanceRequest)))
        messages = list(session.exec(select(OutboxMessage)))
        assert sorted(
            row.subject_id for row in messages if row.kind != OutboxKind.PUBLISH_LOCATORS
        ) == ["dead-old", "delivered-young", "pending-old"]
        # The erased person's locator is withdrawn from the registry's index, queued by the run.
        withdrawals = [row for row in messages if row.kind == OutboxKind.PUBLISH_LOCATORS]
        assert [(row.subject_id, row.destination) for row in withdrawals] == [
            (former.beneficiary_id, REGISTRY_DESTINATION)
        ]
        assert registry_pb2.PublishLocatorsRequest.FromString(withdrawals[0].payload).withdrawn == [
            former.subject_locator
        ]
        assert sorted(row.sha256 for row in session.exec(select(Evidence))) == sorted(
            [digests["evidence-young"], digests["evidence-reviewed"]]
        )
        assert sorted(row.source_record_id for row in session.exec(select(DataSignal))) == [
            "paid-young",
            "pending-old",
            "unmatched-young",
        ]
        people = {row.beneficiary_id: row for row in session.exec(select(Beneficiary))}
        assert people[former.beneficiary_id].sealed_identity == b""
        assert people[former.beneficiary_id].masked_identity_number == ""
        for kept in (paid, pending, recent, owing):
            assert people[kept.beneficiary_id].sealed_identity == kept.sealed_identity
        assert list(session.exec(select(Reminder))) == []

    audit.flush(engine)
    with session_scope(engine) as session:
        assert audit.verify_chain(session) == []
        runs = list(session.exec(select(AuditRecord).where(AuditRecord.action == "retention.run")))
        assert [(run.subject_id, run.details) for run in runs] == [
            (
                DAY.date().isoformat(),
                {
                    "request_identities_erased": 2,
                    "signals_deleted": 3,
                    "messages_deleted": 1,
                    "evidence_deleted": 1,
                    "people_erased": 1,
                },
            )
        ]

    # A second run the same day finds nothing more to delete.
    with session_scope(engine) as session:
        again = retention.run(session, POLICY, ACTOR, DAY, DAY)
    assert again == retention.RetentionOutcome(0, 0, 0, 0, 0)


def test_erasure_on_request_is_refused_while_the_person_is_paid_or_under_review(
    engine: Engine, add_beneficiary: AddBeneficiary
) -> None:
    paid = add_beneficiary("paid")
    pending = add_beneficiary("pending")
    ended = add_beneficiary("ended")
    with session_scope(engine) as session:
        _entitlement(session, paid.beneficiary_id, EntitlementState.ACTIVE, NOW)
        _entitlement(
            session, pending.beneficiary_id, EntitlementState.SUSPENDED, NOW, pending_review=True
        )
        _entitlement(session, ended.beneficiary_id, EntitlementState.TERMINATED, NOW)
        _signal(session, "ended-1", ended.beneficiary_id, NOW)
        _signal(session, "paid-1", paid.beneficiary_id, NOW)

    with pytest.raises(PreconditionError, match="still pays"):
        retention.erase(engine, "host:admin", paid.beneficiary_id, NOW)
    with pytest.raises(PreconditionError, match="termination awaits review"):
        retention.erase(engine, "host:admin", pending.beneficiary_id, NOW)

    erased = retention.erase(engine, "host:admin", ended.beneficiary_id, NOW)
    assert erased.signals == 1

    audit.flush(engine)
    with session_scope(engine) as session:
        people = {row.beneficiary_id: row for row in session.exec(select(Beneficiary))}
        assert people[ended.beneficiary_id].sealed_identity == b""
        assert people[paid.beneficiary_id].sealed_identity == paid.sealed_identity
        assert people[pending.beneficiary_id].sealed_identity == pending.sealed_identity
        assert [row.source_record_id for row in session.exec(select(DataSignal))] == ["paid-1"]
        assert audit.verify_chain(session) == []
        records = list(
            session.exec(select(AuditRecord).where(AuditRecord.action == "beneficiary.erase"))
        )
        assert [(record.actor, record.subject_id) for record in records] == [
            ("host:admin", ended.beneficiary_id)
        ]


def test_the_daily_delete_of_signals_reads_them_through_the_recorded_at_index(
    engine: Engine, add_beneficiary: AddBeneficiary
) -> None:
    person = add_beneficiary()
    with session_scope(engine) as session:
        for day in range(400):
            at = NOW - timedelta(days=day)
            _signal(session, f"matched-{day}", person.beneficiary_id, at)
            if day < 60:
                _signal(session, f"unmatched-{day}", None, at)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    with executed_statements(engine) as executed, session_scope(engine) as session:
        deleted = retention_store.delete_signals(
            session,
            recorded_before=NOW - timedelta(days=POLICY.signal_retention_days),
            unmatched_before=NOW - timedelta(days=POLICY.unmatched_signal_days),
        )
    # Recorded more than 100 days before: days 101 to 399; unmatched more than 30 days before:
    # days 31 to 59.
    assert deleted == 299 + 29
    [(statement, parameters)] = [
        (statement, parameters)
        for statement, parameters in executed
        if statement.startswith("DELETE FROM data_signal")
    ]
    with engine.connect() as connection:
        if is_postgres(engine):
            kind = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": "ix_data_signal_recorded_at"},
            ).scalar_one()
            assert "USING brin" in kind
            # A test table is a few pages, which PostgreSQL reads whole whatever the indexes;
            # what is checked is that the delete's conditions can use the index at all.
            connection.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(
                str(row[0])
                for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
        else:
            plan = "\n".join(
                str(row[-1])
                for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
    assert "ix_data_signal_recorded_at" in plan, plan
    assert not re.search(r"(Seq Scan on|SCAN) data_signal\b", plan), plan
