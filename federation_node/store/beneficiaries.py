"""The people this office pays: registering them, finding them, their validity and status.

Every function works inside the caller's transaction (`db.session_scope`). The store never sees
an identity number in clear: the caller passes the subject locator, the sealed identity and the
masked number. One person (one locator) is one beneficiary: the database refuses a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from federation.errors import AlreadyExistsError, UnknownBeneficiaryError
from federation_node.ids import new_id
from federation_node.store.db import keyset_page
from federation_node.store.models import Beneficiary, BeneficiaryState, IdentityType


def add(
    session: Session,
    *,
    subject_locator: bytes,
    identity_type: IdentityType,
    masked_identity_number: str,
    sealed_identity: bytes,
    residence_region: str,
    paying_region: str,
    valid_until: datetime | None,
    now: datetime,
) -> Beneficiary:
    """Register a person; refused when the locator already names a beneficiary here."""
    existing = by_locator(session, subject_locator)
    if existing is not None:
        raise _already_registered(existing)
    beneficiary = Beneficiary(
        beneficiary_id=new_id(),
        subject_locator=subject_locator,
        identity_type=identity_type,
        masked_identity_number=masked_identity_number,
        sealed_identity=sealed_identity,
        residence_region=residence_region,
        paying_region=paying_region,
        status=BeneficiaryState.ACTIVE,
        status_effective_at=None,
        valid_until=valid_until,
        possible_duplicate=False,
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint, so that after losing a race the transaction can still look up the winner.
        with session.begin_nested():
            session.add(beneficiary)
    except IntegrityError:
        winner = by_locator(session, subject_locator)
        if winner is None:
            raise
        raise _already_registered(winner) from None
    return beneficiary


def _already_registered(existing: Beneficiary) -> AlreadyExistsError:
    return AlreadyExistsError(
        "this person is already a beneficiary of this office "
        f"(beneficiary id {existing.beneficiary_id})"
    )


def get(session: Session, beneficiary_id: str) -> Beneficiary:
    beneficiary = session.get(Beneficiary, beneficiary_id)
    if beneficiary is None:
        raise UnknownBeneficiaryError(
            f"no beneficiary {beneficiary_id} at this office; check the id or search the list"
        )
    return beneficiary


def by_locator(session: Session, locator: bytes) -> Beneficiary | None:
    return session.exec(select(Beneficiary).where(Beneficiary.subject_locator == locator)).first()


def page(session: Session, page_size: int, page_token: str) -> tuple[list[Beneficiary], str]:
    """Beneficiaries in registration order; the token is empty after the last page."""
    return keyset_page(
        session,
        select(Beneficiary),
        key=col(Beneficiary.beneficiary_id),
        key_of=lambda row: row.beneficiary_id,
        page_size=page_size,
        page_token=page_token,
    )


def extend_validity(
    session: Session, beneficiary: Beneficiary, valid_until: datetime, now: datetime
) -> bool:
    """Move the validity forward to `valid_until`; never backwards. Returns whether it moved.

    Attestations may arrive out of order (a redelivered older one after a newer one); keeping
    the later date means the order of arrival cannot shorten anyone's entitlement.
    """
    if beneficiary.valid_until is not None and valid_until <= beneficiary.valid_until:
        return False
    beneficiary.valid_until = valid_until
    beneficiary.updated_at = now
    session.add(beneficiary)
    session.flush()
    return True


def set_status(
    session: Session,
    beneficiary: Beneficiary,
    status: BeneficiaryState,
    effective_at: datetime | None,
    now: datetime,
) -> None:
    """Record that entitlement ended (death, imprisonment, missing) or resumed (active)."""
    beneficiary.status = status
    beneficiary.status_effective_at = effective_at
    beneficiary.updated_at = now
    session.add(beneficiary)
    session.flush()


def flag_duplicate(session: Session, locator: bytes, now: datetime | None = None) -> bool:
    """Mark the beneficiary with this locator as possibly paid by another office too.

    Returns whether this office pays someone with that locator (and so flagged them).
    """
    beneficiary = by_locator(session, locator)
    if beneficiary is None:
        return False
    if not beneficiary.possible_duplicate:
        beneficiary.possible_duplicate = True
        if now is not None:
            beneficiary.updated_at = now
        session.add(beneficiary)
        session.flush()
    return True


@dataclass(frozen=True)
class NewBeneficiary:
    subject_locator: bytes
    identity_type: IdentityType
    masked_identity_number: str
    sealed_identity: bytes
    residence_region: str
    paying_region: str
    valid_until: datetime | None


def add_batch(
    session: Session, batch: Sequence[NewBeneficiary], now: datetime
) -> list[Beneficiary]:
    """Register several people at once (an office's roll): one query finds those already
    registered, one flush writes the rest. All or none: a person already here refuses the
    batch, and one registered concurrently makes the commit fail on the unique locator."""
    locators = [new.subject_locator for new in batch]
    if len(set(locators)) != len(locators):
        raise AlreadyExistsError("the batch lists the same person twice")
    for start in range(0, len(locators), 500):
        existing = session.exec(
            select(Beneficiary).where(
                col(Beneficiary.subject_locator).in_(locators[start : start + 500])
            )
        ).first()
        if existing is not None:
            raise _already_registered(existing)
    added = [
        Beneficiary(
            beneficiary_id=new_id(),
            subject_locator=new.subject_locator,
            identity_type=new.identity_type,
            masked_identity_number=new.masked_identity_number,
            sealed_identity=new.sealed_identity,
            residence_region=new.residence_region,
            paying_region=new.paying_region,
            status=BeneficiaryState.ACTIVE,
            status_effective_at=None,
            valid_until=new.valid_until,
            possible_duplicate=False,
            created_at=now,
            updated_at=now,
        )
        for new in batch
    ]
    session.add_all(added)
    session.flush()
    return added
