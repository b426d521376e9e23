"""The people this office pays: registering them, finding them, their record, validity and status.

Every function works inside the caller's transaction (`db.session_scope`). The store never sees
an identity number in clear: the caller passes the subject locator, the sealed identity and the
masked number. One person (one locator) is one beneficiary: the database refuses a second.
`add_many` is the roll's bulk path: set-based inserts (COPY on PostgreSQL), no ORM object per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, func, text, update
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from federation.errors import AlreadyExistsError, UnknownBeneficiaryError
from federation_node.ids import new_id
from federation_node.store import tally
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import count_of, is_postgres, keyset_page
from federation_node.store.models import (
    UNKEYED,
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    IdentityType,
    PensionScheme,
)

# Locators per IN (...) list: well inside SQLite's and PostgreSQL's bound-parameter limits.
_IN_BATCH = 500


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
    roll_key: bytes,
    now: datetime,
    scheme: PensionScheme | None = None,
    payment_start_month: str | None = None,
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
        scheme=scheme,
        payment_start_month=payment_start_month,
        roll_key=roll_key,
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
    tally.add(session, tally.ROLL, {tally.PEOPLE: 1})
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


def by_ids(session: Session, beneficiary_ids: Iterable[str]) -> dict[str, Beneficiary]:
    """The beneficiaries with these ids, by id (ids not found are absent)."""
    wanted = set(beneficiary_ids)
    if not wanted:
        return {}
    found = session.exec(select(Beneficiary).where(col(Beneficiary.beneficiary_id).in_(wanted)))
    return {person.beneficiary_id: person for person in found}


def by_locators(session: Session, locators: Sequence[bytes]) -> dict[bytes, Beneficiary]:
    """This office's beneficiaries among `locators`, by locator."""
    found: dict[bytes, Beneficiary] = {}
    for start in range(0, len(locators), _IN_BATCH):
        statement = select(Beneficiary).where(
            col(Beneficiary.subject_locator).in_(list(locators[start : start + _IN_BATCH]))
        )
        found.update((bytes(row.subject_locator), row) for row in session.exec(statement))
    return found


@dataclass(frozen=True)
class RollRecord:
    """What a roll import compares a row with: a registered person's record and monthly amount,
    read as plain values (no ORM object per row: a roll has a million of them)."""

    beneficiary_id: str
    subject_locator: bytes
    residence_region: str
    paying_region: str
    scheme: PensionScheme | None
    payment_start_month: str | None
    sealed_identity: bytes
    monthly_amount_fen: int


def roll_records(session: Session, locators: Sequence[bytes]) -> dict[bytes, RollRecord]:
    """The records of this office's beneficiaries among `locators`, by locator."""
    found: dict[bytes, RollRecord] = {}
    # PostgreSQL takes the whole batch as one array parameter; SQLite a bounded IN list.
    postgres = is_postgres(session)
    step = max(1, len(locators)) if postgres else _IN_BATCH
    for start in range(0, len(locators), step):
        batch = list(locators[start : start + step])
        statement = (
            sql_select(
                col(Beneficiary.beneficiary_id),
                col(Beneficiary.subject_locator),
                col(Beneficiary.residence_region),
                col(Beneficiary.paying_region),
                col(Beneficiary.scheme),
                col(Beneficiary.payment_start_month),
                col(Beneficiary.sealed_identity),
                col(Entitlement.monthly_amount_fen),
            )
            .join(Entitlement, col(Entitlement.beneficiary_id) == col(Beneficiary.beneficiary_id))
            .where(_bytes_in(col(Beneficiary.subject_locator), batch, postgres=postgres))
        )
        for row in session.execute(statement):
            record = RollRecord(*row)
            found[bytes(record.subject_locator)] = record
    return found


def locators_by_roll_key(session: Session, roll_keys: Sequence[bytes]) -> dict[bytes, bytes]:
    """The locators of this office's beneficiaries among `roll_keys`, by roll key: a roll
    imported again needs no locator computed for the people already on it."""
    found: dict[bytes, bytes] = {}
    postgres = is_postgres(session)
    step = max(1, len(roll_keys)) if postgres else _IN_BATCH
    column = col(Beneficiary.roll_key)
    for start in range(0, len(roll_keys), step):
        batch = list(roll_keys[start : start + step])
        statement = sql_select(column, col(Beneficiary.subject_locator)).where(
            _bytes_in(column, batch, postgres=postgres)
        )
        for roll_key, locator in session.execute(statement):
            found[bytes(roll_key)] = bytes(locator)
    return found


def _bytes_in(
    column: Mapped[bytes] | Mapped[bytes | None], values: list[bytes], *, postgres: bool
) -> ColumnElement[bool]:
    if postgres:
        # One text parameter, split and decoded by the server: binding thousands of bytea
        # values one by one costs more than the query.
        hexes = func.string_to_array(bindparam("values", ",".join(x.hex() for x in values)), ",")
        return column.in_(select(func.decode(func.unnest(hexes), "hex")))
    return column.in_(values)


def update_columns(
    session: Session,
    beneficiary_id: str,
    changes: dict[str, str | bytes | PensionScheme | None],
    now: datetime,
) -> None:
    """Change some of a person's columns (named as in the model) without loading the row."""
    session.execute(
        update(Beneficiary)
        .where(col(Beneficiary.beneficiary_id) == beneficiary_id)
        .values(**changes, updated_at=now)
    )


def count(session: Session) -> int:
    """How many beneficiaries the office has (the listing's total)."""
    return count_of(session, select(Beneficiary))


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


def update_record(
    session: Session,
    beneficiary: Beneficiary,
    *,
    residence_region: str | None = None,
    paying_region: str | None = None,
    sealed_identity: bytes | None = None,
    scheme: PensionScheme | None = None,
    payment_start_month: str | None = None,
    now: datetime,
) -> None:
    """Change what the office knows of a person; None leaves a field as it is."""
    if residence_region is not None:
        beneficiary.residence_region = residence_region
    if paying_region is not None:
        beneficiary.paying_region = paying_region
    if sealed_identity is not None:
        beneficiary.sealed_identity = sealed_identity
    if scheme is not None:
        beneficiary.scheme = scheme
    if payment_start_month is not None:
        beneficiary.payment_start_month = payment_start_month
    beneficiary.updated_at = now
    session.add(beneficiary)


@dataclass(frozen=True)
class NewBeneficiary:
    subject_locator: bytes
    identity_type: IdentityType
    masked_identity_number: str
    sealed_identity: bytes
    residence_region: str
    paying_region: str
    valid_until: datetime | None
    # rules/feed_records.roll_key of the person's identity.
    roll_key: bytes
    scheme: PensionScheme | None = None
    payment_start_month: str | None = None


_COLUMNS = (
    "beneficiary_id",
    "subject_locator",
    "identity_type",
    "masked_identity_number",
    "sealed_identity",
    "residence_region",
    "paying_region",
    "status",
    "status_effective_at",
    "valid_until",
    "possible_duplicate",
    "created_at",
    "updated_at",
    "scheme",
    "payment_start_month",
    "roll_key",
)


def add_many(session: Session, batch: Sequence[NewBeneficiary], now: datetime) -> list[str]:
    """Register people none of whom is registered here yet (the caller checked, in this
    transaction): one set-based insert, their new ids in order. A person registered
    concurrently makes the insert fail on the unique locator, and the transaction with it."""
    ids = [new_id() for _ in batch]
    _insert_new(session, batch, ids, now)
    tally.add(session, tally.ROLL, {tally.PEOPLE: len(ids)})
    return ids


def recount(session: Session) -> int:
    """Set the roll's running total to the people registered (the daily cycle does)."""
    rows = select(func.count()).select_from(Beneficiary)
    return tally.recount(session, tally.ROLL, tally.PEOPLE, rows)


def _insert_new(
    session: Session, batch: Sequence[NewBeneficiary], ids: list[str], now: datetime
) -> None:
    insert_rows(
        session,
        Beneficiary.__table__,  # type: ignore[attr-defined]
        _COLUMNS,
        (
            (
                beneficiary_id,
                new.subject_locator,
                new.identity_type,
                new.masked_identity_number,
                new.sealed_identity,
                new.residence_region,
                new.paying_region,
                BeneficiaryState.ACTIVE,
                None,
                new.valid_until,
                False,
                now,
                now,
                new.scheme,
                new.payment_start_month,
                new.roll_key,
            )
            for beneficiary_id, new in zip(ids, batch, strict=True)
        ),
    )


class Registered(NamedTuple):
    """A person as `add_batch` stored them: what a registration answers about them (an ORM
    object apiece would cost more than the insert)."""

    beneficiary_id: str
    subject_locator: bytes
    identity_type: IdentityType
    masked_identity_number: str
    residence_region: str
    paying_region: str
    status: BeneficiaryState
    status_effective_at: datetime | None
    valid_until: datetime | None
    possible_duplicate: bool
    scheme: PensionScheme | None
    payment_start_month: str | None


def add_batch(session: Session, batch: Sequence[NewBeneficiary], now: datetime) -> list[Registered]:
    """Register several people at once (a batch from the desk): one query finds those already
    registered, one set-based insert (`add_many`) writes the rest; the rows as stored, in order.
    All or none: a person already here refuses the batch, and one registered concurrently makes
    the insert fail on the unique locator."""
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
    ids = add_many(session, batch, now)
    return [
        Registered(
            beneficiary_id=beneficiary_id,
            subject_locator=new.subject_locator,
            identity_type=new.identity_type,
            masked_identity_number=new.masked_identity_number,
            residence_region=new.residence_region,
            paying_region=new.paying_region,
            status=BeneficiaryState.ACTIVE,
            status_effective_at=None,
            valid_until=new.valid_until,
            possible_duplicate=False,
            scheme=new.scheme,
            payment_start_month=new.payment_start_month,
        )
        for beneficiary_id, new in zip(ids, batch, strict=True)
    ]


class WithoutRollKey(NamedTuple):
    """A person whose roll key is not written yet: what computing it needs."""

    beneficiary_id: str
    identity_type: IdentityType
    subject_locator: bytes
    sealed_identity: bytes


def without_roll_key(session: Session, after: str, limit: int) -> list[WithoutRollKey]:
    """Up to `limit` people after `after` (by id) whose roll key is missing and whose identity
    is still held (an erased one has none to key)."""
    rows = session.execute(
        sql_select(
            col(Beneficiary.beneficiary_id),
            col(Beneficiary.identity_type),
            col(Beneficiary.subject_locator),
            col(Beneficiary.sealed_identity),
        )
        .where(text(UNKEYED), col(Beneficiary.beneficiary_id) > after)
        .order_by(col(Beneficiary.beneficiary_id))
        .limit(limit)
    )
    return [WithoutRollKey(*row) for row in rows]


def set_roll_keys(session: Session, keys: Sequence[tuple[str, bytes]]) -> None:
    """Write each (beneficiary id, roll key) in one statement."""
    if keys:
        # A core statement on the table: an executemany, not the ORM's bulk update.
        people = Beneficiary.__table__  # type: ignore[attr-defined]
        session.connection().execute(
            update(people)
            .where(people.c.beneficiary_id == bindparam("b_id"))
            .values(roll_key=bindparam("b_roll_key")),
            [{"b_id": person, "b_roll_key": key} for person, key in keys],
        )
