"""Assistance requests: one open request per person, idempotent receipt, legal transitions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Session

from federation.errors import (
    AlreadyExistsError,
    DuplicateRequestError,
    PreconditionError,
    UnknownRequestError,
)
from federation_node.ids import new_id
from federation_node.service.views import request_view
from federation_node.store import assistance, beneficiaries
from federation_node.store.db import session_scope
from federation_node.store.models import (
    AssistanceRequest,
    AssistanceState,
    Beneficiary,
    BeneficiaryState,
    RequestDirection,
)

AddBeneficiary = Callable[..., Beneficiary]
AddInbound = Callable[..., AssistanceRequest]


def _request(engine: Engine, beneficiary_id: str, now: datetime) -> AssistanceRequest:
    with session_scope(engine) as session:
        return _create_outbound(session, beneficiary_id, now)


def _create_outbound(session: Session, beneficiary_id: str, now: datetime) -> AssistanceRequest:
    beneficiary = beneficiaries.get(session, beneficiary_id)
    return assistance.create_outbound(
        session,
        request_id=new_id(),
        beneficiary=beneficiary,
        peer_node_id="lanzhou-chengguan",
        paying_node_id="qingdao",
        paying_region="370200",
        deadline=now + timedelta(days=14),
        acceptable_methods=[2, 4],
        note="",
        payload_sha256="cd" * 32,
        now=now,
    )


def _remote(
    engine: Engine, request_id: str, status: AssistanceState, sequence: int, now: datetime
) -> bool:
    with session_scope(engine) as session:
        request = assistance.get(session, request_id, RequestDirection.OUTBOUND)
        return assistance.apply_remote_status(session, request, status, "", None, sequence, now)


def _local(
    engine: Engine,
    request_id: str,
    status: AssistanceState,
    now: datetime,
    scheduled_for: datetime | None = None,
) -> int:
    with session_scope(engine) as session:
        request = assistance.get(session, request_id, RequestDirection.INBOUND)
        return assistance.set_local_status(session, request, status, "", scheduled_for, now)


# Outbound: the paying office's side.


def test_outbound_request_starts_queued_and_open(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    beneficiary = add_beneficiary()
    request = _request(engine, beneficiary.beneficiary_id, now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assert stored.status is AssistanceState.QUEUED
        assert stored.direction is RequestDirection.OUTBOUND
        assert stored.open_beneficiary_id == beneficiary.beneficiary_id
        assert stored.subject_locator == beneficiary.subject_locator
        assert stored.residence_region == beneficiary.residence_region
        assert stored.acceptable_methods == [2, 4]
        assert assistance.open_for_beneficiary(session, beneficiary.beneficiary_id) is not None


def test_second_open_request_for_a_beneficiary_names_the_open_one(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    beneficiary = add_beneficiary()
    first = _request(engine, beneficiary.beneficiary_id, now)
    with pytest.raises(DuplicateRequestError, match=first.request_id):
        _request(engine, beneficiary.beneficiary_id, now)


@pytest.mark.parametrize("closing", [AssistanceState.DECLINED, AssistanceState.COMPLETED])
def test_new_request_is_allowed_once_the_open_one_is_closed(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime, closing: AssistanceState
) -> None:
    beneficiary = add_beneficiary()
    first = _request(engine, beneficiary.beneficiary_id, now)
    assert _remote(engine, first.request_id, closing, 1, now)
    with session_scope(engine) as session:
        assert assistance.get(session, first.request_id).open_beneficiary_id is None
    second = _request(engine, beneficiary.beneficiary_id, now)
    assert second.request_id != first.request_id


def test_no_request_for_a_beneficiary_whose_entitlement_ended(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    added = add_beneficiary()
    with session_scope(engine) as session:
        beneficiary = beneficiaries.get(session, added.beneficiary_id)
        beneficiaries.set_status(session, beneficiary, BeneficiaryState.DECEASED, now, now)
    with pytest.raises(PreconditionError, match="deceased"):
        _request(engine, added.beneficiary_id, now)


def test_racing_requests_for_one_beneficiary_open_exactly_one(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    beneficiary = add_beneficiary()
    barrier = threading.Barrier(6)
    created: list[str] = []
    refused: list[DuplicateRequestError] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        try:
            request = _request(engine, beneficiary.beneficiary_id, now)
        except DuplicateRequestError as error:
            with lock:
                refused.append(error)
        else:
            with lock:
                created.append(request.request_id)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 1
    assert len(refused) == 5
    assert all(created[0] in str(error) for error in refused)


@pytest.mark.postgres
def test_request_losing_the_insert_race_on_postgres_is_refused_as_duplicate(
    pg_engine: Engine, register_beneficiary: Callable[[Engine], Beneficiary], now: datetime
) -> None:
    # The loser passes the SELECT check (the winner has not committed), then its INSERT waits on
    # the unique index until the winner commits: the database, not the check, refuses it.
    engine = pg_engine
    beneficiary = register_beneficiary(engine)
    outcome: list[BaseException | AssistanceRequest] = []

    def loser() -> None:
        try:
            outcome.append(_request(engine, beneficiary.beneficiary_id, now))
        except BaseException as error:  # reported to the main thread below
            outcome.append(error)

    with session_scope(engine) as session:
        winner = _create_outbound(session, beneficiary.beneficiary_id, now)
        thread = threading.Thread(target=loser)
        thread.start()
        _wait_until_a_backend_waits_on_a_lock(engine)
    thread.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], DuplicateRequestError)
    assert winner.request_id in str(outcome[0])


def _wait_until_a_backend_waits_on_a_lock(engine: Engine) -> None:
    deadline = time.monotonic() + 20
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(query).scalar_one() >= 1:
                return
        time.sleep(0.01)
    raise AssertionError("the second request never waited on the unique index")


def test_remote_status_ignores_a_stale_sequence(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    request = _request(engine, add_beneficiary().beneficiary_id, now)
    assert _remote(engine, request.request_id, AssistanceState.RECEIVED, 0, now)
    assert _remote(engine, request.request_id, AssistanceState.SCHEDULED, 2, now)
    assert not _remote(engine, request.request_id, AssistanceState.ACCEPTED, 1, now)
    assert not _remote(engine, request.request_id, AssistanceState.SCHEDULED, 2, now)
    assert not _remote(engine, request.request_id, AssistanceState.RECEIVED, 0, now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assert stored.status is AssistanceState.SCHEDULED
        assert stored.status_sequence == 2


def test_completed_outbound_request_stays_completed(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    request = _request(engine, add_beneficiary().beneficiary_id, now)
    attestation_id = new_id()
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id, for_update=True)
        assistance.complete(session, stored, attestation_id, now)
        assistance.complete(session, stored, new_id(), now)
    # A status update sent before the attestation arrives after it.
    assert not _remote(engine, request.request_id, AssistanceState.SCHEDULED, 3, now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assert stored.status is AssistanceState.COMPLETED
        assert stored.attestation_id == attestation_id
        assert stored.open_beneficiary_id is None


# Inbound: the residence node's side.


def test_inbound_request_is_stored_as_received(engine: Engine, add_inbound: AddInbound) -> None:
    request = add_inbound()
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id, RequestDirection.INBOUND)
        assert stored.status is AssistanceState.RECEIVED
        assert stored.sealed_identity == b"hpke-sealed"
        assert stored.open_beneficiary_id is None
        assert stored.beneficiary_id is None


def test_redelivered_inbound_request_is_a_duplicate(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    request = add_inbound()
    with session_scope(engine) as session:
        again, duplicate = _receive(session, request.request_id, "qingdao", "ab" * 32, now)
    assert duplicate
    assert again.request_id == request.request_id


def test_inbound_request_id_reused_with_other_content_is_refused(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    request = add_inbound()
    with (
        session_scope(engine) as session,
        pytest.raises(AlreadyExistsError, match="reused with different content"),
    ):
        _receive(session, request.request_id, "qingdao", "ef" * 32, now)


def test_inbound_request_id_reused_by_another_node_is_refused(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    request = add_inbound()
    with session_scope(engine) as session, pytest.raises(AlreadyExistsError):
        _receive(session, request.request_id, "foshan", "ab" * 32, now)


def _receive(
    session: Session, request_id: str, peer: str, digest: str, now: datetime
) -> tuple[AssistanceRequest, bool]:
    return assistance.receive_inbound(
        session,
        request_id=request_id,
        peer_node_id=peer,
        paying_node_id=peer,
        paying_region="370200",
        residence_region="620102",
        subject_locator=bytes(32),
        sealed_identity=b"hpke-sealed",
        deadline=now + timedelta(days=14),
        acceptable_methods=[2, 3],
        note="home visit preferred",
        payload_sha256=digest,
        now=now,
    )


def test_legal_transitions_bump_the_sequence(
    engine: Engine, add_inbound: AddInbound, now: datetime
) -> None:
    request = add_inbound()
    visit = now + timedelta(days=2)
    assert _local(engine, request.request_id, AssistanceState.ACCEPTED, now) == 1
    assert _local(engine, request.request_id, AssistanceState.SCHEDULED, now, visit) == 2
    assert _local(engine, request.request_id, AssistanceState.SCHEDULED, now, visit) == 3
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id, for_update=True)
        assert assistance.complete(session, stored, "att-1", now) == 4
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assert stored.status is AssistanceState.COMPLETED
        assert stored.scheduled_for == visit
        assert stored.attestation_id == "att-1"


@pytest.mark.parametrize(
    ("path", "refused", "message"),
    [
        ([AssistanceState.DECLINED], AssistanceState.ACCEPTED, "can no longer be accepted"),
        ([AssistanceState.COMPLETED], AssistanceState.DECLINED, "can no longer be declined"),
        ([AssistanceState.ACCEPTED], AssistanceState.ACCEPTED, "already accepted"),
        ([AssistanceState.SCHEDULED], AssistanceState.ACCEPTED, "cannot be accepted"),
        ([AssistanceState.ACCEPTED], AssistanceState.RECEIVED, "cannot be set back to received"),
        ([], AssistanceState.QUEUED, "cannot be queued"),
    ],
)
def test_illegal_transitions_are_refused_with_the_current_status(
    engine: Engine,
    add_inbound: AddInbound,
    now: datetime,
    path: list[AssistanceState],
    refused: AssistanceState,
    message: str,
) -> None:
    request = add_inbound()
    for status in path:
        _local(engine, request.request_id, status, now, now + timedelta(days=1))
    with pytest.raises(PreconditionError, match=message):
        _local(engine, request.request_id, refused, now)


def test_only_the_residence_side_sets_a_local_status(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    request = _request(engine, add_beneficiary().beneficiary_id, now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        with pytest.raises(PreconditionError):
            assistance.set_local_status(session, stored, AssistanceState.ACCEPTED, "", None, now)


def test_get_with_the_wrong_direction_is_unknown(engine: Engine, add_inbound: AddInbound) -> None:
    request = add_inbound()
    with session_scope(engine) as session:
        with pytest.raises(UnknownRequestError):
            assistance.get(session, request.request_id, RequestDirection.OUTBOUND)
        with pytest.raises(UnknownRequestError):
            assistance.get(session, "no-such-request")


def test_page_filters_by_direction_and_status(
    engine: Engine, add_inbound: AddInbound, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    inbound = [add_inbound() for _ in range(3)]
    outbound = _request(engine, add_beneficiary().beneficiary_id, now)
    _local(engine, inbound[1].request_id, AssistanceState.DECLINED, now)
    with session_scope(engine) as session:
        rows, token = assistance.page(session, RequestDirection.INBOUND, None, 10, "")
        assert [row.request_id for row in rows] == [r.request_id for r in inbound]
        assert token == ""
        rows, _ = assistance.page(
            session, RequestDirection.INBOUND, AssistanceState.DECLINED, 10, ""
        )
        assert [row.request_id for row in rows] == [inbound[1].request_id]
        rows, _ = assistance.page(session, RequestDirection.OUTBOUND, None, 10, "")
        assert [row.request_id for row in rows] == [outbound.request_id]
        rows, _ = assistance.page(session, None, None, 10, "")
        assert len(rows) == 4
        # A listed request shows on a desk exactly as the request read whole does.
        for row in rows:
            whole = session.get(AssistanceRequest, row.request_id)
            assert whole is not None
            assert request_view(row) == request_view(whole)


def test_racing_deliveries_of_one_request_store_it_once(engine: Engine, now: datetime) -> None:
    request_id = new_id()
    barrier = threading.Barrier(4)
    duplicates: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait()
        with session_scope(engine) as session:
            _, duplicate = _receive(session, request_id, "qingdao", "ab" * 32, now)
        with lock:
            duplicates.append(duplicate)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(duplicates) == [False, True, True, True]


def test_attestation_arriving_after_the_completed_status_is_still_recorded(
    engine: Engine, add_beneficiary: AddBeneficiary, now: datetime
) -> None:
    request = _request(engine, add_beneficiary().beneficiary_id, now)
    assert _remote(engine, request.request_id, AssistanceState.COMPLETED, 4, now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id, for_update=True)
        assistance.complete(session, stored, "att-late", now)
    with session_scope(engine) as session:
        stored = assistance.get(session, request.request_id)
        assert stored.status is AssistanceState.COMPLETED
        assert stored.attestation_id == "att-late"
