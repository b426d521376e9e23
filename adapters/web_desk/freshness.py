"""Whether the node works from a stale or expired federation directory, as the banner on every
page says it. The answer is the node's (GetDirectoryStatus); the desk keeps it a few seconds so
a click costs no extra call, and since it is the node's, not the operator's, one answer serves
every session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import grpc

from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient
from federation.timestamps import optional_datetime

# How long one answer is shown before the node is asked again.
KEEP_S = 5.0


@dataclass(frozen=True)
class DirectoryFreshness:
    stale: bool
    expired: bool
    # The last time the registry answered the node; None when it never did since it started.
    last_refresh_ok: datetime | None

    @property
    def worrying(self) -> bool:
        return self.stale or self.expired


UNKNOWN = DirectoryFreshness(stale=False, expired=False, last_refresh_ok=None)


class FreshnessWatch:
    """The node's latest answer about its directory, asked again after `keep_s`."""

    def __init__(self, keep_s: float = KEEP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep_s = keep_s
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: DirectoryFreshness | None = None
        self._asked_at = 0.0

    def cached(self) -> DirectoryFreshness | None:
        """The answer still in date, or None when the node must be asked."""
        with self._lock:
            if self._answer is not None and self._clock() - self._asked_at < self._keep_s:
                return self._answer
            return None

    def ask(self, desk: DeskClient) -> DirectoryFreshness:
        """Ask the node with the operator's session. A failed call shows no banner (the page's
        own call says what is wrong) and is not asked again before `keep_s`."""
        try:
            status = desk.stub.GetDirectoryStatus(desk_pb2.GetDirectoryStatusRequest())
        except grpc.RpcError:
            answer = UNKNOWN
        else:
            answer = DirectoryFreshness(
                stale=status.stale,
                expired=status.expired,
                last_refresh_ok=optional_datetime(status, "last_refresh_ok"),
            )
        with self._lock:
            self._answer = answer
            self._asked_at = self._clock()
        return answer
