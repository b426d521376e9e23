"""Where each beneficiary stands in the entitlement lifecycle: the `entitlement` rows.

Every function works inside the caller's transaction. One beneficiary has one entitlement row,
created in the transaction that registers them. The rules that move a row from state to state
are in federation_node/rules/entitlement.py and federation_node/offices/lifecycle.py; this module
only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import Column, String, and_, bindparam, case, false, func, null, or_, text
from sqlalchemy import select as sql_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation.errors import UnknownBeneficiaryError
from federation_node.rules.entitlement import EntitlementState
from federation_node.store import beneficiaries, reminders_store
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import count_of, keyset_page, lock_and_refresh
from federation_node.store.models import (
    ID_LENGTH,
    MONTH_LENGTH,
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    StrEnumType,
    UtcDateTime,
)
from federation_node.store.staging import fill, staging_table

_COLUMNS = (
    "beneficiary_id",
    "monthly_amount_fen",
    "state",
    "state_since",
    "termination_pending_review",
    "pending_status",
    "pending_effective_at",
    "withheld_from_month",
    "overpayment_fen",
    "updated_at",
)


def open_many(session: Session, amounts: Sequence[tuple[str, int]], now: datetime) -> None:
    """The entitlements of newly registered beneficiaries ((id, monthly amount) pairs): active,
    nothing withheld; one set-based insert."""
    insert_rows(
        session,
        Entitlement.__table__,  # type: ignore[attr-defined]
        _COLUMNS,
        (
            (beneficiary_id, amount, EntitlementState.ACTIVE, now, False, None, None, None, 0, now)
            for beneficiary_id, amount in amounts
        ),
    )


def get(session: Session, beneficiary_id: str, *, for_update: bool = False) -> Entitlement:
    entitlement = session.get(Entitlement, beneficiary_id)
    if entitlement is None:
        raise UnknownBeneficiaryError(
            f"no beneficiary {beneficiary_id} at this office; check the id or search the list"
        )
    if for_update:
        lock_and_refresh(session, entitlement)
    return entitlement


def for_beneficiaries(session: Session, beneficiary_ids: Sequence[str]) -> dict[str, Entitlement]:
    found: dict[str, Entitlement] = {}
    for start in range(0, len(beneficiary_ids), 500):
        batch = list(beneficiary_ids[start : start + 500])
        rows = session.exec(select(Entitlement).where(col(Entitlement.beneficiary_id).in_(batch)))
        found.update((row.beneficiary_id, row) for row in rows)
    return found


def save(session: Session, entitlement: Entitlement, now: datetime) -> None:
    entitlement.updated_at = now
    session.add(entitlement)


def set_amounts(session: Session, amounts: Sequence[tuple[str, int]], now: datetime) -> None:
    """Each (beneficiary id, monthly amount in fen) applied to the person's entitlement, in one
    prepared statement run for all of them."""
    if not amounts:
        return
    table = Entitlement.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        table.update()
        .where(table.c.beneficiary_id == bindparam("person"))
        .values(monthly_amount_fen=bindparam("amount"), updated_at=now),
        [{"person": person, "amount": amount} for person, amount in amounts],
    )


@dataclass(frozen=True)
class EntitlementFilter:
    """Which entitlements a listing holds; every condition set must hold."""

    state: EntitlementState | None = None
    with_overpayment: bool = False
    possible_duplicate: bool = False

    def statement(self) -> SelectOfScalar[Entitlement]:
        statement = select(Entitlement)
        if self.state is not None:
            statement = statement.where(Entitlement.state == self.state)
        if self.with_overpayment:
            statement = statement.where(col(Entitlement.overpayment_fen) > 0)
        if self.possible_duplicate:
            statement = statement.join(
                Beneficiary, col(Beneficiary.beneficiary_id) == col(Entitlement.beneficiary_id)
            ).where(col(Beneficiary.possible_duplicate).is_(True))
        return statement


def count(session: Session, which: EntitlementFilter) -> int:
    return count_of(session, which.statement())


def page(
    session: Session, which: EntitlementFilter, page_size: int, page_token: str
) -> tuple[list[tuple[Entitlement, Beneficiary]], str]:
    """Entitlements (with their beneficiaries) in beneficiary-id order, filtered."""
    rows, token = keyset_page(
        session,
        which.statement(),
        key=col(Entitlement.beneficiary_id),
        key_of=lambda row: row.beneficiary_id,
        page_size=page_size,
        page_token=page_token,
    )
    people = beneficiaries.by_ids(session, (row.beneficiary_id for row in rows))
    return [(row, people[row.beneficiary_id]) for row in rows], token


def _in_cycle_scope(horizon: datetime) -> tuple[ColumnElement[bool], ...]:
    """Everyone the daily cycle may have to act on: not terminated, no termination awaiting
    review, and either no longer active or with validity ending by `horizon` (or never
    certified). Active people far from their end of validity are not read at all."""
    return (
        col(Entitlement.state) != EntitlementState.TERMINATED,
        col(Entitlement.termination_pending_review).is_(False),
        or_(
            col(Entitlement.state) != EntitlementState.ACTIVE,
            col(Beneficiary.valid_until).is_(None),
            col(Beneficiary.valid_until) <= horizon,
        ),
    )


def in_cycle_scope(session: Session, horizon: datetime) -> list[tuple[Entitlement, Beneficiary]]:
    """The cycle's people (`_in_cycle_scope`) with their entitlements, as ORM objects."""
    statement = (
        select(Entitlement, Beneficiary)
        .join(Beneficiary, col(Beneficiary.beneficiary_id) == col(Entitlement.beneficiary_id))
        .where(*_in_cycle_scope(horizon))
        .order_by(col(Entitlement.beneficiary_id))
    )
    return [(entitlement, person) for entitlement, person in session.exec(statement)]


class CycleRow(NamedTuple):
    """What the daily cycle reads of one person in its scope, as plain values."""

    beneficiary_id: str
    state: EntitlementState
    withheld_from_month: str | None
    valid_until: datetime | None
    created_at: datetime
    status: BeneficiaryState
    residence_region: str
    # The offset of the reminder queued already for the latest offset of the schedule the day
    # reaches for this end of validity (`CycleWork.reminder_offsets`); None when none is.
    reminded: int | None


@dataclass(frozen=True)
class CycleWork:
    """Who in the cycle's scope the day may act on, as bounds on the end of validity that the
    daily cycle works out from the rules; each a superset, the rules decide. Everyone else in
    scope would neither move nor get a reminder, so the cycle does not read them: on most
    days, most of the roll.

    Read are: people never certified, or whose end of validity lies outside `computable`
    (the rules may fail to compute their dates, and such a person is reported every day);
    active people ending by `horizon` (the scope's own bound); due people ending before
    `due_before`; people in warning ending before `warning_before`; and anyone ending before
    the last bound of `reminder_offsets` without the reminder for the latest offset reached.
    `reminder_offsets` holds (ends before, offset) pairs, latest offset first: an end of
    validity before the first bound reached the first offset, and so on."""

    horizon: datetime
    due_before: datetime
    warning_before: datetime
    reminder_offsets: tuple[tuple[datetime, int], ...]
    computable: tuple[datetime, datetime]


def cycle_batch_end(session: Session, after: str | None, size: int) -> str | None:
    """The beneficiary id that ends the roll's next `size` people after id `after` (the last
    one when fewer are left); None when nobody is left. Walks the primary key only."""
    following = select(col(Entitlement.beneficiary_id))
    if after is not None:
        following = following.where(col(Entitlement.beneficiary_id) > after)
    batch = following.order_by(col(Entitlement.beneficiary_id)).limit(size).subquery()
    end: str | None = session.execute(sql_select(func.max(batch.c.beneficiary_id))).scalar()
    return end


def _to_act_on(work: CycleWork) -> tuple[ColumnElement[Any], ColumnElement[bool]]:
    """The offset of the reminder queued for each person's latest offset reached, and whether
    the day may act on them (`CycleWork`)."""
    valid_until = col(Beneficiary.valid_until)
    state = col(Entitlement.state)
    reminded: ColumnElement[Any] = null()
    needs_reminder: ColumnElement[bool] = false()
    if work.reminder_offsets:
        # What the rules take as the end of validity of someone never certified.
        expiry = func.coalesce(valid_until, col(Beneficiary.created_at))
        offset = case(*((expiry < ends, days) for ends, days in work.reminder_offsets))
        reminded = reminders_store.queued_offset(col(Entitlement.beneficiary_id), expiry, offset)
        needs_reminder = and_(valid_until < work.reminder_offsets[-1][0], reminded.is_(None))
    earliest, latest = work.computable
    return reminded, or_(
        valid_until.is_(None),
        valid_until < earliest,
        valid_until >= latest,
        state == EntitlementState.ACTIVE,
        and_(state == EntitlementState.DUE, valid_until < work.due_before),
        and_(state == EntitlementState.WARNING, valid_until < work.warning_before),
        needs_reminder,
    )


def cycle_batch(session: Session, work: CycleWork, after: str | None, upto: str) -> list[CycleRow]:
    """The people of the cycle's scope whose ids lie after `after` up to `upto`, in id order,
    those the day may act on only (`CycleWork`).

    The range bounds both tables: the planner then reads only the batch's slice of each, where
    a bound on one side of the join (or a LIMIT) would let it scan the whole roll per batch."""
    reminded, to_act_on = _to_act_on(work)
    statement = (
        sql_select(
            col(Entitlement.beneficiary_id),
            col(Entitlement.state),
            col(Entitlement.withheld_from_month),
            col(Beneficiary.valid_until),
            col(Beneficiary.created_at),
            col(Beneficiary.status),
            col(Beneficiary.residence_region),
            reminded,
        )
        .join(Beneficiary, col(Beneficiary.beneficiary_id) == col(Entitlement.beneficiary_id))
        .where(
            *_in_cycle_scope(work.horizon),
            to_act_on,
            col(Entitlement.beneficiary_id) <= upto,
            col(Beneficiary.beneficiary_id) <= upto,
        )
        .order_by(col(Entitlement.beneficiary_id))
    )
    if after is not None:
        statement = statement.where(
            col(Entitlement.beneficiary_id) > after, col(Beneficiary.beneficiary_id) > after
        )
    # Core rows fetched at once: the ORM's loading machinery, or fetching row by row, costs
    # more than the rows' values.
    return [CycleRow(*row) for row in session.connection().execute(statement).fetchall()]


_MOVES = staging_table(
    "cycle_move",
    Column("beneficiary_id", String(ID_LENGTH)),
    Column("from_state", StrEnumType(EntitlementState)),
    Column("withheld_before", String(MONTH_LENGTH)),
    Column("to_state", StrEnumType(EntitlementState)),
    Column("state_since", UtcDateTime()),
)


class Move(NamedTuple):
    """An entitlement to move, and what the mover read of it."""

    beneficiary_id: str
    from_state: EntitlementState
    withheld_before: str | None
    to_state: EntitlementState
    state_since: datetime


def advance_many(
    session: Session, moves: Sequence[Move], withheld_month: str, now: datetime
) -> list[tuple[str, EntitlementState]]:
    """Move entitlements in one statement; a move to suspended also withholds payment from
    `withheld_month` where nothing was withheld yet. An entitlement changed since it was read
    (its state or withheld month) or whose termination now awaits review stays as it is.
    Returns (id, new state) of those moved; they stay locked until the transaction ends.

    The moves' id range bounds the update, so that the planner reads that slice of the table
    rather than all of it (the staging table has no statistics)."""
    if not moves:
        return []
    fill(
        session,
        _MOVES,
        (
            (m.beneficiary_id, m.from_state, m.withheld_before, m.to_state, m.state_since)
            for m in moves
        ),
    )
    moved = session.execute(
        text(
            "UPDATE entitlement SET state = m.to_state, state_since = m.state_since, "
            "withheld_from_month = CASE WHEN m.to_state = :suspended "
            "THEN coalesce(entitlement.withheld_from_month, :month) "
            "ELSE entitlement.withheld_from_month END, "
            "updated_at = :now FROM cycle_move AS m "
            "WHERE entitlement.beneficiary_id = m.beneficiary_id "
            "AND entitlement.state = m.from_state "
            "AND entitlement.withheld_from_month IS NOT DISTINCT FROM m.withheld_before "
            "AND entitlement.termination_pending_review = :pending "
            "AND entitlement.beneficiary_id BETWEEN :first AND :last "
            "RETURNING entitlement.beneficiary_id, entitlement.state"
        ).bindparams(
            bindparam("now", now, type_=UtcDateTime()),
            suspended=EntitlementState.SUSPENDED.value,
            month=withheld_month,
            pending=False,
            first=min(m.beneficiary_id for m in moves),
            last=max(m.beneficiary_id for m in moves),
        )
    ).all()
    return [(beneficiary_id, EntitlementState(state)) for beneficiary_id, state in moved]


def by_locators(
    session: Session, locators: Sequence[bytes]
) -> dict[bytes, tuple[Beneficiary, Entitlement]]:
    """This office's beneficiaries among `locators`, with their entitlements."""
    return _people_by(session, "subject_locator", locators)


def by_roll_keys(
    session: Session, roll_keys: Sequence[bytes]
) -> dict[bytes, tuple[Beneficiary, Entitlement]]:
    """This office's beneficiaries among `roll_keys` (rules/feed_records.roll_key), with their
    entitlements."""
    return _people_by(session, "roll_key", roll_keys)


def _people_by(
    session: Session, column: Literal["subject_locator", "roll_key"], keys: Sequence[bytes]
) -> dict[bytes, tuple[Beneficiary, Entitlement]]:
    found: dict[bytes, tuple[Beneficiary, Entitlement]] = {}
    for start in range(0, len(keys), 500):
        statement = (
            select(Beneficiary, Entitlement)
            .join(Entitlement, col(Entitlement.beneficiary_id) == col(Beneficiary.beneficiary_id))
            .where(col(getattr(Beneficiary, column)).in_(list(keys[start : start + 500])))
        )
        for person, entitlement in session.exec(statement):
            found[getattr(person, column)] = (person, entitlement)
    return found
