"""Chain pending audit records in the background, in the node's server process.

Business transactions only queue their audit records (`audit.append`); this thread moves them
into the hash chain with `audit.flush`, every `interval_s` and at once when woken, so the chain
lock is taken once per batch instead of once per transaction. Every replica can run one: the
lock makes their passes take turns, and each pass chains what the others left. A failed pass is
logged and retried at the next one; its records stay pending, not lost. `stop` ends the loop and
flushes once more, so what the last calls wrote is chained before the node exits.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import Engine

from federation_node import audit

log = structlog.get_logger("certfed.audit")


class AuditSequencer(threading.Thread):
    """Chains pending audit records every `interval_s`, and at once when woken."""

    def __init__(self, engine: Engine, interval_s: float) -> None:
        super().__init__(name="audit-sequencer", daemon=True)
        self._engine = engine
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self._pass()
            self._wake.wait(self._interval_s)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=10)
        self._pass()

    def _pass(self) -> None:
        try:
            audit.flush(self._engine)
        except Exception:
            log.exception("audit.sequence_failed")
