"""Beneficiaries: one per person, found by locator, validity only ever moves forward."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from federation.errors import AlreadyExistsError, UnknownBeneficiaryError
from federation_node.store import beneficiaries
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, BeneficiaryState, IdentityType


def _register(engine: Engine, locator: bytes, now: datetime) -> Beneficiary:
    with session_scope(engine) as session:
        return beneficiaries.add(
            session,
            subject_locator=locator,
            identity_type=IdentityType.HKID,
            masked_identity_number="A12****(3)",
            sealed_identity=b"sealed",
            residence_region="HK",
            paying_region="440600",
            valid_until=None,
            roll_key=hashlib.sha256(b"roll key:" + locator).digest(),
            now=now,
        )


def test_registered_beneficiary_is_active_and_found_by_id_and_locator(
    engine: Engine, make_locator: Callable[[str], bytes], now: datetime
) -> None:
    added = _register(engine, make_locator("chan"), now)
    with session_scope(engine) as session:
        found = beneficiaries.get(session, added.beneficiary_id)
        assert found.status is BeneficiaryState.ACTIVE
        assert found.identity_type is IdentityType.HKID
        assert found.valid_until is None
        assert not found.possible_duplicate
        by_locator = beneficiaries.by_locator(session, make_locator("chan"))
        assert by_locator is not None
        assert by_locator.beneficiary_id == added.beneficiary_id
        assert beneficiaries.by_locator(session, make_locator("nobody")) is None


def test_second_registration_of_the_same_person_names_the_existing_beneficiary(
    engine: Engine, make_locator: Callable[[str], bytes], now: datetime
) -> None:
    first = _register(engine, make_locator("chan"), now)
    with pytest.raises(AlreadyExistsError, match=first.beneficiary_id) as caught:
        _register(engine, make_locator("chan"), now)
    assert "already a beneficiary of this office" in str(caught.value)


def test_concurrent_registrations_of_one_person_create_one_beneficiary(
    engine: Engine, make_locator: Callable[[str], bytes], now: datetime
) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def register() -> None:
        barrier.wait()
        try:
            _register(engine, make_locator("wong"), now)
            result = "created"
        except AlreadyExistsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "refused", "refused", "refused"]


def test_unknown_beneficiary_is_reported_by_id(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(UnknownBeneficiaryError, match="b-404"):
        beneficiaries.get(session, "b-404")


def test_validity_moves_forward_never_backwards(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], now: datetime
) -> None:
    added = add_beneficiary()
    assert added.valid_until is not None
    later = added.valid_until + timedelta(days=365)
    with session_scope(engine) as session:
        beneficiary = beneficiaries.get(session, added.beneficiary_id)
        assert beneficiaries.extend_validity(session, beneficiary, later, now)
        assert not beneficiaries.extend_validity(
            session, beneficiary, later - timedelta(days=1), now
        )
        assert not beneficiaries.extend_validity(session, beneficiary, later, now)
    with session_scope(engine) as session:
        assert beneficiaries.get(session, added.beneficiary_id).valid_until == later


def test_validity_is_set_for_a_beneficiary_who_had_none(
    engine: Engine, make_locator: Callable[[str], bytes], now: datetime
) -> None:
    added = _register(engine, make_locator("new"), now)
    with session_scope(engine) as session:
        beneficiary = beneficiaries.get(session, added.beneficiary_id)
        assert beneficiaries.extend_validity(session, beneficiary, now + timedelta(days=1), now)


def test_status_change_records_its_effective_date(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], now: datetime
) -> None:
    added = add_beneficiary()
    died = now - timedelta(days=3)
    with session_scope(engine) as session:
        beneficiary = beneficiaries.get(session, added.beneficiary_id)
        beneficiaries.set_status(session, beneficiary, BeneficiaryState.DECEASED, died, now)
    with session_scope(engine) as session:
        stored = beneficiaries.get(session, added.beneficiary_id)
        assert stored.status is BeneficiaryState.DECEASED
        assert stored.status_effective_at == died


def test_flag_duplicate_marks_only_a_beneficiary_of_this_office(
    engine: Engine,
    add_beneficiary: Callable[..., Beneficiary],
    make_locator: Callable[[str], bytes],
) -> None:
    added = add_beneficiary("li")
    with session_scope(engine) as session:
        assert beneficiaries.flag_duplicate(session, make_locator("li"))
        assert not beneficiaries.flag_duplicate(session, make_locator("stranger"))
    with session_scope(engine) as session:
        assert beneficiaries.get(session, added.beneficiary_id).possible_duplicate
