"""What a node's log and a witness say to each other (c2sp.org/tlog-witness), for both sides.

The names under which logs and witnesses sign, the size-mismatch refusal that a witness sends
and a log turns back into a retry with the right old size, and the checks every witness (the
registry's, and any node's, federation_node/tlog/node_witness.py) applies to a submission
before it compares it with what it cosigned last: `check_proof`, `parse_checkpoint` and
`fork_reason`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from federation.errors import InvalidInputError, PermissionDeniedError, PreconditionError
from signing import merkle
from signing.errors import ConsistencyProofError, NoteError
from signing.keys import SigningKey, VerifyKey
from signing.note import (
    COSIGNATURE_V1_TYPE,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    split_note,
)

LOG_ORIGIN_PREFIX = "certfed.node/"
WITNESS_NAME_PREFIX = "certfed.registry/"
NODE_WITNESS_PREFIX = "certfed.witness/"
# c2sp.org/tlog-witness: a client MUST NOT send more than 63 consistency proof lines.
MAX_CONSISTENCY_PROOF_HASHES = 63
# Tree sizes are stored in a signed 64-bit column.
MAX_WITNESSED_TREE_SIZE = 2**63 - 1
RETRY_HINT = "retry with old_size {size} and a consistency proof from it"
_RETRY_PATTERN = re.compile(r"retry with old_size (\d+) ")


def log_origin(node_id: str) -> str:
    """The origin line (and log key name) of a node's transparency log."""
    return f"{LOG_ORIGIN_PREFIX}{node_id}"


def witness_name(federation_id: str) -> str:
    return f"{WITNESS_NAME_PREFIX}{federation_id}"


def witness_signer(key: SigningKey, federation_id: str) -> NoteSigner:
    return NoteSigner(witness_name(federation_id), key, COSIGNATURE_V1_TYPE)


def node_witness_name(node_id: str) -> str:
    """The name under which node `node_id` cosigns other members' checkpoints as a witness."""
    return f"{NODE_WITNESS_PREFIX}{node_id}"


def node_witness_signer(key: SigningKey, node_id: str) -> NoteSigner:
    return NoteSigner(node_witness_name(node_id), key, COSIGNATURE_V1_TYPE)


def check_log_signature(note: bytes, node_id: str, keys: Iterable[VerifyKey]) -> None:
    """Refuse a checkpoint that no signing key of `node_id` valid now has signed
    (PERMISSION_DENIED): `keys` are that node's keys inside their window."""
    origin = log_origin(node_id)
    verifiers = [NoteVerifier(origin, key) for key in keys]
    if not verifiers:
        raise PermissionDeniedError(f"node {node_id} has no signing key valid now")
    refusal = ""
    for required in verifiers:
        try:
            open_note(note, verifiers, required=required)
        except NoteError as error:
            refusal = str(error)
            continue
        return
    raise PermissionDeniedError(
        f"the checkpoint carries no valid signature by a current signing key of node "
        f"{node_id}: {refusal}"
    )


def check_proof(old_size: int, proof: Sequence[bytes]) -> None:
    """Refuse a consistency proof no witness reads: too long, a hash of the wrong size, or
    any hash at all from old size 0 (INVALID_ARGUMENT)."""
    if len(proof) > MAX_CONSISTENCY_PROOF_HASHES:
        raise InvalidInputError(
            "consistency_proof",
            f"has {len(proof)} hashes; a proof has at most {MAX_CONSISTENCY_PROOF_HASHES}",
        )
    for position, value in enumerate(proof):
        if len(value) != merkle.HASH_SIZE:
            raise InvalidInputError(
                f"consistency_proof[{position}]",
                f"has {len(value)} bytes; a SHA-256 hash has {merkle.HASH_SIZE}",
            )
    if old_size == 0 and proof:
        raise InvalidInputError(
            "consistency_proof", "must be empty when old_size is 0 (c2sp.org/tlog-witness)"
        )


def parse_checkpoint(note: bytes, origin: str) -> Checkpoint:
    """The checkpoint in a submitted note, which must be of log `origin` (PERMISSION_DENIED
    otherwise) and well formed (INVALID_ARGUMENT)."""
    try:
        text, _ = split_note(note)
        checkpoint = Checkpoint.parse(text)
    except NoteError as error:
        raise InvalidInputError("checkpoint.note", str(error)) from None
    if checkpoint.origin != origin:
        raise PermissionDeniedError(
            f"a node may submit only its own log's checkpoints: the origin must be {origin!r}"
        )
    if checkpoint.tree_size > MAX_WITNESSED_TREE_SIZE:
        raise InvalidInputError("checkpoint.note", "tree size is above 2^63 - 1")
    if checkpoint.tree_size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
        raise InvalidInputError(
            "checkpoint.note", "an empty tree's root hash is SHA-256 of nothing (RFC 9162 2.1.1)"
        )
    return checkpoint


def fork_reason(
    kept_size: int, kept_root: bytes, checkpoint: Checkpoint, proof: Sequence[bytes]
) -> str | None:
    """Why `checkpoint` cannot follow the one a witness cosigned last (of `kept_size` entries
    and root `kept_root`), or None when it consistently does."""
    if checkpoint.tree_size == kept_size:
        if checkpoint.root_hash == kept_root:
            return None
        return f"size {kept_size} signed with two different root hashes"
    try:
        merkle.verify_consistency(
            kept_size, checkpoint.tree_size, kept_root, checkpoint.root_hash, proof
        )
    except ConsistencyProofError as error:
        return f"no consistency from size {kept_size} to {checkpoint.tree_size}: {error}"
    return None


class WitnessSizeMismatchError(PreconditionError):
    """The submission's old size is not the size the witness last cosigned for the log."""

    def __init__(self, message: str, current_size: int) -> None:
        super().__init__(message)
        self.current_size = current_size


class ForkDetectedError(PreconditionError):
    """The log signed a checkpoint inconsistent with one the witness cosigned; it is recorded."""


def size_mismatch_from_message(message: str) -> WitnessSizeMismatchError | None:
    """Rebuild the size-mismatch error a client received as a FAILED_PRECONDITION message."""
    match = _RETRY_PATTERN.search(message)
    if match is None:
        return None
    return WitnessSizeMismatchError(message, int(match.group(1)))
