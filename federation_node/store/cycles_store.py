"""Runs of the daily cycle, one row per day: claiming the day is what makes a run happen once.

The cycle works in batches, each its own transaction (offices/daily_cycle.py). `begin` claims
the day in a short transaction of its own and hands back the run while it is unfinished: newly
inserted, or left midway by a run that was killed. Every batch then locks the day's row
(`lock`), carries on after its `resume_after` and moves it, with the run's counts, in the
batch's transaction: a batch is committed with its place in the day or not at all, so a run
that resumes repeats no batch and skips none, and replicas running the same day take turns.
`finish` marks the day done; afterwards `begin` hands back nothing.

`claim` is the one-transaction form the row-by-row cycle uses: it inserts the day's row first
thing in the cycle's transaction. On PostgreSQL a second replica's insert of the same day waits
for the first transaction and then fails (or succeeds if the first rolled back); on SQLite
BEGIN IMMEDIATE serialises them. Either way one run wins and the others change nothing.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from federation_node.store.models import CycleRun


def claim(session: Session, day: date, actor: str, now: datetime) -> CycleRun | None:
    """The day's run, newly claimed by this transaction; None when it already ran."""
    key = day.isoformat()
    if session.get(CycleRun, key) is not None:
        return None
    run = CycleRun(
        day=key,
        actor=actor,
        started_at=now,
        became_due=0,
        requests_sent=0,
        reminders_queued=0,
        warned=0,
        suspended=0,
        resume_after=None,
        finished_at=None,
    )
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        return None
    return run


def begin(session: Session, day: date, actor: str, now: datetime) -> CycleRun | None:
    """The day's run while it is unfinished (claimed now, or left midway); None once finished."""
    run = claim(session, day, actor, now)
    if run is None:
        run = session.get(CycleRun, day.isoformat())
    if run is None or run.finished_at is not None:
        return None
    return run


def lock(session: Session, day: date) -> CycleRun:
    """The day's run, locked until the caller's transaction ends (after `begin`)."""
    run = session.get(CycleRun, day.isoformat(), with_for_update=True, populate_existing=True)
    if run is None:
        raise LookupError(f"no cycle run for {day.isoformat()}: begin it first")
    return run


def get(session: Session, day: date) -> CycleRun | None:
    return session.get(CycleRun, day.isoformat())


def latest_day(session: Session) -> date | None:
    """The latest day the cycle ran for (or is running for, in this transaction)."""
    latest: str | None = session.exec(select(func.max(CycleRun.day))).one()
    return date.fromisoformat(latest) if latest is not None else None


def latest_started_at(session: Session) -> datetime | None:
    """When the latest committed run of the cycle started (for monitoring)."""
    started: datetime | None = session.exec(select(func.max(CycleRun.started_at))).one()
    return started
