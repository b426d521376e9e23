"""Checkpoints of node logs: who signs them, and the one check every receiver applies.

A node's log is named `certfed.node/<node id>` (the checkpoint origin, which is also the note
key name, c2sp.org/tlog-checkpoint) and its checkpoints are signed with the node's attestation
signing key, the one the directory lists. A receiver accepts a checkpoint only when it carries
both that signature and a valid cosignature by the registry witness (c2sp.org/tlog-cosignature),
whose verifier key it received out of band like the registry root key. The node key must have
been valid when the witness cosigned, so a key revoked since cannot be used to sign history.

Pure: bytes, keys and a directory in, a Checkpoint out or an error raised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from federation.directory import TrustedDirectory
from federation.errors import PreconditionError
from federation.witness_protocol import log_origin
from signing import note
from signing.errors import NoteError
from signing.keys import SigningKey


class CheckpointRefusedError(PreconditionError):
    """A checkpoint lacks a valid node signature or registry cosignature, or names another log."""


def node_signer(node_id: str, signing_key: SigningKey) -> note.NoteSigner:
    return note.NoteSigner(log_origin(node_id), signing_key)


def load_witness_verifier(path: Path) -> note.NoteVerifier:
    """The registry witness's verifier key from its vkey file (e.g. trust/witness.vkey)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as error:
        raise PreconditionError(
            f"no registry witness key at {path}; copy witness.vkey from the registry's trust/ "
            "folder"
        ) from error
    except UnicodeDecodeError as error:
        raise PreconditionError(f"{path} is not a note verifier key") from error
    try:
        verifier = note.NoteVerifier.from_vkey(text)
    except NoteError as error:
        raise PreconditionError(f"{path}: {error}") from error
    if verifier.signature_type != note.COSIGNATURE_V1_TYPE:
        raise PreconditionError(f"{path} is not a witness cosignature key (type 0x04)")
    return verifier


def _cosigned_at(checkpoint_note: bytes, witness: note.NoteVerifier) -> datetime:
    _, signatures = note.split_note(checkpoint_note)
    for signature in signatures:
        if signature.name == witness.name and signature.key_id == witness.key_id:
            timestamp = int.from_bytes(signature.signature[: note.TIMESTAMP_SIZE], "big")
            return datetime.fromtimestamp(timestamp, UTC)
    raise CheckpointRefusedError("the checkpoint carries no cosignature by the registry witness")


def verify_checkpoint(
    checkpoint_note: bytes,
    node_id: str,
    directory: TrustedDirectory,
    witness: note.NoteVerifier,
) -> note.Checkpoint:
    """Return the checkpoint of `node_id`'s log, or raise CheckpointRefusedError saying why."""
    try:
        # The witness first: its cosignature dates the checkpoint, which picks the node keys.
        note.open_note(checkpoint_note, [], required=witness)
    except NoteError as error:
        raise CheckpointRefusedError(
            f"checkpoint of node {node_id} refused: no valid cosignature by the registry "
            f"witness ({error})"
        ) from error
    try:
        cosigned_at = _cosigned_at(checkpoint_note, witness)
        origin = log_origin(node_id)
        keys = directory.signing_keys(node_id, cosigned_at)
        if not keys:
            raise CheckpointRefusedError(
                f"node {node_id} had no valid signing key when its checkpoint was cosigned"
            )
        problems: list[str] = []
        for key in keys.values():
            verifier = note.NoteVerifier(origin, key)
            try:
                checkpoint, _ = note.open_checkpoint(checkpoint_note, [witness], required=verifier)
            except NoteError as error:
                problems.append(str(error))
                continue
            if checkpoint.origin != origin:
                raise CheckpointRefusedError(
                    f"the checkpoint is of log {checkpoint.origin!r}, not {origin!r}"
                )
            return checkpoint
    except NoteError as error:
        raise CheckpointRefusedError(f"checkpoint of node {node_id} refused: {error}") from error
    raise CheckpointRefusedError(
        f"checkpoint of node {node_id} refused: {problems[0] if problems else 'no signature'}"
    )
