"""Bulk sync of another node's transparency log: fetch, verify, then store, one step at a time.

How a sync proceeds (docs/architecture.md, "Bulk exchange"; RFC 9162 2.1):

1. Fetch the origin's latest checkpoint and verify it: the origin's note signature and the
   registry witness's cosignature (`checkpoints.verify_checkpoint`). This is the one signature
   check of the whole sync; entries are not verified one by one.
2. If a prefix of the log was verified before (size m, root r_m), check a consistency proof from
   m to the checkpoint's size n: a log that rewrote its history is caught before any download.
3. Stream entries [m, n) and rebuild the tree from the verified compact state of size m,
   hashing each received envelope as a leaf. Every `Limits.sync_step_entries` entries (size t),
   the recomputed root r_t is checked against the cosigned root with a consistency proof from t
   to n (at t = n, it must equal the cosigned root). Only then are the step's entries stored,
   with the new verified head, in one transaction. A rewritten, missing or reordered entry makes
   the root differ: nothing of that step is stored and the sync fails.

Memory stays bounded by two steps (one being verified, one being written by the writer thread,
whose COPY into PostgreSQL overlaps the next step's download and hashing), whatever n is.
An interrupted sync resumes from the last stored head. `LogFollower` keeps doing this in the
background for the nodes in the `follow` setting, woken by a subscription to their logs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import federation_pb2, federation_pb2_grpc
from federation.directory import TrustedDirectory
from federation.errors import (
    CertfedError,
    PreconditionError,
    UnavailableError,
    from_rpc_error,
    is_transient,
)
from federation.limits import Limits
from federation_node.store import sync_store
from federation_node.store.db import session_scope
from federation_node.store.sync_store import SyncedRow, VerifiedHead
from federation_node.tlog.checkpoints import verify_checkpoint
from signing import merkle, note
from signing.errors import LogError

log = structlog.get_logger("certfed.sync")

# A stream of one step may take this long per entry on top of the call timeout before its
# deadline: generous for a slow link, still a bound (no call waits forever).
SECONDS_PER_ENTRY_BOUND = 0.001

Progress = Callable[[int, int], None]


class LogVerificationError(PreconditionError):
    """Entries or proofs from a node do not match its cosigned checkpoint: nothing was stored."""


@dataclass(frozen=True)
class SyncResult:
    origin_node_id: str
    from_size: int
    to_size: int
    seconds: float

    @property
    def entries(self) -> int:
        return self.to_size - self.from_size


def _peer_call_failed(error: grpc.RpcError, origin: str, call: str) -> CertfedError:
    if is_transient(error):
        return from_rpc_error(error, call=call, peer=f"node {origin}")
    details = (error.details() if isinstance(error, grpc.Call) else "") or "refused"
    return PreconditionError(f"node {origin} refused {call}: {details}")


@dataclass
class _Step:
    start: int
    rows: list[SyncedRow]
    head: VerifiedHead


class _StepWriter(threading.Thread):
    """Stores verified steps in order, one transaction each, while the next one downloads."""

    def __init__(self, engine: Engine, origin: str, clock: Callable[[], datetime]) -> None:
        super().__init__(name=f"sync-writer-{origin}", daemon=True)
        self._engine = engine
        self._origin = origin
        self._clock = clock
        self._steps: queue.Queue[_Step | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.stored = 0

    def put(self, step: _Step) -> None:
        if self.error is not None:
            raise self.error
        self._steps.put(step)

    def finish(self) -> None:
        self._steps.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        while (step := self._steps.get()) is not None:
            if self.error is not None:
                continue
            try:
                with session_scope(self._engine) as session:
                    sync_store.store_step(
                        session, self._origin, step.start, step.rows, step.head, self._clock()
                    )
                self.stored = step.head.tree_size
            except BaseException as error:
                self.error = error


class LogSync:
    """Syncs other nodes' logs into this node's store; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        directory: Callable[[], TrustedDirectory],
        witness: note.NoteVerifier,
        stub_for: Callable[[str], federation_pb2_grpc.FederationServiceStub],
        limits: Limits,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._witness = witness
        self._stub_for = stub_for
        self._limits = limits
        self._clock = clock

    def verified_head(self, origin: str) -> VerifiedHead | None:
        with Session(self._engine) as session:
            return sync_store.head(session, origin)

    def verify_checkpoint(self, origin: str, checkpoint_note: bytes) -> note.Checkpoint:
        return verify_checkpoint(checkpoint_note, origin, self._directory(), self._witness)

    def _consistency(
        self, stub: federation_pb2_grpc.FederationServiceStub, origin: str, first: int, second: int
    ) -> list[bytes]:
        try:
            response = stub.GetConsistencyProof(
                federation_pb2.GetConsistencyProofRequest(first_size=first, second_size=second),
                timeout=self._limits.call_timeout_s,
            )
        except grpc.RpcError as error:
            raise _peer_call_failed(error, origin, "GetConsistencyProof") from None
        return list(response.hashes)

    def _check_extends(
        self,
        stub: federation_pb2_grpc.FederationServiceStub,
        origin: str,
        known: VerifiedHead,
        checkpoint: note.Checkpoint,
    ) -> None:
        if checkpoint.tree_size < known.tree_size:
            raise LogVerificationError(
                f"node {origin} presents a cosigned log of {checkpoint.tree_size} entries, but "
                f"{known.tree_size} were verified here before: it shows a different history"
            )
        proof = (
            self._consistency(stub, origin, known.tree_size, checkpoint.tree_size)
            if 0 < known.tree_size < checkpoint.tree_size
            else []
        )
        try:
            merkle.verify_consistency(
                known.tree_size,
                checkpoint.tree_size,
                known.root_hash,
                checkpoint.root_hash,
                proof,
            )
        except LogError as error:
            raise LogVerificationError(
                f"node {origin}'s checkpoint of size {checkpoint.tree_size} does not extend the "
                f"log verified here up to {known.tree_size} ({error}): it shows a different "
                "history; nothing was stored"
            ) from error

    def sync(
        self,
        origin: str,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> SyncResult:
        """Bring the verified copy of `origin`'s log up to its latest cosigned checkpoint."""
        started = time.perf_counter()
        stub = self._stub_for(origin)
        try:
            answer = stub.GetCheckpoint(
                federation_pb2.GetCheckpointRequest(), timeout=self._limits.call_timeout_s
            )
        except grpc.RpcError as error:
            raise _peer_call_failed(error, origin, "GetCheckpoint") from None
        checkpoint_note = bytes(answer.checkpoint.note)
        checkpoint = self.verify_checkpoint(origin, checkpoint_note)
        known = self.verified_head(origin) or VerifiedHead(0, merkle.EMPTY_ROOT, (), b"")
        self._check_extends(stub, origin, known, checkpoint)
        target = checkpoint.tree_size
        if progress is not None:
            progress(known.tree_size, target)
        if target == known.tree_size:
            with session_scope(self._engine) as session:
                sync_store.record_checkpoint(
                    session,
                    origin,
                    VerifiedHead(known.tree_size, known.root_hash, known.state, checkpoint_note),
                    self._clock(),
                )
            return SyncResult(origin, known.tree_size, target, time.perf_counter() - started)
        writer = _StepWriter(self._engine, origin, self._clock)
        writer.start()
        builder = merkle.TreeBuilder.from_state(known.tree_size, known.state)
        step_size = self._limits.sync_step_entries
        try:
            while builder.size < target:
                if stop is not None and stop.is_set():
                    break
                start = builder.size
                end = min(target, start + step_size)
                rows = self._fetch_step(stub, origin, builder, start, end)
                root = builder.root()
                if end == target:
                    if root != checkpoint.root_hash:
                        raise LogVerificationError(
                            f"entries {start}..{end - 1} from node {origin} do not hash to the "
                            "root of its cosigned checkpoint: an entry was rewritten, dropped or "
                            "reordered; nothing of them was stored"
                        )
                else:
                    proof = self._consistency(stub, origin, end, target)
                    try:
                        merkle.verify_consistency(end, target, root, checkpoint.root_hash, proof)
                    except LogError as error:
                        raise LogVerificationError(
                            f"entries {start}..{end - 1} from node {origin} are not a prefix of "
                            f"its cosigned log ({error}): an entry was rewritten, dropped or "
                            "reordered; nothing of them was stored"
                        ) from error
                writer.put(
                    _Step(
                        start,
                        rows,
                        VerifiedHead(end, root, tuple(builder.state()), checkpoint_note),
                    )
                )
                if progress is not None:
                    progress(end, target)
        finally:
            writer.finish()
        return SyncResult(origin, known.tree_size, writer.stored, time.perf_counter() - started)

    def _fetch_step(
        self,
        stub: federation_pb2_grpc.FederationServiceStub,
        origin: str,
        builder: merkle.TreeBuilder,
        start: int,
        end: int,
    ) -> list[SyncedRow]:
        rows: list[SyncedRow] = []
        append_leaf = builder.append
        leaf_hash = merkle.leaf_hash
        keep = rows.append
        timeout = self._limits.call_timeout_s + (end - start) * SECONDS_PER_ENTRY_BOUND
        request = federation_pb2.GetEntriesRequest(start=start, end=end)
        try:
            for response in stub.GetEntries(request, timeout=timeout):
                for entry in response.entries:
                    index = entry.index
                    if index != builder.size:
                        raise LogVerificationError(
                            f"node {origin} sent entry {index} where {builder.size} was due"
                        )
                    envelope = entry.envelope_json
                    append_leaf(leaf_hash(envelope))
                    keep((origin, index, envelope, entry.paying_region))
        except grpc.RpcError as error:
            raise _peer_call_failed(error, origin, "GetEntries") from None
        if builder.size != end:
            raise UnavailableError(
                f"node {origin} ended the stream at entry {builder.size} of {end}; sync again "
                "to resume"
            )
        return rows

    # Following: the subscription's own entries, verified at each checkpoint it brings.

    def follow(self, origin: str, stop: threading.Event) -> None:
        """Sync `origin` now, then store what its subscription pushes, checkpoint by checkpoint.

        Pushed entries wait in memory until a cosigned checkpoint covers them; the tree rebuilt
        from the verified head plus those entries must have the checkpoint's root, which also
        proves the checkpoint extends what was verified before. Too many unverified entries
        (more than two sync steps) end the subscription; the next round syncs in steps.
        """
        self.sync(origin, stop=stop)
        known = self.verified_head(origin) or VerifiedHead(0, merkle.EMPTY_ROOT, (), b"")
        pending: list[SyncedRow] = []
        waiting: tuple[note.Checkpoint, bytes] | None = None
        stub = self._stub_for(origin)
        call = stub.Subscribe(federation_pb2.SubscribeRequest(from_tree_size=known.tree_size))
        closer = threading.Thread(target=lambda: (stop.wait(), call.cancel()), daemon=True)
        closer.start()
        try:
            for response in call:
                for entry in response.entries:
                    due = known.tree_size + len(pending)
                    if entry.index != due:
                        raise LogVerificationError(
                            f"node {origin} pushed entry {entry.index} where {due} was due"
                        )
                    pending.append((origin, due, entry.envelope_json, entry.paying_region))
                if len(pending) > 2 * self._limits.sync_step_entries:
                    raise UnavailableError(f"following {origin} fell behind; syncing in steps")
                if response.HasField("checkpoint"):
                    checkpoint_note = bytes(response.checkpoint.note)
                    waiting = (self.verify_checkpoint(origin, checkpoint_note), checkpoint_note)
                if waiting is None:
                    continue
                checkpoint, checkpoint_note = waiting
                covered = checkpoint.tree_size - known.tree_size
                if covered > len(pending):
                    continue
                waiting = None
                if covered <= 0:
                    continue
                known = self._store_pushed(
                    origin, known, pending[:covered], checkpoint, checkpoint_note
                )
                del pending[:covered]
        except grpc.RpcError as error:
            if not stop.is_set():
                raise _peer_call_failed(error, origin, "Subscribe") from None
        finally:
            call.cancel()

    def _store_pushed(
        self,
        origin: str,
        known: VerifiedHead,
        rows: list[SyncedRow],
        checkpoint: note.Checkpoint,
        checkpoint_note: bytes,
    ) -> VerifiedHead:
        builder = merkle.TreeBuilder.from_state(known.tree_size, known.state)
        for row in rows:
            builder.append(merkle.leaf_hash(row[2]))
        root = builder.root()
        if root != checkpoint.root_hash:
            raise LogVerificationError(
                f"entries {known.tree_size}..{builder.size - 1} pushed by node {origin} do not "
                "hash to the root of its cosigned checkpoint: an entry was rewritten, dropped or "
                "reordered, or the log shows a different history; nothing of them was stored"
            )
        verified = VerifiedHead(builder.size, root, tuple(builder.state()), checkpoint_note)
        with session_scope(self._engine) as session:
            sync_store.store_step(session, origin, known.tree_size, rows, verified, self._clock())
        log.info("follow.stored", origin=origin, tree_size=builder.size, entries=len(rows))
        return verified


class LogFollower(threading.Thread):
    """Keeps the verified copies of the followed nodes' logs current, retrying with backoff."""

    def __init__(self, syncer: LogSync, origin: str, max_backoff_s: float = 30.0) -> None:
        super().__init__(name=f"follow-{origin}", daemon=True)
        self._syncer = syncer
        self._origin = origin
        self._max_backoff_s = max_backoff_s
        self._stopping = threading.Event()

    def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._syncer.follow(self._origin, self._stopping)
                backoff = 0.5
            except CertfedError as error:
                log.warning("follow.failed", origin=self._origin, error=str(error))
            except Exception:
                log.exception("follow.crashed", origin=self._origin)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)
