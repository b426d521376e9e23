"""The server's daily cycle runs once a day, at its hour, and tries again after a failure."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import cast

import pytest

from federation_node.cycle_scheduler import SCHEDULER_ACTOR, CycleScheduler
from federation_node.offices.context import Actor
from federation_node.offices.daily_cycle import CycleOutcome, DailyCycle


class RecordingLifecycle:
    def __init__(self) -> None:
        self.days: list[date] = []
        self.fail = False

    def claimed(self, day: date) -> bool:
        return day in self.days

    def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
        assert actor == SCHEDULER_ACTOR
        assert day is not None
        if self.fail:
            raise RuntimeError("database unavailable")
        self.days.append(day)
        return CycleOutcome(ran=True)


def scheduler(lifecycle: RecordingLifecycle, clock: list[datetime]) -> CycleScheduler:
    return CycleScheduler(cast(DailyCycle, lifecycle), 2, clock=lambda: clock[0])


def test_the_cycle_runs_once_a_day_from_its_hour() -> None:
    lifecycle = RecordingLifecycle()
    clock = [datetime(2026, 3, 1, 1, 59, tzinfo=UTC)]
    daily = scheduler(lifecycle, clock)
    assert daily.run_if_due() is None
    clock[0] = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert daily.run_if_due() == CycleOutcome(ran=True)
    clock[0] = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert daily.run_if_due() is None
    clock[0] = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    daily.run_if_due()
    assert lifecycle.days == [date(2026, 3, 1), date(2026, 3, 2)]


def test_a_failed_run_is_tried_again() -> None:
    lifecycle = RecordingLifecycle()
    clock = [datetime(2026, 3, 1, 3, 0, tzinfo=UTC)]
    daily = scheduler(lifecycle, clock)
    lifecycle.fail = True
    with pytest.raises(RuntimeError):
        daily.run_if_due()
    lifecycle.fail = False
    daily.run_if_due()
    assert lifecycle.days == [date(2026, 3, 1)]


def test_the_scheduler_thread_retries_a_failed_run_within_seconds_not_at_the_next_check() -> None:
    class FailingTwice(RecordingLifecycle):
        def __init__(self) -> None:
            super().__init__()
            self.attempts = 0
            self.done = threading.Event()

        def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
            self.attempts += 1
            if self.attempts <= 2:
                raise RuntimeError("database is locked")
            self.done.set()
            return super().run_cycle(actor, day)

    lifecycle = FailingTwice()
    clock = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    # An hour between checks: only the retries after a failure can run the day in this test.
    daily = CycleScheduler(
        cast(DailyCycle, lifecycle), 2, clock=lambda: clock, check_interval_s=3600
    )
    daily.start()
    try:
        # Retries after 2 s and 4 s.
        assert lifecycle.done.wait(timeout=30)
    finally:
        daily.stop()
    assert lifecycle.attempts == 3
    assert lifecycle.days == [date(2026, 3, 1)]


def test_an_attempt_stuck_before_it_claims_its_day_is_replaced_by_a_fresh_one() -> None:
    class StuckOnce(RecordingLifecycle):
        def __init__(self) -> None:
            super().__init__()
            self.attempts = 0
            self.release = threading.Event()
            self.done = threading.Event()

        def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
            self.attempts += 1
            if self.attempts == 1:
                # A connection that never answers, until the test ends.
                self.release.wait(timeout=30)
                return CycleOutcome(ran=False)
            outcome = super().run_cycle(actor, day)
            self.done.set()
            return outcome

    lifecycle = StuckOnce()
    clock = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    daily = CycleScheduler(
        cast(DailyCycle, lifecycle),
        2,
        clock=lambda: clock,
        check_interval_s=3600,
        stuck_s=0.5,
    )
    daily.start()
    try:
        assert lifecycle.done.wait(timeout=20)
    finally:
        lifecycle.release.set()
        daily.stop()
    assert lifecycle.attempts == 2
    assert lifecycle.days == [date(2026, 3, 1)]
