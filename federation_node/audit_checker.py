"""Verify the audit chain in the background, in the node's server process.

Every `CHECK_EVERY_S` (or the full-pass interval, if shorter) a pass verifies the records
chained since the last check, so the audit page rarely has any left to verify; and when no full
pass has ended within `audit_full_check_interval_s` (on any replica: the time is read from the
database), it re-reads the whole chain from its first record (store/audit_check.py). A node
started on a database whose chain was never checked makes that full pass at once. A failed pass
is logged and tried again at the next.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlmodel import Session

from federation.database import reader
from federation_node.periodic import PeriodicWorker
from federation_node.store import audit_check

log = structlog.get_logger("certfed.audit")

CHECK_EVERY_S = 60.0


class AuditChecker(PeriodicWorker):
    """Verifies new audit records every minute and the whole chain every `full_interval_s`."""

    def __init__(
        self, engine: Engine, full_interval_s: float, clock: Callable[[], datetime]
    ) -> None:
        super().__init__("audit-checker", min(CHECK_EVERY_S, full_interval_s))
        self._engine = engine
        self._full_interval = timedelta(seconds=full_interval_s)
        self._clock = clock

    def run_pass(self) -> None:
        try:
            self._check()
        except Exception:
            log.exception("audit.check_failed")

    def _check(self) -> None:
        with Session(reader(self._engine)) as session:
            due = audit_check.full_pass_due(session, self._clock(), self._full_interval)
        if due:
            started = self._clock()
            check = audit_check.check_all(self._engine, started)
            log.info(
                "audit.full_check",
                records=check.full_pass_through,
                seconds=round((self._clock() - started).total_seconds(), 3),
                intact=check.intact,
            )
            return
        check = audit_check.check_new(self._engine, self._clock())
        while check.unverified and not self._stopping.is_set():
            check = audit_check.check_new(self._engine, self._clock())
