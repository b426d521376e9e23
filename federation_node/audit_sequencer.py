"""Chain pending audit records in the background, in the node's server process.

Business transactions only queue their audit records (`audit.append`); this thread moves them
into the hash chain with `audit.flush`, every `interval_s` and at once when woken, so the chain
lock is taken once per batch instead of once per transaction. Every replica can run one: the
lock makes their passes take turns, and each pass chains what the others left. A failed pass is
logged and retried at the next one; its records stay pending, not lost. `stop` ends the loop and
flushes once more, so what the last calls wrote is chained before the node exits.
"""

from __future__ import annotations

import structlog
from sqlalchemy import Engine

from federation_node.periodic import PeriodicWorker
from federation_node.store import audit

log = structlog.get_logger("certfed.audit")


class AuditSequencer(PeriodicWorker):
    """Chains pending audit records every `interval_s`, and at once when woken."""

    def __init__(self, engine: Engine, interval_s: float) -> None:
        super().__init__("audit-sequencer", interval_s)
        self._engine = engine

    def stop(self) -> None:
        super().stop()
        self.run_pass()

    def run_pass(self) -> None:
        try:
            audit.flush(self._engine)
        except Exception:
            log.exception("audit.sequence_failed")
