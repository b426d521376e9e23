"""Which witnesses an office requires on a checkpoint before it trusts it: k of n.

A checkpoint of a peer's log counts as witnessed for this office only when at least `required`
of the witnesses its policy names carry a valid cosignature on it (c2sp.org/tlog-cosignature);
a cosignature by a key the policy does not name counts for nothing, and one witness counts once
however many lines it added. By default the one witness is the registry's, so `required` is 1.
An office that names more witnesses (nodes serving c2sp.org/tlog-witness, node_witness.py) and
requires two or more no longer trusts a history that the registry's operator and one member
could agree on alone: every history it accepts was seen, consistently, by its other witnesses
too. The office names them in its policy file (`[witnesses]`, docs/policy.md).

Pure: bytes, keys and a directory in, a Checkpoint out or an error raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.directory import TrustedDirectory
from federation.errors import InvalidInputError
from federation_node.rules.policy import Policy
from federation_node.tlog.checkpoints import CheckpointRefusedError, verify_checkpoint
from signing import note
from signing.errors import NoteError


def parse_witness_key(vkey: str, field_name: str) -> note.NoteVerifier:
    """A witness's note verifier key (`<name>+<key id>+<base64 key>`), of type 0x04."""
    try:
        verifier = note.NoteVerifier.from_vkey(vkey.strip())
    except NoteError as error:
        raise InvalidInputError(field_name, f"is not a note verifier key: {error}") from None
    if verifier.signature_type != note.COSIGNATURE_V1_TYPE:
        raise InvalidInputError(field_name, "is not a witness cosignature key (type 0x04)")
    return verifier


@dataclass(frozen=True)
class WitnessPolicy:
    """The witnesses an office names, and how many of them must have cosigned."""

    witnesses: tuple[note.NoteVerifier, ...]
    required: int

    def __post_init__(self) -> None:
        slots = {(witness.name, witness.key_id) for witness in self.witnesses}
        if len(slots) != len(self.witnesses):
            raise InvalidInputError("witnesses.keys", "names one witness key twice")
        if not 1 <= self.required <= len(self.witnesses):
            raise InvalidInputError(
                "witnesses.required",
                f"is {self.required}; it must be between 1 and the {len(self.witnesses)} "
                "witnesses named (the registry's counts as one)",
            )

    @classmethod
    def of(
        cls, registry: note.NoteVerifier, named: Sequence[note.NoteVerifier], required: int
    ) -> WitnessPolicy:
        """The registry's witness and the ones the office names (a repeat of the registry's
        key in `named` counts once)."""
        others = tuple(
            witness
            for witness in named
            if (witness.name, witness.key_id) != (registry.name, registry.key_id)
        )
        return cls((registry, *others), required)

    def cosigners(self, checkpoint_note: bytes) -> list[note.NoteVerifier]:
        """The named witnesses whose cosignature on the note verifies, in the policy's order."""
        valid: list[note.NoteVerifier] = []
        for witness in self.witnesses:
            try:
                note.open_note(checkpoint_note, [], required=witness)
            except NoteError:
                continue
            valid.append(witness)
        return valid

    def verify(
        self, checkpoint_note: bytes, node_id: str, directory: TrustedDirectory
    ) -> note.Checkpoint:
        """The checkpoint of `node_id`'s log, when signed by the node and cosigned by at least
        `required` of the named witnesses; else CheckpointRefusedError saying which signed."""
        valid = self.cosigners(checkpoint_note)
        if len(valid) < self.required:
            signed = ", ".join(witness.name for witness in valid) or "none of them"
            raise CheckpointRefusedError(
                f"checkpoint of node {node_id} refused: this office requires cosignatures by "
                f"{self.required} of its {len(self.witnesses)} named witnesses, and it carries "
                f"{len(valid)} ({signed})"
            )
        # The first valid witness dates the checkpoint, which picks the node's keys.
        return verify_checkpoint(checkpoint_note, node_id, directory, valid[0])


def office_witness_policy(registry: note.NoteVerifier, policy: Policy) -> WitnessPolicy:
    """The witnesses an office's policy file names (`[witnesses]`), with the registry's."""
    named = [
        parse_witness_key(vkey, f"witnesses.keys[{position}]")
        for position, vkey in enumerate(policy.witness_keys)
    ]
    return WitnessPolicy.of(registry, named, policy.witnesses_required)
