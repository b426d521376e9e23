"""The registry as a transparency-log witness (c2sp.org/tlog-witness) for the nodes' logs.

A node submits its newly signed checkpoint with the size it believes the witness last cosigned
and a consistency proof from that size. The witness cosigns (c2sp.org/tlog-cosignature, key
type 0x04) only a checkpoint that extends, consistently, the last one it cosigned for that log,
so a node cannot show two histories to two parties that both check the registry's cosignature.

Promises, in the order the checks run:

- the checkpoint's origin is the caller's own log, "certfed.node/<node id>", and the note
  carries a valid signature by one of the node's signing keys current now, under that name
  (PERMISSION_DENIED otherwise; a malformed note or checkpoint is INVALID_ARGUMENT);
- a consistency proof from old size 0 must be empty, and holds at most 63 hashes of 32 bytes;
  the old size may not exceed the checkpoint's size (INVALID_ARGUMENT);
- the old size must be the size last cosigned for the log (0 if none), else
  `WitnessSizeMismatchError` (FAILED_PRECONDITION) whose message carries the witness's size;
- the same size with another root, or a consistency proof that does not verify, is a fork:
  both signed notes are recorded in `witness_fork`, an error event is logged, and the call fails
  with `ForkDetectedError` (FAILED_PRECONDITION, "fork detected");
- otherwise the new checkpoint is recorded, with the cosigned note, before the answer (the
  note with the registry's cosignature line appended) leaves; checking and recording happen
  under one lock, so concurrent submissions can never roll the recorded size back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from federation.errors import InvalidInputError
from federation.witness_protocol import (
    RETRY_HINT,
    ForkDetectedError,
    WitnessSizeMismatchError,
    check_log_signature,
    check_proof,
    fork_reason,
    log_origin,
    parse_checkpoint,
)
from registry import audit_store, nodes_store, witness_store
from registry.db import transaction
from registry.tables import NodeKey, WitnessedCheckpoint
from registry.utc import utc_now
from signing.keys import VerifyKey
from signing.note import (
    COSIGNATURE_V1_TYPE,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    cosign,
)

log = structlog.get_logger("certfed.registry.witness")


@dataclass(frozen=True)
class Submission:
    """What a node asks the witness to cosign."""

    note: bytes
    old_size: int
    consistency_proof: tuple[bytes, ...]


def _key_valid_at(key: NodeKey, moment: datetime) -> bool:
    # The rule the directory's readers apply to a node's keys (TrustedDirectory.signing_keys).
    return (
        key.valid_from <= moment
        and (key.valid_until is None or moment < key.valid_until)
        and (key.revoked_at is None or moment < key.revoked_at)
    )


@dataclass(frozen=True)
class _Fork:
    reason: str
    kept_size: int
    cosigned_note: bytes


def _fork(
    stored: WitnessedCheckpoint, checkpoint: Checkpoint, submission: Submission
) -> _Fork | None:
    """Why the checkpoint cannot follow the stored one, or None when it consistently does."""
    reason = fork_reason(
        stored.tree_size, stored.root_hash, checkpoint, submission.consistency_proof
    )
    return None if reason is None else _Fork(reason, stored.tree_size, stored.note)


class Witness:
    """Cosigns the nodes' checkpoints against what it recorded, in one transaction each."""

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if signer.signature_type != COSIGNATURE_V1_TYPE:
            raise ValueError("the witness signs cosignatures: its signer has type 0x04")
        self._engine = engine
        self._signer = signer
        self._clock = clock

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier

    def forks_by_node(self) -> dict[str, tuple[int, datetime]]:
        """For each node with a recorded fork: how many, and when the latest was detected."""
        with transaction(self._engine) as session:
            return witness_store.forks_by_node(session)

    def cosign(self, node_id: str, submission: Submission) -> bytes:
        """The submitted note with the witness's cosignature appended; see the module doc."""
        now = self._clock()
        origin = log_origin(node_id)
        check_proof(submission.old_size, submission.consistency_proof)
        checkpoint = parse_checkpoint(submission.note, origin)
        if submission.old_size > checkpoint.tree_size:
            raise InvalidInputError(
                "old_size",
                f"is {submission.old_size}, more than the checkpoint's tree size "
                f"{checkpoint.tree_size}; a log only grows",
            )
        with transaction(self._engine) as session:
            keys = [
                key for key in nodes_store.signing_keys(session, node_id) if _key_valid_at(key, now)
            ]
            check_log_signature(
                submission.note, node_id, [VerifyKey.from_raw(key.public_key) for key in keys]
            )
            witness_store.lock(session)
            stored = witness_store.latest(session, origin)
            current_size = stored.tree_size if stored is not None else 0
            if submission.old_size != current_size:
                raise WitnessSizeMismatchError(
                    f"old_size is {submission.old_size} but the witness last cosigned {origin} "
                    f"at size {current_size}; " + RETRY_HINT.format(size=current_size),
                    current_size,
                )
            fork = None if stored is None else _fork(stored, checkpoint, submission)
            if fork is None:
                line = cosign(checkpoint.to_text(), self._signer, int(now.timestamp()))
                cosigned = submission.note + line
                witness_store.record_cosigned(
                    session,
                    origin=origin,
                    tree_size=checkpoint.tree_size,
                    root_hash=checkpoint.root_hash,
                    note=cosigned,
                    at=now,
                )
            else:
                witness_store.record_fork(
                    session,
                    node_id=node_id,
                    origin=origin,
                    reason=fork.reason,
                    cosigned_note=fork.cosigned_note,
                    offered_note=submission.note,
                    at=now,
                )
                audit_store.record(
                    session,
                    actor=f"node:{node_id}",
                    action="witness_fork",
                    node_id=node_id,
                    at=now,
                    detail=fork.reason,
                )
        if fork is not None:
            # Committed above: the evidence is kept although the call fails.
            log.error(
                "registry.witness_fork_detected",
                node_id=node_id,
                origin=origin,
                reason=fork.reason,
                kept_size=fork.kept_size,
                offered_size=checkpoint.tree_size,
            )
            raise ForkDetectedError(
                f"fork detected: {fork.reason}; the witness keeps size {fork.kept_size} for "
                f"{origin}, and the registry administrator has the record"
            )
        log.info(
            "registry.checkpoint_cosigned",
            node_id=node_id,
            origin=origin,
            tree_size=checkpoint.tree_size,
            old_size=submission.old_size,
        )
        return cosigned
