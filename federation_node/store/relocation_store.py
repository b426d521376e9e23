"""Storage of a locator move (`certfed node relocate`): the people whose locators are re-derived,
and every row of this office that names a person by the locator it moves.

Promises: the only code that rewrites a locator in place. `move` changes the beneficiary's
locator and its sealed identity (bound to the locator) together, and the office's own
assistance requests and certifications that named the old locator, in the caller's
transaction. Received attestations are never touched: they are kept as signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from federation_node.store.models import AssistanceRequest, Beneficiary, Certification


@dataclass(frozen=True)
class Person:
    beneficiary_id: str
    subject_locator: bytes
    # Empty once the person was erased (store/retention_store.py).
    sealed_identity: bytes


def people(session: Session, after_id: str, limit: int) -> list[Person]:
    """Beneficiaries after `after_id` in id order (registration order), `limit` at most."""
    rows = session.exec(
        select(Beneficiary.beneficiary_id, Beneficiary.subject_locator, Beneficiary.sealed_identity)
        .where(col(Beneficiary.beneficiary_id) > after_id)
        .order_by(col(Beneficiary.beneficiary_id))
        .limit(limit)
    ).all()
    return [Person(bid, bytes(locator), bytes(sealed)) for bid, locator, sealed in rows]


def move(
    session: Session, person: Person, new_locator: bytes, new_sealed: bytes, now: datetime
) -> None:
    old = person.subject_locator
    session.execute(
        update(Beneficiary)
        .where(col(Beneficiary.beneficiary_id) == person.beneficiary_id)
        .values(subject_locator=new_locator, sealed_identity=new_sealed, updated_at=now)
    )
    session.execute(
        update(AssistanceRequest)
        .where(col(AssistanceRequest.subject_locator) == old)
        .values(subject_locator=new_locator)
    )
    session.execute(
        update(Certification)
        .where(col(Certification.subject_locator) == old)
        .values(subject_locator=new_locator)
    )
