"""Certifications: recorded by a clerk, decided by a different reviewer, one per request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from federation.errors import (
    InvalidInputError,
    PreconditionError,
    SeparationOfDutiesError,
    UnknownCertificationError,
    UnknownRequestError,
)
from federation_node.store import assistance, certifications
from federation_node.store.db import session_scope
from federation_node.store.models import AssistanceRequest, AssistanceState, Certification
from federation_node.store.models import CertificationState as State

AddInbound = Callable[..., AssistanceRequest]
ON_SITE = 2
ALIVE = 1


def _record(
    engine: Engine,
    now: datetime,
    request_id: str | None = None,
    clerk_id: str = "op-clerk",
    evidence: list[bytes | str] | None = None,
) -> Certification:
    with session_scope(engine) as session:
        return certifications.record(
            session,
            request_id=request_id,
            subject_locator=bytes(32),
            paying_node_id="qingdao",
            paying_region="370200",
            certifying_region="620102",
            method=ON_SITE,
            outcome=ALIVE,
            observed_at=now - timedelta(hours=1),
            evidence_digests=evidence if evidence is not None else [bytes(range(32))],
            note="",
            clerk_id=clerk_id,
            now=now,
        )


def _approve(engine: Engine, certification_id: str, reviewer_id: str, now: datetime) -> None:
    with session_scope(engine) as session:
        certification = certifications.get(session, certification_id, for_update=True)
        certifications.approve(session, certification, reviewer_id, "att-" + reviewer_id, now)


def _reject(engine: Engine, certification_id: str, reviewer_id: str, now: datetime) -> None:
    with session_scope(engine) as session:
        certification = certifications.get(session, certification_id, for_update=True)
        certifications.reject(session, certification, reviewer_id, "photo unclear", now)


def test_recorded_certification_awaits_review_with_hex_evidence(
    engine: Engine, now: datetime
) -> None:
    recorded = _record(engine, now, evidence=[bytes(range(32)), "AB" * 32])
    with session_scope(engine) as session:
        stored = certifications.get(session, recorded.certification_id)
        assert stored.status is State.AWAITING_REVIEW
        assert stored.request_id is None
        assert stored.evidence_digests == [bytes(range(32)).hex(), "ab" * 32]


def test_evidence_that_is_not_a_sha256_digest_is_refused(engine: Engine, now: datetime) -> None:
    with pytest.raises(InvalidInputError, match="evidence_digests"):
        _record(engine, now, evidence=[b"short"])


def test_the_recording_clerk_cannot_approve(engine: Engine, now: datetime) -> None:
    recorded = _record(engine, now, clerk_id="op-a")
    with pytest.raises(SeparationOfDutiesError, match="a different reviewer must approve it"):
        _approve(engine, recorded.certification_id, "op-a", now)


def test_the_recording_clerk_cannot_reject(engine: Engine, now: datetime) -> None:
    recorded = _record(engine, now, clerk_id="op-a")
    with pytest.raises(SeparationOfDutiesError, match="a different reviewer must reject it"):
        _reject(engine, recorded.certification_id, "op-a", now)


def test_another_reviewer_approves_and_names_the_attestation(engine: Engine, now: datetime) -> None:
    recorded = _record(engine, now, clerk_id="op-a")
    _approve(engine, recorded.certification_id, "op-b", now)
    with session_scope(engine) as session:
        stored = certifications.get(session, recorded.certification_id)
        assert stored.status is State.APPROVED
        assert stored.reviewer_id == "op-b"
        assert stored.attestation_id == "att-op-b"
        assert stored.reviewed_at == now


def test_a_decided_certification_cannot_be_decided_again(engine: Engine, now: datetime) -> None:
    recorded = _record(engine, now, clerk_id="op-a")
    _reject(engine, recorded.certification_id, "op-b", now)
    with pytest.raises(PreconditionError, match="already rejected"):
        _approve(engine, recorded.certification_id, "op-c", now)


def test_certification_for_a_request_needs_an_open_inbound_request(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    with pytest.raises(UnknownRequestError):
        _record(engine, now, request_id="no-such-request")
    request = add_inbound()
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assistance.set_local_status(session, stored, AssistanceState.DECLINED, "moved", None, now)
    with pytest.raises(PreconditionError, match="declined"):
        _record(engine, now, request_id=request.request_id)


def test_one_request_has_one_certification_under_review_or_approved(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    request = add_inbound()
    first = _record(engine, now, request_id=request.request_id)
    with pytest.raises(PreconditionError, match=first.certification_id):
        _record(engine, now, request_id=request.request_id)
    _reject(engine, first.certification_id, "op-b", now)
    second = _record(engine, now, request_id=request.request_id)
    _approve(engine, second.certification_id, "op-b", now)
    with pytest.raises(PreconditionError, match="approved"):
        _record(engine, now, request_id=request.request_id)
    with session_scope(engine) as session:
        listed = certifications.for_request(session, request.request_id)
    assert [c.certification_id for c in listed] == [first.certification_id, second.certification_id]


def test_page_filters_by_status(engine: Engine, now: datetime) -> None:
    made = [_record(engine, now) for _ in range(3)]
    _approve(engine, made[0].certification_id, "op-b", now)
    with session_scope(engine) as session:
        waiting, token = certifications.page(session, State.AWAITING_REVIEW, 10, "")
        assert [c.certification_id for c in waiting] == [c.certification_id for c in made[1:]]
        assert token == ""
        everything, _ = certifications.page(session, None, 10, "")
        assert len(everything) == 3


def test_unknown_certification_is_reported(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(UnknownCertificationError):
        certifications.get(session, "c-404")
