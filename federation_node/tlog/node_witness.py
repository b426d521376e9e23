"""A node as a witness of other members' logs (c2sp.org/tlog-witness), like the registry's.

Any member can cosign the checkpoints of the others' logs, so that an office may require more
witnesses than the registry (tlog/witness_policy.py) and the registry's operator and one member
together can no longer show two offices two histories. The node applies the registry witness's
rules (registry/witness.py), with the keys of the signed directory instead of the registry's
tables:

- the checkpoint's origin is the caller's own log, "certfed.node/<caller>" (the caller is the
  node its TLS certificate names), the caller is active in the directory, and the note carries a
  valid signature by one of its signing keys current now (PERMISSION_DENIED otherwise; a
  malformed note or proof is INVALID_ARGUMENT);
- the old size must be the size this node last cosigned for that log (0 if none), else
  `WitnessSizeMismatchError` (FAILED_PRECONDITION) whose message carries the size;
- the same size with another root, or a consistency proof that does not verify, is a fork:
  nothing is cosigned, the call fails with `ForkDetectedError` (FAILED_PRECONDITION, "fork
  detected"), and both notes' digests go to the audit trail and an error log event;
- otherwise the checkpoint is recorded with the cosigned note (store/witnessed_logs.py) before
  the answer (the note with this node's cosignature line, under `certfed.witness/<node id>`)
  leaves; checking and recording happen under one lock.

A node whose configuration sets `witness = false` refuses every submission (FAILED_PRECONDITION).
Its witness key lives in `keys/witness.key` (made at first start) and its verifier key, which
offices name in their policy, is written to `witness.vkey` in the data directory.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import grpc
import structlog
from sqlalchemy.engine import Engine

from certfed.v1 import federation_pb2, federation_pb2_grpc, log_pb2
from federation.directory import TrustedDirectory
from federation.errors import (
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
    from_rpc_error,
)
from federation.witness_protocol import (
    RETRY_HINT,
    ForkDetectedError,
    WitnessSizeMismatchError,
    check_log_signature,
    check_proof,
    fork_reason,
    log_origin,
    node_witness_signer,
    parse_checkpoint,
)
from federation_node.store import audit, witnessed_logs
from federation_node.store.db import session_scope
from signing.keys import SigningKey
from signing.note import NoteSigner, NoteVerifier, cosign

log = structlog.get_logger("certfed.witness")

WITNESS_KEY_FILE = "witness.key"
WITNESS_VKEY_FILE = "witness.vkey"


def load_or_create_witness_signer(data_dir: Path, node_id: str) -> NoteSigner:
    """This node's witness signer from `keys/witness.key`, made (mode 0600) when missing; its
    verifier key is (re)written to `witness.vkey` for the operator to hand to offices."""
    path = data_dir / "keys" / WITNESS_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        SigningKey.generate().save(path)
    signer = node_witness_signer(SigningKey.load(path), node_id)
    (data_dir / WITNESS_VKEY_FILE).write_text(signer.verifier.to_vkey() + "\n", encoding="ascii")
    return signer


def _digest(note: bytes) -> str:
    return hashlib.sha256(note).hexdigest()


class NodeWitness:
    """Cosigns other members' checkpoints against what it recorded; see the module doc."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        signer: NoteSigner,
        directory: Callable[[], TrustedDirectory],
        clock: Callable[[], datetime],
        *,
        enabled: bool = True,
    ) -> None:
        self._engine = engine
        self.node_id = node_id
        self._signer = signer
        self._directory = directory
        self._clock = clock
        self.enabled = enabled
        self._deciding = threading.Lock()

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier

    def cosign(self, caller: str, note: bytes, old_size: int, proof: list[bytes]) -> bytes:
        """The submitted note with this node's cosignature appended; see the module doc."""
        if not self.enabled:
            raise PreconditionError(
                f"node {self.node_id} does not witness other members' logs (witness = false "
                "in its configuration)"
            )
        if caller == self.node_id:
            raise PermissionDeniedError("a node does not witness its own log")
        now = self._clock()
        origin = log_origin(caller)
        check_proof(old_size, proof)
        checkpoint = parse_checkpoint(note, origin)
        if old_size > checkpoint.tree_size:
            raise InvalidInputError(
                "old_size",
                f"is {old_size}, more than the checkpoint's tree size {checkpoint.tree_size}; "
                "a log only grows",
            )
        directory = self._directory()
        directory.active_node(caller)
        check_log_signature(note, caller, directory.signing_keys(caller, now).values())
        fork: tuple[str, int] | None = None
        with self._deciding, session_scope(self._engine) as session:
            witnessed_logs.lock(session)
            stored = witnessed_logs.latest(session, origin)
            current_size = stored.tree_size if stored is not None else 0
            if old_size != current_size:
                raise WitnessSizeMismatchError(
                    f"old_size is {old_size} but witness {self.node_id} last cosigned {origin} "
                    f"at size {current_size}; " + RETRY_HINT.format(size=current_size),
                    current_size,
                )
            reason = (
                None
                if stored is None
                else fork_reason(stored.tree_size, stored.root_hash, checkpoint, proof)
            )
            if reason is None:
                cosigned = note + cosign(checkpoint.to_text(), self._signer, int(now.timestamp()))
                witnessed_logs.record_cosigned(
                    session,
                    origin=origin,
                    tree_size=checkpoint.tree_size,
                    root_hash=checkpoint.root_hash,
                    note=cosigned,
                    at=now,
                )
            elif stored is not None:
                fork = (reason, current_size)
                audit.append(
                    session,
                    actor=f"node:{caller}",
                    action="witness.fork",
                    subject_type="log",
                    subject_id=caller,
                    details={
                        "reason": reason,
                        "cosigned_note_sha256": _digest(stored.note),
                        "offered_note_sha256": _digest(note),
                    },
                    now=now,
                )
        if fork is not None:
            # Committed above: the evidence is kept although the call fails.
            log.error(
                "witness.fork_detected",
                origin=origin,
                reason=fork[0],
                kept_size=fork[1],
                offered_size=checkpoint.tree_size,
            )
            raise ForkDetectedError(
                f"fork detected: {fork[0]}; witness {self.node_id} keeps size {fork[1]} for "
                f"{origin}"
            )
        log.info("witness.checkpoint_cosigned", origin=origin, tree_size=checkpoint.tree_size)
        return cosigned


def peer_witness(
    stub_for: Callable[[str], federation_pb2_grpc.FederationServiceStub],
    node_id: str,
    timeout_s: float,
) -> Callable[[bytes, int, list[bytes]], bytes]:
    """Node `node_id` as a witness of this node's log, called like the registry's witness
    (tlog/transparency.py): a refusal is raised as the CertfedError its status maps to."""

    def ask(note: bytes, old_size: int, proof: list[bytes]) -> bytes:
        request = federation_pb2.CosignCheckpointRequest(
            checkpoint=log_pb2.SignedCheckpoint(note=note),
            old_size=old_size,
            consistency_proof=proof,
        )
        try:
            response = stub_for(node_id).CosignCheckpoint(request, timeout=timeout_s)
        except grpc.RpcError as error:
            raise from_rpc_error(error, call="CosignCheckpoint", peer=node_id) from None
        return bytes(response.checkpoint.note)

    return ask
