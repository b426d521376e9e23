"""Running totals of rows the node has written, kept beside the rows: for the metrics scrape,
attestations issued by certification method and feed rows recorded by outcome; for the desk's
report, the people on the roll.

Counting the rows themselves at each scrape read every attestation and every signal the node
held, a cost that grows with every year kept (about 90 ms at 600,000 attestations, on every
scrape of every replica), and the totals went down when retention deleted old rows, which
Prometheus reads as a counter reset. A writer adds what it inserted with `add`; the additions
are written as its transaction commits, as its last statements (after the ORM's flush), one
row per counter and label in a fixed order. Two transactions adding to one total therefore
wait for each other only between that update and their commit, never in a cycle with locks
taken earlier; a transaction rolled back adds nothing.

The roll's total is a count the report shows, so it must not drift: a replica of the release
before, still registering people during an upgrade, does not add to it. `recount` sets it to the
rows there are, taking the total's row lock before it counts, so a registration committing
meanwhile adds to the recounted total rather than being counted twice or lost; the daily cycle
recounts once a day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar

from federation_node.store.models import Tally

ATTESTATIONS_ISSUED = "attestations_issued"
FEED_ROWS = "feed_rows"
# People registered on the roll (label PEOPLE); erasing a person keeps the row.
ROLL = "roll"
PEOPLE = "people"

T = TypeVar("T")

# Where a session keeps its additions until it commits.
_PENDING = "certfed.tally.pending"

_ADD = text(
    "INSERT INTO tally (counter, label, total) VALUES (:counter, :label, :amount) "
    "ON CONFLICT (counter, label) DO UPDATE SET total = tally.total + excluded.total"
)


def add(session: Session, counter: str, amounts: Mapping[str, int]) -> None:
    """Add `amounts` (by label) to `counter` when the session's transaction commits."""
    pending: Counter[tuple[str, str]] = session.info.setdefault(_PENDING, Counter())
    for label, amount in amounts.items():
        if amount:
            pending[(counter, label)] += amount


def counted(
    session: Session, counter: str, rows: Iterable[T], label: Callable[[T], str]
) -> Iterator[T]:
    """`rows` as they are, each added to `counter` under its label once all have passed (the
    bulk writers stream their rows into the database)."""
    amounts: Counter[str] = Counter()
    for row in rows:
        amounts[label(row)] += 1
        yield row
    add(session, counter, amounts)


def totals(session: Session, counter: str) -> dict[str, int]:
    """The totals of `counter`, by label."""
    rows = session.exec(select(Tally.label, Tally.total).where(Tally.counter == counter))
    return {label: int(total) for label, total in rows}


def roll_size(session: Session) -> int:
    """The people on the roll, as the roll's running total says."""
    return int(totals(session, ROLL).get(PEOPLE, 0))


def recount(session: Session, counter: str, label: str, rows: SelectOfScalar[int]) -> int:
    """Set a total to `rows` (a count), in the caller's transaction; returns the count.

    The total's row is locked first (on SQLite the transaction holds the write lock already):
    a writer that commits after the count adds to the new total at its commit, after this
    transaction; one that committed before is in the count.
    """
    # Adding nothing creates the row if need be and, like any update, locks it.
    session.execute(_ADD, {"counter": counter, "label": label, "amount": 0})
    total = int(session.exec(rows).one())
    session.execute(
        text("UPDATE tally SET total = :total WHERE counter = :counter AND label = :label"),
        {"total": total, "counter": counter, "label": label},
    )
    return total


@event.listens_for(OrmSession, "before_commit")
def _write(session: OrmSession) -> None:
    pending: Counter[tuple[str, str]] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    # Whatever the ORM still holds goes first, so nothing after these updates takes a lock.
    session.flush()
    connection = session.connection()
    for (counter, label), amount in sorted(pending.items()):
        connection.execute(_ADD, {"counter": counter, "label": label, "amount": amount})


@event.listens_for(OrmSession, "after_rollback")
def _forget(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)
