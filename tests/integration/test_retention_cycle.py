"""The daily cycle deletes a paying office's personal data when its policy says, on SQLite and on
PostgreSQL, and a feed's record ids are kept only keyed.

A real office (keys, certificate and directory from a real registry) is composed in this process
on a fresh database with a clock the test moves: it registers people, imports a feed, and runs
the cycle days later; what remains is asserted row by row, and the transparency log and audit
chain still verify.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from adapters.feeds import content_key
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.feed import person_number
from cli.demo import screen_capture_png
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.store import audit, reports_store
from federation_node.store.models import Beneficiary, DataSignal, Evidence, LogEntry, LogHead
from signing import merkle
from tests.helpers.commands import certfed
from tests.helpers.feed_office import EnrolledOffice, compose_office, enrolled_office

NOW = datetime.now(UTC).replace(microsecond=0)
CLERK = Actor("operator", "op-retention-clerk")
REVIEWER = Actor("operator", "op-retention-reviewer")
ADMIN = Actor("operator", "op-retention-admin")
OBSERVED = NOW - timedelta(hours=1)
RESIDENT_ID = common_pb2.IDENTITY_TYPE_RESIDENT_ID


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("retention-office")) as enrolled:
        yield enrolled


def _signal(who: int, kind: desk_pb2.SignalKind.ValueType, record_id: str) -> desk_pb2.DataSignal:
    return desk_pb2.DataSignal(
        source="hospital-feed",
        source_record_id=record_id,
        kind=kind,
        identity_type=RESIDENT_ID,
        identity_number=person_number(who),
        observed_at=to_timestamp(OBSERVED),
    )


def _stored_signals(node: Node) -> dict[str | None, list[str]]:
    with node.context.session() as session:
        stored: dict[str | None, list[str]] = {}
        for row in session.exec(select(DataSignal)):
            stored.setdefault(row.beneficiary_id, []).append(row.source_record_id)
        return stored


def _log(node: Node) -> tuple[list[tuple[int, bytes, bytes]], bytes, bytes]:
    with node.context.session() as session:
        entries = [
            (row.leaf_index, row.leaf_hash, row.envelope_json)
            for row in session.exec(select(LogEntry).order_by(col(LogEntry.leaf_index)))
        ]
        head = session.get(LogHead, 1)
        assert head is not None
        _, root = merkle.root_from_leaves(entry[1] for entry in entries)
        return entries, head.root_hash, root


def test_the_cycle_deletes_due_personal_data_and_keeps_what_work_in_progress_needs(
    office: EnrolledOffice, store_url: str
) -> None:
    clock = [NOW]
    node = compose_office(office, store_url, bulk_feed=True, clock=lambda: clock[0])
    node.context.policy = dataclasses.replace(
        node.context.policy,
        signal_retention_days=10,
        unmatched_signal_days=2,
        former_beneficiary_days=5,
    )
    alive, ended, pending = node.registration.register_beneficiaries(
        CLERK,
        [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=RESIDENT_ID,
                    identity_number=person_number(index),
                    full_name="Retention Person",
                ),
                residence_region="440600",
                valid_until=to_timestamp(NOW + timedelta(days=20)),
                monthly_amount_fen=300_000,
            )
            for index in range(3)
        ],
    )
    # Two of them certified at this office by video call, each with a screen capture: two
    # attestations in the log, two evidence files.
    captures = {}
    for shade, person in enumerate((alive, ended)):
        capture = node.evidence.upload(
            CLERK,
            desk_pb2.UploadEvidenceRequest(
                media_type="image/png", content=screen_capture_png(shade)
            ),
        )
        captures[person.beneficiary_id] = capture.sha256
        certification = node.certifier.record_certification(
            CLERK,
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=person.beneficiary_id,
                method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(NOW - timedelta(hours=3)),
                evidence_digests=[bytes.fromhex(capture.sha256)],
            ),
        )
        node.certifier.approve_certification(REVIEWER, certification.certification_id)
    # A feed without record ids sends the content key: an unkeyed hash of the identity number.
    death = desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION
    unkeyed = content_key(death, RESIDENT_ID, person_number(0), OBSERVED)
    feed = [
        _signal(0, death, unkeyed),
        _signal(1, death, "death-1"),
        _signal(2, death, "death-2"),
        _signal(9, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, "stranger-9"),
    ]
    first = node.data_signals.record_signals(CLERK, feed)
    assert [result.outcome for result in first] == [
        desk_pb2.SIGNAL_OUTCOME_APPLIED,
        desk_pb2.SIGNAL_OUTCOME_APPLIED,
        desk_pb2.SIGNAL_OUTCOME_APPLIED,
        desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON,
    ]
    # The first was seen alive (paid again), the second's termination confirmed, the third's
    # still awaits review.
    node.lifecycle.review_termination(REVIEWER, alive.beneficiary_id, False, "seen alive")
    node.lifecycle.review_termination(REVIEWER, ended.beneficiary_id, True, "")

    # Kept keyed: neither the id the feed sent nor anything computable without the node's key.
    stored = _stored_signals(node)
    every_id = [record_id for ids in stored.values() for record_id in ids]
    assert len(set(every_id)) == 4
    assert not set(every_id) & {unkeyed, "death-1", "death-2", "stranger-9"}
    assert all(record_id.startswith("k1:") and len(record_id) <= 128 for record_id in every_id)
    # The same feed again records nothing twice.
    again = node.data_signals.record_signals(CLERK, feed)
    assert {result.outcome for result in again} == {desk_pb2.SIGNAL_OUTCOME_DUPLICATE}

    log_before = _log(node)
    # The two certifications, and the confirmed death as this office's record of it
    # (offices/life_events.py).
    assert len(log_before[0]) == 3
    assert log_before[1] == log_before[2]

    clock[0] = NOW + timedelta(days=3)
    assert node.daily_cycle.run_cycle(ADMIN, None).ran
    # The signal that matched nobody here is gone; the others are younger than their period.
    assert _stored_signals(node) == {key: ids for key, ids in stored.items() if key is not None}

    # A roll total that drifted (people a replica of the release before registered) is
    # recounted by the day's cycle; erasing a person keeps the row, and the count.
    with node.context.engine.begin() as connection:
        connection.execute(text("UPDATE tally SET total = 0 WHERE counter = 'roll'"))
    clock[0] = NOW + timedelta(days=12)
    assert node.daily_cycle.run_cycle(ADMIN, None).ran
    with node.context.session() as session:
        assert reports_store.beneficiary_count(session) == len(
            session.exec(select(Beneficiary)).all()
        )
    # Only the signal a termination awaiting review still needs is left.
    assert _stored_signals(node) == {pending.beneficiary_id: stored[pending.beneficiary_id]}
    with node.context.session() as session:
        people = {row.beneficiary_id: row for row in session.exec(select(Beneficiary))}
        assert people[ended.beneficiary_id].sealed_identity == b""
        assert people[ended.beneficiary_id].masked_identity_number == ""
        # Still paid, or still under review: kept whole.
        for kept in (alive, pending):
            assert people[kept.beneficiary_id].sealed_identity
            assert people[kept.beneficiary_id].masked_identity_number

    with node.context.session() as session:
        assert [row.sha256 for row in session.exec(select(Evidence))] == [
            captures[alive.beneficiary_id]
        ]
    # The log is as it was and its root still matches its leaves; the audit chain is intact
    # and holds one record per run, with counts only.
    assert _log(node) == log_before
    audit.flush(node.context.engine)
    with node.context.session() as session:
        assert audit.verify_chain(session) == []
        runs = audit.page(session, audit.AuditFilter(action_prefix="retention.run"), 10, "")[0]
        assert sorted(record.details["people_erased"] for record in runs) == [0, 1]
        assert all(
            set(record.details)
            == {
                "request_identities_erased",
                "signals_deleted",
                "messages_deleted",
                "evidence_deleted",
                "people_erased",
            }
            for record in runs
        )


def test_an_administrator_erases_a_former_beneficiary_on_request_at_the_host(
    office: EnrolledOffice,
) -> None:
    url = office.config.effective_database_url
    node = compose_office(office, url, bulk_feed=True, clock=lambda: NOW)
    ended, paid = node.registration.register_beneficiaries(
        CLERK,
        [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=RESIDENT_ID,
                    identity_number=person_number(20 + index),
                    full_name="Erased Person",
                ),
                residence_region="440600",
                valid_until=to_timestamp(NOW + timedelta(days=20)),
                monthly_amount_fen=300_000,
            )
            for index in range(2)
        ],
    )
    node.data_signals.record_signals(
        CLERK, [_signal(20, desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION, "death-20")]
    )
    config = str(office.config.data_dir / "node.toml")

    # Before the termination is reviewed, and for a person still paid, erasure is refused.
    refused = certfed("node", "erase", "--config", config, ended.beneficiary_id)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "termination awaits review" in refused.stdout
    still_paid = certfed("node", "erase", "--config", config, paid.beneficiary_id)
    assert still_paid.returncode == 1
    assert "still pays" in still_paid.stdout

    node.lifecycle.review_termination(REVIEWER, ended.beneficiary_id, True, "")
    erased = certfed("node", "erase", "--config", config, ended.beneficiary_id)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert person_number(20) not in erased.stdout

    audit.flush(node.context.engine)
    with node.context.session() as session:
        people = {row.beneficiary_id: row for row in session.exec(select(Beneficiary))}
        assert people[ended.beneficiary_id].sealed_identity == b""
        assert people[paid.beneficiary_id].sealed_identity
        assert not list(
            session.exec(
                select(DataSignal).where(DataSignal.beneficiary_id == ended.beneficiary_id)
            )
        )
        assert audit.verify_chain(session) == []
        records = audit.page(session, audit.AuditFilter(action_prefix="beneficiary.erase"), 10, "")
        assert [(r.subject_id, r.actor.startswith("host:")) for r in records[0]] == [
            (ended.beneficiary_id, True)
        ]
