"""The node's view of the federation: the signed directory, verified, cached and kept fresh.

The node trusts only directories signed by the root key it was configured with. It keeps the last
good directory on disk, so it starts and keeps working while the registry is unreachable, until
that directory's expires_at; it never accepts an older version than the one it holds (rollback)
and says so loudly when it is working from a copy it could not refresh.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from registry.directory import TrustedDirectory, verify_directory
from registry.errors import (
    CertfedError,
    DirectoryExpiredError,
    DirectoryVerificationError,
    PreconditionError,
)
from signing import dsse
from signing.errors import SigningError
from signing.keys import VerifyKey

log = structlog.get_logger("certfed.directory")

Fetch = Callable[[int], dsse.Envelope | None]


class DirectoryClient:
    """Holds the current trusted directory; `refresh` asks the registry for a newer one."""

    def __init__(
        self,
        fetch: Fetch,
        root_key: VerifyKey,
        cache_path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_refresh_gap_s: float = 1.0,
    ) -> None:
        self._fetch = fetch
        self._root_key = root_key
        self._cache_path = cache_path
        self._clock = clock
        self._lock = threading.Lock()
        self._trusted: TrustedDirectory | None = None
        self._last_refresh_ok: datetime | None = None
        self._last_refresh_error = ""
        self._last_attempt: datetime | None = None
        self._min_refresh_gap_s = min_refresh_gap_s
        self._load_cache()

    def _load_cache(self) -> None:
        try:
            data = self._cache_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            envelope = dsse.Envelope.from_json(data)
            self._trusted = verify_directory(
                envelope, self._root_key, now=self._clock(), allow_expired=True
            )
        except (SigningError, CertfedError) as error:
            log.warning("directory.cache_refused", error=str(error))
            return
        log.info("directory.cache_loaded", version=self._trusted.version)

    def _save_cache(self, envelope: dsse.Envelope) -> None:
        temporary = self._cache_path.with_suffix(".tmp")
        temporary.write_bytes(envelope.to_json())
        os.replace(temporary, self._cache_path)

    @property
    def version(self) -> int:
        trusted = self._trusted
        return trusted.version if trusted else 0

    def current(self) -> TrustedDirectory:
        """The trusted directory; raises if there is none or it has expired."""
        trusted = self._trusted
        if trusted is None:
            raise PreconditionError(
                "this node has no federation directory yet and cannot reach the registry"
            )
        if trusted.is_expired(self._clock()):
            raise DirectoryExpiredError(
                f"the federation directory (version {trusted.version}) expired at "
                f"{trusted.expires_at.isoformat()} and the registry cannot be reached: "
                f"{self._last_refresh_error or 'no refresh succeeded'}"
            )
        return trusted

    def refresh(self) -> bool:
        """Fetch from the registry; True if a newer directory was accepted."""
        with self._lock:
            self._last_attempt = self._clock()
            try:
                envelope = self._fetch(self.version)
            except CertfedError as error:
                self._last_refresh_error = str(error)
                log.warning(
                    "directory.refresh_failed",
                    error=str(error),
                    working_from_version=self.version,
                    stale=True,
                )
                return False
            self._last_refresh_ok = self._clock()
            self._last_refresh_error = ""
            if envelope is None:
                return False
            try:
                candidate = verify_directory(
                    envelope, self._root_key, now=self._clock(), trusted=self._trusted
                )
            except CertfedError as error:
                self._last_refresh_error = str(error)
                log.error("directory.refused", error=str(error), kept_version=self.version)
                raise
            self._save_cache(envelope)
            self._trusted = candidate
            log.info("directory.updated", version=candidate.version)
            return True

    def refresh_if_due(self) -> None:
        """Refresh unless one was tried within the last moment (used on an unknown caller)."""
        last = self._last_attempt
        if last and (self._clock() - last).total_seconds() < self._min_refresh_gap_s:
            return
        try:
            self.refresh()
        except (DirectoryVerificationError, PreconditionError):
            return

    def status(self) -> dict[str, object]:
        """What an operator needs to know about freshness."""
        trusted = self._trusted
        return {
            "version": self.version,
            "expires_at": trusted.expires_at.isoformat() if trusted else None,
            "last_refresh_ok": self._last_refresh_ok.isoformat() if self._last_refresh_ok else None,
            "stale": bool(self._last_refresh_error),
            "last_error": self._last_refresh_error,
        }


class DirectoryRefresher(threading.Thread):
    """Refreshes the directory every `interval_s` until stopped, then runs `also` (other periodic
    registry questions, such as possible duplicate entitlements)."""

    def __init__(
        self,
        client: DirectoryClient,
        interval_s: float,
        also: Callable[[], object] = lambda: None,
    ) -> None:
        super().__init__(name="directory-refresher", daemon=True)
        self._client = client
        self._interval_s = interval_s
        self._also = also
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            try:
                self._client.refresh()
                self._also()
            except CertfedError as error:
                log.warning("registry.poll_failed", error=str(error))

    def stop(self) -> None:
        self._stop_event.set()
