"""Run the daily cycle once a day, at the configured hour (UTC), in the node's server process.

The cycle is idempotent per day and claims its day in the database, so every replica can run a
scheduler: one of them runs the day, the others find it done. A failed run is retried at the
check, a few seconds later at first and then less often, up to the check interval; the day is
only considered done once a run (here or on another replica) committed.

Each attempt runs on a thread of its own, watched: an attempt that has not claimed its day in
the database within `STUCK_S` is stuck (a connection or lock that never answers); the scheduler
logs where it stands (`cycle.attempt_stuck`, with its stack) and starts a fresh attempt, which
is safe because runs of one day take turns on its row. A long run that has claimed its day is
left to finish, however long it takes.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime

import structlog

from federation_node.metrics import CycleMetrics
from federation_node.offices.context import Actor
from federation_node.offices.daily_cycle import CycleOutcome, DailyCycle

log = structlog.get_logger("certfed.cycle")

# Who runs the scheduled cycle, in the audit trail and in the cycle_run row.
SCHEDULER_ACTOR = Actor("node", "cycle-scheduler")
CHECK_INTERVAL_S = 60.0
# The first retry of a failed run; each further failure doubles it, up to the check interval.
FIRST_RETRY_S = 2.0
# An attempt that has not claimed its day after this long is stuck, and another one starts.
STUCK_S = 20.0


class CycleScheduler:
    def __init__(
        self,
        daily_cycle: DailyCycle,
        hour_utc: int,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        check_interval_s: float = CHECK_INTERVAL_S,
        metrics: CycleMetrics | None = None,
        stuck_s: float = STUCK_S,
    ) -> None:
        self._stuck_s = stuck_s
        self._daily_cycle = daily_cycle
        self._metrics = metrics
        self._hour = hour_utc
        self._clock = clock
        self._interval = check_interval_s
        self._done: date | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cycle-scheduler", daemon=True)

    def start(self) -> None:
        if self._hour < 0:
            log.info("cycle.scheduler_off", reason="cycle_hour_utc is -1")
            return
        log.info("cycle.scheduler_started", hour_utc=self._hour)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_if_due(self) -> CycleOutcome | None:
        """Run today's cycle if its hour has come and it has not been run; else None."""
        now = self._clock()
        today = now.date()
        if self._done == today or now.hour < self._hour:
            return None
        started = time.monotonic()
        try:
            outcome = self._daily_cycle.run_cycle(SCHEDULER_ACTOR, today)
        except Exception:
            if self._metrics is not None:
                self._metrics.observe("failed", time.monotonic() - started)
            raise
        if self._metrics is not None:
            self._metrics.observe(
                "ran" if outcome.ran else "already_ran",
                time.monotonic() - started,
                len(outcome.skipped),
            )
        if not outcome.ran:
            log.info("cycle.already_ran", day=today.isoformat())
        self._done = today
        return outcome

    def _run(self) -> None:
        retry_s = FIRST_RETRY_S
        while not self._stopping.is_set():
            if self._attempt():
                retry_s = FIRST_RETRY_S
                self._stopping.wait(self._interval)
            else:
                self._stopping.wait(min(retry_s, self._interval))
                retry_s *= 2

    def _attempt(self) -> bool:
        """One watched `run_if_due`: True when it returned, False when it failed or got stuck."""
        failed: list[BaseException] = []

        def attempt() -> None:
            try:
                self.run_if_due()
            except Exception as error:
                failed.append(error)
                log.exception("cycle.scheduled_run_failed")

        worker = threading.Thread(target=attempt, name="cycle-attempt", daemon=True)
        started = time.monotonic()
        worker.start()
        while worker.is_alive() and not self._stopping.is_set():
            worker.join(timeout=self._stuck_s)
            if worker.is_alive() and not self._claimed():
                frame = sys._current_frames().get(worker.ident or 0)
                log.warning(
                    "cycle.attempt_stuck",
                    after_s=round(time.monotonic() - started, 1),
                    stack="".join(traceback.format_stack(frame)) if frame else "",
                )
                if self._metrics is not None:
                    self._metrics.observe("failed", time.monotonic() - started)
                return False
        return not failed

    def _claimed(self) -> bool:
        """Whether today is claimed; False when the database cannot say (the attempt is then
        treated as stuck, and the loop goes on rather than dying with the error)."""
        try:
            return self._daily_cycle.claimed(self._clock().date())
        except Exception:
            log.exception("cycle.claim_check_failed")
            return False
