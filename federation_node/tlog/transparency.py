"""The node's transparency log as peers and the node itself use it: serving, checkpoints, follows.

`TransparencyLog` reads the log store for the FederationService methods (checkpoint, entries,
proofs, subscriptions) and publishes checkpoints: it signs the current tree head as a C2SP
checkpoint with the node's signing key, has the registry witness cosign it with a consistency
proof from the size the witness last cosigned, and stores the cosigned note, which is then the
only checkpoint the node hands out. `CheckpointPublisher` does that on an interval and when woken.

Appends happen in the issuing transaction (Node.approve_certification); `notify_appended` is
called after that commit and wakes subscriptions at once. Entries appended by another replica
of the node reach subscriptions through a poll of the store every `Limits.subscription_poll_s`.

A log never forks. Every submission to the witness doubles as a check of what it cosigned
last: the witness answers a wrong old size with its own (c2sp.org/tlog-witness), and when that
size is beyond this log's (a database restored from an older backup), nothing is signed for it
again and appends are refused (`log_store.LogBehindWitnessError`) until the missing entries are
recovered (`tlog.recovery`). After `certfed node restore` the first publication is such a check
even when the log looks fully cosigned. Its outcome is `continuity()`, which the node reports
on its health service as `certfed.log` (`CheckpointPublisher`).

Besides the registry, the node asks every node witness its configuration names
(`ask_witnesses`, tlog/node_witness.py) to cosign each checkpoint, and appends their cosignature
lines to the one it stores: offices that require more witnesses than the registry
(tlog/witness_policy.py) count them. A node witness that does not answer delays nothing: the
checkpoint is stored with the cosignatures it has, and the missing ones are asked for again at
each pass until they are there. Checkpoints are published in short pools: an append asks for a
publication `pool_s` later (`CheckpointPublisher.soon`), so attestations waiting to be proven
are sequenced and cosigned within that pool (about a second at most), while an idle log signs
nothing new.

`copy_checkpoint` and `copy_entry_batches` serve the verified copies this node keeps of the
logs it follows, so that a node that lost entries can get them back from a follower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from grpc_health.v1 import health, health_pb2
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import federation_pb2, log_pb2
from federation.errors import CertfedError, InvalidInputError, NotFoundError, PreconditionError
from federation.limits import Limits
from federation.regions import validate_region_code
from federation.witness_protocol import (
    log_origin,
    node_witness_name,
    size_mismatch_from_message,
)
from federation_node.periodic import PeriodicWorker
from federation_node.store import log_store, sync_store
from federation_node.store.db import session_scope
from federation_node.store.log_store import EntryRow, LogBehindWitnessError, WitnessState
from federation_node.tlog.checkpoints import node_signer
from signing import note
from signing.keys import SigningKey

log = structlog.get_logger("certfed.log")

# The health service name that is NOT_SERVING while the log may not grow (attestations refused).
LOG_HEALTH = "certfed.log"
# Witness(note, old_size, consistency_proof) -> the note with the witness's cosignature.
Witness = Callable[[bytes, int, list[bytes]], bytes]
MAX_WITNESS_ATTEMPTS = 3


class NoCheckpointError(PreconditionError):
    """The log has no cosigned checkpoint yet."""


@dataclass(frozen=True)
class Continuity:
    """Whether the log may grow: None, or why not (behind its witness, or not yet checked)."""

    tree_size: int
    witnessed_size: int
    refusal: str | None

    @property
    def ok(self) -> bool:
        return self.refusal is None


class TransparencyLog:
    def __init__(
        self,
        engine: Engine,
        node_id: str,
        signing_key: SigningKey,
        witness: Witness,
        witness_verifier: note.NoteVerifier,
        limits: Limits,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        node_witnesses: Sequence[tuple[str, Witness]] = (),
    ) -> None:
        self._engine = engine
        self.node_id = node_id
        # Node witnesses asked besides the registry (node id, call), and the size each one
        # last cosigned as far as this process knows (it says so when this is wrong).
        self._node_witnesses = tuple(node_witnesses)
        self._node_witness_sizes: dict[str, int] = {}
        self.origin = log_origin(node_id)
        self._signer = node_signer(node_id, signing_key)
        self._witness = witness
        self.witness_verifier = witness_verifier
        self._limits = limits
        self._clock = clock
        self._appended = threading.Condition()
        self._generation = 0
        self._publishing = threading.Lock()

    # Notification from the append path.

    def notify_appended(self) -> None:
        with self._appended:
            self._generation += 1
            self._appended.notify_all()

    def _wait_for_append(self, generation: int, timeout_s: float) -> int:
        with self._appended:
            self._appended.wait_for(lambda: self._generation != generation, timeout_s)
            return self._generation

    # Reads.

    def size(self) -> int:
        with Session(self._engine) as session:
            return log_store.size(session)

    def checkpoint(self) -> bytes:
        """The latest checkpoint the registry witness cosigned."""
        with Session(self._engine) as session:
            latest = log_store.latest_checkpoint(session)
        if latest is None:
            raise NoCheckpointError(
                f"node {self.node_id} has no cosigned checkpoint yet; the registry witness has "
                "not cosigned its log (is the registry reachable?)"
            )
        return latest.note

    def entry_batches(
        self, start: int, end: int, regions: Sequence[str] = ()
    ) -> Iterator[list[EntryRow]]:
        """Entries [start, end) in batches of at most `Limits.log_batch_entries`, and at most
        half a message in bytes."""
        with Session(self._engine) as session:
            size = log_store.size(session)
        if start < 0:
            raise InvalidInputError("start", "must not be negative")
        if end < start:
            raise InvalidInputError("end", "must not be before start")
        if end > size:
            raise InvalidInputError("end", f"is beyond the log's size {size}")
        budget = self._limits.max_message_bytes // 2
        limit = self._limits.log_batch_entries
        with Session(self._engine) as session:
            for rows in log_store.stream_entries(session, start, end, regions, limit):
                batch: list[EntryRow] = []
                used = 0
                for row in rows:
                    cost = len(row.envelope_json) + 64
                    if batch and used + cost > budget:
                        yield batch
                        batch, used = [], 0
                    batch.append(row)
                    used += cost
                if batch:
                    yield batch

    def inclusion_proof(
        self, leaf_index: int | None, attestation_id: str | None, tree_size: int
    ) -> tuple[int, int, list[bytes]]:
        """(leaf index, tree size, audit path); tree size 0 means the latest cosigned one."""
        with Session(self._engine) as session:
            if attestation_id is not None:
                leaf_index = log_store.entry_of(session, attestation_id).leaf_index
            if leaf_index is None:
                raise InvalidInputError("leaf", "give a leaf_index or an attestation_id")
            if tree_size == 0:
                latest = log_store.latest_checkpoint(session)
                if latest is None or latest.tree_size <= leaf_index:
                    raise NoCheckpointError(
                        f"no cosigned checkpoint covers leaf {leaf_index} yet; ask again after "
                        "the next checkpoint"
                    )
                tree_size = latest.tree_size
            proof = log_store.inclusion_proof(session, leaf_index, tree_size)
        return leaf_index, tree_size, proof

    def logged(
        self, attestation_ids: Sequence[str], tree_size: int | None
    ) -> dict[str, tuple[log_store.Logged, list[bytes] | None]]:
        """Each of `attestation_ids` the log holds, by id: where it is and its envelope as
        logged, and its audit path in the tree of `tree_size` when that tree holds it (else
        None). Ids the log does not hold are absent. Four queries however many."""
        with Session(self._engine) as session:
            found = log_store.entries_of(session, attestation_ids)
            size = tree_size or 0
            covered = sorted(
                {entry.leaf_index for entry in found.values() if entry.leaf_index < size}
            )
            proofs: dict[int, list[bytes]] = {}
            if covered:
                try:
                    paths = log_store.inclusion_proofs(session, covered, size)
                    proofs = dict(zip(covered, paths, strict=True))
                except InvalidInputError:
                    # A checkpoint past the log (one restored without its entries): no proofs.
                    proofs = {}
        return {name: (entry, proofs.get(entry.leaf_index)) for name, entry in found.items()}

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        with Session(self._engine) as session:
            return log_store.consistency_proof(session, first_size, second_size)

    # Verified copies of other nodes' logs (served to a node that lost entries of its own).

    def copy_checkpoint(self, origin: str) -> bytes:
        """The cosigned checkpoint the copy of `origin`'s log was verified against, when the
        copy holds every entry it covers."""
        with Session(self._engine) as session:
            copy = sync_store.head(session, origin)
        if copy is None:
            raise NotFoundError(f"node {self.node_id} keeps no copy of node {origin}'s log")
        covered = note.Checkpoint.parse(note.split_note(copy.checkpoint_note)[0]).tree_size
        if covered != copy.tree_size:
            raise PreconditionError(
                f"the copy of node {origin}'s log is being synced ({copy.tree_size} of "
                f"{covered} entries); ask again in a moment"
            )
        return copy.checkpoint_note

    def copy_entry_batches(self, origin: str, start: int, end: int) -> Iterator[list[EntryRow]]:
        """Entries [start, end) of the verified copy of `origin`'s log, in batches."""
        with Session(self._engine) as session:
            copy = sync_store.head(session, origin)
        if copy is None:
            raise NotFoundError(f"node {self.node_id} keeps no copy of node {origin}'s log")
        log_store.check_range(start, end, copy.tree_size)
        step = self._limits.log_batch_entries
        for batch_start in range(start, end, step):
            with Session(self._engine) as session:
                rows = sync_store.entries(
                    session, origin, batch_start, min(end, batch_start + step)
                )
            yield [EntryRow(row.leaf_index, row.envelope_json, row.paying_region) for row in rows]

    # Checkpoints.

    def continuity(self) -> Continuity:
        """Whether the log may grow now, from what the head knows of the witness."""
        with Session(self._engine) as session:
            head = log_store.head(session)
            state = log_store.witness_state(session)
        return Continuity(
            head.tree_size, state.witnessed_size, log_store.behind_witness(state, head.tree_size)
        )

    def publish(self) -> bytes:
        """Sign a checkpoint of the current tree, have it cosigned, store it; return the note.

        Nothing is signed when the latest cosigned checkpoint already covers the whole log
        (unless a restore asks for a check with the witness), nor when the witness is known to
        have cosigned more than the log holds: `LogBehindWitnessError` then.
        """
        with self._publishing:
            with Session(self._engine) as session:
                latest = log_store.latest_checkpoint(session)
                head = log_store.head(session)
                state = log_store.witness_state(session)
            if (
                latest is not None
                and latest.tree_size == head.tree_size
                and not state.awaiting_witness
            ):
                return self._complete_cosignatures(latest.tree_size, latest.root_hash, latest.note)
            self._refuse_if_behind(state.witnessed_size, head.tree_size)
            old_size = max(0 if latest is None else latest.tree_size, state.witnessed_size)
            for _ in range(MAX_WITNESS_ATTEMPTS):
                if old_size > head.tree_size:
                    # Another replica had a larger tree cosigned since we read the head, or the
                    # witness cosigned entries this log lost (restored from an older backup).
                    with Session(self._engine) as session:
                        head = log_store.head(session)
                    self._refuse_if_behind(old_size, head.tree_size, learned=True)
                checkpoint = note.Checkpoint(self.origin, head.tree_size, head.root_hash)
                signed = note.sign_note(checkpoint.to_text(), self._signer)
                proof = self.consistency_proof(old_size, head.tree_size) if old_size else []
                try:
                    cosigned = self._witness(signed, old_size, proof)
                except PreconditionError as error:
                    # c2sp.org/tlog-witness: the witness names the size it last cosigned (another
                    # replica of this node may have had a checkpoint cosigned meanwhile).
                    mismatch = size_mismatch_from_message(str(error))
                    if mismatch is None or mismatch.current_size == old_size:
                        raise
                    old_size = mismatch.current_size
                    log.info("checkpoint.witness_size_differs", witness_size=old_size)
                    continue
                self._check_cosigned(cosigned, checkpoint)
                cosigned = self._node_cosignatures(cosigned, checkpoint)
                with session_scope(self._engine) as session:
                    log_store.store_checkpoint(
                        session, head.tree_size, head.root_hash, cosigned, self._clock()
                    )
                    log_store.record_witness(session, witnessed_size=head.tree_size, confirmed=True)
                log.info("checkpoint.cosigned", tree_size=head.tree_size)
                return cosigned
            raise PreconditionError(
                f"the registry witness refused the checkpoint of size {head.tree_size} "
                f"{MAX_WITNESS_ATTEMPTS} times; see the registry's log"
            )

    def _missing_witnesses(self, stored_note: bytes) -> list[tuple[str, Witness]]:
        _, signatures = note.split_note(stored_note)
        present = {signature.name for signature in signatures}
        return [
            (node_id, call)
            for node_id, call in self._node_witnesses
            if node_witness_name(node_id) not in present
        ]

    def _complete_cosignatures(self, tree_size: int, root_hash: bytes, stored_note: bytes) -> bytes:
        """The stored checkpoint, with the cosignatures of node witnesses that it lacks asked
        for again and stored when they come."""
        if not self._missing_witnesses(stored_note):
            return stored_note
        checkpoint = note.Checkpoint(self.origin, tree_size, root_hash)
        completed = self._node_cosignatures(stored_note, checkpoint)
        if completed != stored_note:
            with session_scope(self._engine) as session:
                log_store.store_checkpoint(session, tree_size, root_hash, completed, self._clock())
        return completed

    def _node_cosignatures(self, cosigned: bytes, checkpoint: note.Checkpoint) -> bytes:
        """`cosigned` with the cosignature lines of the node witnesses that it lacks and that
        cosign now; one that refuses or does not answer is logged and asked again later."""
        for node_id, call in self._missing_witnesses(cosigned):
            try:
                lines = self._ask_node_witness(node_id, call, cosigned, checkpoint.tree_size)
            except CertfedError as error:
                log.warning("checkpoint.node_witness_refused", witness=node_id, error=str(error))
                continue
            cosigned += lines
        return cosigned

    def _ask_node_witness(
        self, node_id: str, call: Witness, submitted: bytes, tree_size: int
    ) -> bytes:
        """The cosignature line(s) node witness `node_id` adds to `submitted`."""
        old_size = self._node_witness_sizes.get(node_id, 0)
        for _ in range(MAX_WITNESS_ATTEMPTS):
            if old_size > tree_size:
                raise PreconditionError(
                    f"witness {node_id} cosigned this log at size {old_size}, beyond its "
                    f"{tree_size} entries"
                )
            proof = self.consistency_proof(old_size, tree_size) if old_size else []
            try:
                answer = call(submitted, old_size, proof)
            except PreconditionError as error:
                mismatch = size_mismatch_from_message(str(error))
                if mismatch is None or mismatch.current_size == old_size:
                    raise
                old_size = mismatch.current_size
                continue
            if not answer.startswith(submitted) or len(answer) == len(submitted):
                raise PreconditionError(f"witness {node_id} answered without its cosignature")
            self._node_witness_sizes[node_id] = tree_size
            return answer[len(submitted) :]
        raise PreconditionError(f"witness {node_id} refused the checkpoint of size {tree_size}")

    def _refuse_if_behind(
        self, witnessed_size: int, tree_size: int, *, learned: bool = False
    ) -> None:
        """Raise LogBehindWitnessError when the witness cosigned more than the log holds; what
        the witness just said (`learned`) is kept first, so appends stop too."""
        if witnessed_size <= tree_size:
            return
        if learned:
            with session_scope(self._engine) as session:
                state = log_store.record_witness(
                    session, witnessed_size=witnessed_size, confirmed=True
                )
            log.error(
                "log.behind_witness", tree_size=tree_size, witnessed_size=state.witnessed_size
            )
        else:
            state = WitnessState(witnessed_size, False)
        raise LogBehindWitnessError(log_store.behind_witness(state, tree_size) or "")

    def _check_cosigned(self, cosigned: bytes, checkpoint: note.Checkpoint) -> None:
        opened, names = note.open_checkpoint(
            cosigned, [self.witness_verifier], required=self._signer.verifier
        )
        if opened != checkpoint or self.witness_verifier.name not in names:
            raise PreconditionError(
                "the registry witness answered without a valid cosignature of our checkpoint"
            )

    # Subscriptions.

    def subscribe(
        self,
        from_tree_size: int,
        regions: Sequence[str],
        active: Callable[[], bool],
    ) -> Iterator[federation_pb2.SubscribeResponse]:
        """Entries from `from_tree_size` on, then each new one, with checkpoints as they come."""
        if len(regions) > self._limits.max_repeated:
            raise InvalidInputError(
                "paying_regions", f"at most {self._limits.max_repeated} regions per subscription"
            )
        for region in regions:
            validate_region_code(region, "paying_regions")
        size = self.size()
        if from_tree_size > size:
            raise InvalidInputError(
                "from_tree_size", f"is beyond the log's size {size}; this log never had it"
            )
        position = from_tree_size
        sent_checkpoint = -1
        generation = self._generation
        while active():
            size = self.size()
            if size > position:
                for batch in self.entry_batches(position, size, regions):
                    yield federation_pb2.SubscribeResponse(entries=entries_message(batch))
                position = size
            with Session(self._engine) as session:
                latest = log_store.latest_checkpoint(session)
            if latest is not None and latest.tree_size > sent_checkpoint:
                sent_checkpoint = latest.tree_size
                yield federation_pb2.SubscribeResponse(
                    checkpoint=log_pb2.SignedCheckpoint(note=latest.note)
                )
            generation = self._wait_for_append(generation, self._limits.subscription_poll_s)


def entries_message(batch: Sequence[EntryRow]) -> list[log_pb2.LogEntry]:
    return [
        log_pb2.LogEntry(
            index=row.leaf_index, envelope_json=row.envelope_json, paying_region=row.paying_region
        )
        for row in batch
    ]


class CheckpointPublisher(PeriodicWorker):
    """Publishes a cosigned checkpoint every `interval_s`, and at once when woken.

    While the log is behind its witness, each pass tries `recover` (getting the missing entries
    back from a node that follows this log; truthy when it got some) and publishes again. After
    each pass `on_continuity` hears whether the log may grow (the node's `certfed.log` health).
    """

    def __init__(
        self,
        transparency: TransparencyLog,
        interval_s: float,
        *,
        recover: Callable[[], object] | None = None,
        on_continuity: Callable[[Continuity], None] | None = None,
        pool_s: float = 0.5,
    ) -> None:
        super().__init__("checkpoint-publisher", interval_s)
        self._log = transparency
        self._recover = recover
        self._on_continuity = on_continuity
        self._pool_s = pool_s
        self._pool_lock = threading.Lock()
        self._pool: threading.Timer | None = None

    def soon(self) -> None:
        """Publish `pool_s` from now, with whatever else is appended meanwhile (one pool)."""
        with self._pool_lock:
            if self._pool is not None:
                return
            self._pool = threading.Timer(self._pool_s, self._close_pool)
            self._pool.daemon = True
            self._pool.start()

    def _close_pool(self) -> None:
        with self._pool_lock:
            self._pool = None
        self.wake()

    def stop(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.cancel()
                self._pool = None
        super().stop()

    def run_pass(self) -> None:
        try:
            try:
                self._log.publish()
            except LogBehindWitnessError:
                if self._recover is None or not self._recover():
                    raise
                self._log.publish()
        except LogBehindWitnessError as error:
            log.error("checkpoint.log_behind_witness", error=str(error))
        except CertfedError as error:
            log.warning("checkpoint.not_cosigned", error=str(error))
        except Exception:
            log.exception("checkpoint.publish_failed")
        if self._on_continuity is not None:
            try:
                self._on_continuity(self._log.continuity())
            except Exception:
                log.exception("checkpoint.continuity_failed")


def publish_log_health(servicer: health.HealthServicer, continuity: Continuity) -> None:
    """`certfed.log`: SERVING while the log may grow, NOT_SERVING while attestations wait."""
    servicer.set(
        LOG_HEALTH,
        health_pb2.HealthCheckResponse.SERVING
        if continuity.ok
        else health_pb2.HealthCheckResponse.NOT_SERVING,
    )
