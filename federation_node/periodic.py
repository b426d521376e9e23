"""A background thread that does one pass of work every interval, and at once when woken.

The node's checkpoint publisher and audit sequencer are such threads: `run_pass` is their work,
`wake` asks for a pass now (after a transaction that gave them some), and `stop` ends the loop,
waiting for a pass under way to finish.
"""

from __future__ import annotations

import abc
import threading


class PeriodicWorker(threading.Thread, metaclass=abc.ABCMeta):
    def __init__(self, name: str, interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._wake = threading.Event()

    @abc.abstractmethod
    def run_pass(self) -> None:
        """One pass of the work; what it raises is its own to log, the loop goes on."""

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self.run_pass()
            self._wake.wait(self._interval_s)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=10)
