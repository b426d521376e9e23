"""How far the audit chain has been verified, so looking at it costs what was added since.

Verifying the whole hash chain costs about 15 µs a record: 1.5 s at 100,000 records, 45 s at
three million, too much for each view of the audit page or each page of its export.
One row (`audit_check`) keeps where the last check ended and the hash that record had then:

- `check_new`, on each view, first looks at that record again (still there, still the same
  hash: nothing before it was rewritten without the rewrite showing at the next full pass, and
  the chain was not cut back), then verifies the records added since, up to a bound, starting
  from the kept hash, and moves the mark to the last record it read;
- `check_all`, in the background every `audit_full_check_interval_s`
  (federation_node.audit_checker) and in `certfed audit verify`, re-reads every record from the
  first, so an edit to a record verified long ago shows within that interval.

What a check finds is added to the row's problems, oldest first, each sentence once (and logged
as `audit.chain_problem` when first found), and stays there: a later pass over a chain
rewritten consistently would find nothing wrong, and the page must not turn green again on its
own. The row keeps the first `KEPT_PROBLEMS` sentences and
says when more were dropped (`certfed audit verify` prints them all).

Checks on one node serialise on the row's lock (`SELECT ... FOR UPDATE`; on SQLite every
transaction holds the write lock). A full pass reads the chain before taking the lock, so it
never holds up the views while it reads, nor, on SQLite, any writer (its read is a deferred,
read-only transaction on the write-ahead log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlmodel import Session

from federation.database import reader
from federation_node.store import audit
from federation_node.store.db import session_scope
from federation_node.store.models import AuditCheck, AuditRecord

log = structlog.get_logger("certfed.audit")

CHAIN = "chain"
# Problem sentences the row keeps; a chain with more was rewritten wholesale.
KEPT_PROBLEMS = 100
# Records a view verifies at most (about 0.3 s); the background checker does the rest.
VIEW_LIMIT = 20_000


@dataclass(frozen=True)
class ChainCheck:
    """The chain as far as it has been checked: records 1 to `through_seq` verified, of
    `newest_seq`; what the checks found; when the last full pass ended and how far it went."""

    through_seq: int
    newest_seq: int
    problems: tuple[str, ...]
    problems_dropped: bool
    checked_at: datetime | None
    full_pass_at: datetime | None
    full_pass_through: int

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def unverified(self) -> int:
        """Records newer than the last check (the background checker verifies them)."""
        return max(self.newest_seq - self.through_seq, 0)


def current(session: Session) -> ChainCheck:
    """The row as it stands, without verifying anything."""
    return _state(_row(session), audit.newest_seq(session))


def full_pass_due(session: Session, now: datetime, interval: timedelta) -> bool:
    """No full pass has ended within `interval` (or ever)."""
    last = _row(session).full_pass_at
    return last is None or now - last >= interval


def check_new(engine: Engine, now: datetime, *, limit: int | None = VIEW_LIMIT) -> ChainCheck:
    """Look at the last verified record again and verify up to `limit` records after it."""
    with session_scope(engine) as session:
        row = _row(session, lock=True)
        found: list[str] = []
        _look_again(session, row, found.append)
        end, read = audit.walk(session, _end(row), found.append, limit=limit)
        if read or found:
            _record(row, found, end, now)
        return _state(row, audit.newest_seq(session))


def check_all(
    engine: Engine, now: datetime, on_problem: Callable[[str], None] = lambda _: None
) -> ChainCheck:
    """Re-read the whole chain from its first record, telling `on_problem` every problem.

    Reads in a session of its own, without the row's lock, then records what it found: a view
    meanwhile goes on verifying the newest records, and the mark ends at the further of the two.
    """
    found: list[str] = []

    def keep(problem: str) -> None:
        found.append(problem)
        on_problem(problem)

    with Session(reader(engine)) as session:
        before = _row(session)
        _look_again(session, before, keep)
        end, _ = audit.walk(session, audit.START, keep)
    with session_scope(engine) as session:
        row = _row(session, lock=True)
        _record(row, found, end if end.seq >= row.through_seq else _end(row), now)
        row.full_pass_at = now
        row.full_pass_through = end.seq
        return _state(row, audit.newest_seq(session))


def _row(session: Session, *, lock: bool = False) -> AuditCheck:
    row = session.get(AuditCheck, CHAIN, with_for_update=lock)
    if row is None:
        raise LookupError("the audit_check row is missing: the node's database is not migrated")
    return row


def _end(row: AuditCheck) -> audit.ChainEnd:
    return audit.ChainEnd(row.through_seq, row.through_hash)


def _look_again(session: Session, row: AuditCheck, on_problem: Callable[[str], None]) -> None:
    """The record the last check ended at must still be there with the hash it had then."""
    if row.through_seq == 0:
        return
    seen = _when(row.checked_at)
    record = session.get(AuditRecord, row.through_seq)
    if record is None:
        on_problem(f"record {row.through_seq}, verified {seen}, is gone (the chain was cut back?)")
    elif record.record_hash != row.through_hash:
        on_problem(
            f"record {row.through_seq} is not the one verified {seen}: the chain was rewritten "
            "from it or from a record before it"
        )


def _record(row: AuditCheck, found: list[str], end: audit.ChainEnd, now: datetime) -> None:
    problems = list(row.problems)
    known = set(problems)
    for problem in found:
        if problem in known:
            continue
        if len(problems) == KEPT_PROBLEMS:
            row.problems_dropped = True
            break
        problems.append(problem)
        known.add(problem)
        log.error("audit.chain_problem", problem=problem)
    row.problems = problems
    if end != _end(row):
        # The time names the mark in what a later look at it finds, so it moves with the mark:
        # the same problem found again reads the same and is kept once.
        row.through_seq, row.through_hash = end
        row.checked_at = now


def _state(row: AuditCheck, newest: int) -> ChainCheck:
    return ChainCheck(
        through_seq=row.through_seq,
        newest_seq=newest,
        problems=tuple(row.problems),
        problems_dropped=row.problems_dropped,
        checked_at=row.checked_at,
        full_pass_at=row.full_pass_at,
        full_pass_through=row.full_pass_through,
    )


def _when(moment: datetime | None) -> str:
    return "before" if moment is None else f"on {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
