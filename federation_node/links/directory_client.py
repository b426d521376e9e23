"""The node's view of the federation: the signed directory, verified, cached and kept fresh.

The node trusts only directories signed by the root key it was configured with. It keeps the last
good directory on disk, so it starts and keeps working while the registry is unreachable, until
that directory's expires_at; it never accepts an older version than the one it holds (rollback)
and says so loudly when it is working from a copy it could not refresh.

The root key it trusts is the configured one, or the newest one reached from it by following the
registry's signed root rotations (`federation.root_chain`); the statements it followed are kept in
`root_chain_path`, so a restarted node trusts the same root without any reconfiguration.
Keys that ended long ago are not in the live directory: when an old attestation names one,
`load_key_history` fetches the registry's signed key history, verifies it with the same root and
the directory's federation id, and the directory in use answers with those keys too.
Whoever needs to act on a new directory (key and certificate roll-over, revocation review,
health status) registers a listener; listeners run after the new directory is in use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from certfed.v1 import directory_pb2
from federation.directory import TrustedDirectory, verify_directory, verify_key_history
from federation.errors import (
    CertfedError,
    DirectoryExpiredError,
    DirectoryRollbackError,
    DirectoryVerificationError,
    PreconditionError,
)
from federation.registry_client import DirectoryUpdate
from federation.root_chain import RootStep, TrustedRoot, follow_root_chain
from signing import dsse
from signing.errors import SigningError
from signing.keys import VerifyKey

log = structlog.get_logger("certfed.directory")

# The file beside the cache that remembers the highest directory version ever accepted.
HIGHEST_VERSION_SUFFIX = ".highest-version"

# (known directory version, known root key id) -> what the registry answered.
Fetch = Callable[[int, str], DirectoryUpdate]
Listener = Callable[[TrustedDirectory], object]
# node id (empty: every node) -> the registry's signed KeyHistory.
FetchKeyHistory = Callable[[str], dsse.Envelope]


@dataclass(frozen=True)
class DirectoryFreshness:
    """What an operator (and the health status) needs to know about the directory in use."""

    version: int
    issued_at: datetime | None
    expires_at: datetime | None
    last_refresh_ok: datetime | None
    last_attempt: datetime | None
    # The last refresh failed or was refused: the node works from the copy it has.
    stale: bool
    # Past expires_at (or no directory at all): federation calls are refused.
    expired: bool
    last_error: str
    root_key_id: str
    root_version: int


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
        root_chain_path: Path | None = None,
        highest_version_path: Path | None = None,
        fetch_key_history: FetchKeyHistory | None = None,
    ) -> None:
        self._fetch = fetch
        self._fetch_key_history = fetch_key_history
        self._key_history: dict[str, tuple[directory_pb2.NodeKey, ...]] = {}
        self._last_history_attempt: datetime | None = None
        self._root_chain_path = root_chain_path
        self._root = self._load_root_chain(TrustedRoot(root_key))
        self._cache_path = cache_path
        self._listeners: list[Listener] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._trusted: TrustedDirectory | None = None
        self._last_refresh_ok: datetime | None = None
        self._last_refresh_error = ""
        self._last_attempt: datetime | None = None
        self._min_refresh_gap_s = min_refresh_gap_s
        # The highest version ever accepted, in a file of its own: losing or replacing the cache
        # must not let an older (rolled back) directory in.
        self._highest_path = highest_version_path or cache_path.with_name(
            cache_path.name + HIGHEST_VERSION_SUFFIX
        )
        self._highest = self._load_highest()
        self._load_cache()

    def _load_root_chain(self, configured: TrustedRoot) -> TrustedRoot:
        """The configured root, advanced along the root statements this node followed before."""
        path = self._root_chain_path
        if path is None or not path.exists():
            return configured
        try:
            envelopes = [
                dsse.Envelope.from_json(line.encode("utf-8"))
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            root, _ = follow_root_chain(configured, envelopes)
        except (SigningError, CertfedError) as error:
            log.error("directory.root_chain_refused", error=str(error), path=str(path))
            return configured
        if root.key_id != configured.key_id:
            log.info("directory.root_chain_loaded", root_key_id=root.key_id, version=root.version)
        return root

    def _save_root_chain(self, steps: list[RootStep]) -> None:
        path = self._root_chain_path
        if path is None or not steps:
            return
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = [step.envelope.to_json().decode("utf-8") for step in steps]
        temporary = path.with_suffix(".tmp")
        temporary.write_text(existing + "".join(f"{line}\n" for line in lines), encoding="utf-8")
        os.replace(temporary, path)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every directory accepted from now on."""
        self._listeners.append(listener)

    @property
    def root(self) -> TrustedRoot:
        return self._root

    def _load_highest(self) -> int:
        try:
            text = self._highest_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            # Refusing to start is the safe answer: guessing 0 would reopen the rollback.
            raise DirectoryRollbackError(
                f"{self._highest_path} does not hold a directory version; restore it from a "
                "backup or write the highest version this node has seen"
            )
        return int(text)

    def _load_cache(self) -> None:
        try:
            data = self._cache_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            envelope = dsse.Envelope.from_json(data)
            trusted = verify_directory(
                envelope, self._root.key, now=self._clock(), allow_expired=True
            )
        except (SigningError, CertfedError) as error:
            log.warning("directory.cache_refused", error=str(error))
            return
        if trusted.version < self._highest:
            log.error(
                "directory.cache_rolled_back",
                cached_version=trusted.version,
                highest_version=self._highest,
            )
            return
        self._trusted = trusted
        log.info("directory.cache_loaded", version=trusted.version)

    def _save_cache(self, envelope: dsse.Envelope, version: int) -> None:
        _replace_durably(self._cache_path, envelope.to_json())
        if version > self._highest:
            _replace_durably(self._highest_path, f"{version}\n".encode("ascii"))
            self._highest = version

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
                update = self._fetch(self.version, self._root.key_id)
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
            try:
                # TUF 5.3: follow the root rotations first, then verify with the newest root.
                known = self._trusted
                root, steps = follow_root_chain(
                    self._root,
                    update.root_statements,
                    known.directory.federation_id if known is not None else "",
                )
                candidate = (
                    verify_directory(update.envelope, root.key, now=self._clock(), trusted=known)
                    if update.envelope is not None
                    else None
                )
                _check_same_federation(steps, candidate)
                if candidate is not None and candidate.version < self._highest:
                    raise DirectoryRollbackError(
                        f"directory version {candidate.version} is older than version "
                        f"{self._highest}, which this node accepted before; refusing a rollback"
                    )
            except CertfedError as error:
                self._last_refresh_error = str(error)
                log.error(
                    "directory.refused",
                    error=str(error),
                    kept_version=self.version,
                    kept_root_key_id=self._root.key_id,
                )
                raise
            if steps:
                self._save_root_chain(steps)
                self._root = root
                log.warning(
                    "directory.root_rotated", root_key_id=root.key_id, root_version=root.version
                )
            if candidate is None or update.envelope is None:
                return False
            self._save_cache(update.envelope, candidate.version)
            candidate = candidate.with_history(self._key_history)
            self._trusted = candidate
            log.info("directory.updated", version=candidate.version)
        self._notify(candidate)
        return True

    def _notify(self, trusted: TrustedDirectory) -> None:
        for listener in list(self._listeners):
            try:
                listener(trusted)
            except Exception as error:
                # One listener failing must neither stop the others nor the refresh loop.
                log.error(
                    "directory.listener_failed",
                    listener=getattr(listener, "__qualname__", repr(listener)),
                    error_type=type(error).__name__,
                    exc_info=error,
                )

    def load_key_history(self, node_id: str = "") -> bool:
        """Fetch and verify the past keys of `node_id` (empty: every node) so that attestations
        signed with keys the live directory no longer lists verify; True if it was loaded."""
        trusted = self._trusted
        fetch = self._fetch_key_history
        now = self._clock()
        last = self._last_history_attempt
        if trusted is None or fetch is None:
            return False
        if last and (now - last).total_seconds() < self._min_refresh_gap_s:
            return False
        self._last_history_attempt = now
        try:
            history = verify_key_history(
                fetch(node_id), self._root.key, trusted.directory.federation_id
            )
        except (SigningError, CertfedError) as error:
            log.warning("directory.key_history_refused", error=str(error), node_id=node_id)
            return False
        with self._lock:
            self._key_history = {**self._key_history, **history}
            current = self._trusted
            if current is not None:
                self._trusted = current.with_history(self._key_history)
        log.info("directory.key_history_loaded", nodes=len(history))
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

    def freshness(self) -> DirectoryFreshness:
        trusted = self._trusted
        return DirectoryFreshness(
            version=self.version,
            issued_at=trusted.issued_at if trusted else None,
            expires_at=trusted.expires_at if trusted else None,
            last_refresh_ok=self._last_refresh_ok,
            last_attempt=self._last_attempt,
            stale=bool(self._last_refresh_error) or self._last_refresh_ok is None,
            expired=trusted is None or trusted.is_expired(self._clock()),
            last_error=self._last_refresh_error,
            root_key_id=self._root.key_id,
            root_version=self._root.version,
        )


class DirectoryRefresher(threading.Thread):
    """Refreshes the directory every `interval_s` until stopped, then runs `also` (other periodic
    registry questions, such as possible duplicate entitlements)."""

    def __init__(
        self,
        client: DirectoryClient,
        interval_s: float,
        also: Callable[[], object] = lambda: None,
        after_each: Callable[[], object] = lambda: None,
    ) -> None:
        super().__init__(name="directory-refresher", daemon=True)
        self._client = client
        self._interval_s = interval_s
        self._also = also
        # Runs after every attempt, refused or failed ones included (health, renewal checks).
        self._after_each = after_each
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            try:
                self._client.refresh()
                self._also()
            except CertfedError as error:
                log.warning("registry.poll_failed", error=str(error))
            finally:
                self._run_after_each()

    def _run_after_each(self) -> None:
        try:
            self._after_each()
        except Exception as error:
            log.error(
                "directory.after_refresh_failed",
                error_type=type(error).__name__,
                exc_info=error,
            )

    def stop(self) -> None:
        self._stop_event.set()


def _check_same_federation(steps: list[RootStep], candidate: TrustedDirectory | None) -> None:
    """The root rotations a node follows must be of the federation of the directory they sign."""
    if candidate is None:
        return
    for step in steps:
        if step.federation_id != candidate.directory.federation_id:
            raise DirectoryVerificationError(
                f"a root statement of federation {step.federation_id!r} came with a directory "
                f"of federation {candidate.directory.federation_id!r}; refusing both"
            )


def _replace_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, and to disk before returning."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
