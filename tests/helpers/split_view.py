"""A history that only one office is shown: a log of the issuer's that the federation never saw.

A member with its own signing key can sign a checkpoint of any tree it likes; the witnesses are
what stop it from showing two offices two trees. `split_view` builds such a tree (the attestation
alone, or after `others`), signs its checkpoint as `issuer`, and has it cosigned by the witness
keys given: the registry's, read from the registry's files as a colluding registry operator
would (`registry_witness`), and any other. The result is the `LogInclusion` a delivery carries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from certfed.v1 import federation_pb2, log_pb2
from cli.launcher import LocalFederation
from federation.witness_protocol import log_origin
from signing import dsse, merkle, note
from signing.keys import SigningKey


def registry_witness(local: LocalFederation) -> note.NoteSigner:
    """The registry witness's signer, taken from the registry's own key file."""
    paths = local.registry_paths
    name = note.NoteVerifier.from_vkey(paths.trust_witness_vkey.read_text().strip()).name
    return note.NoteSigner(name, SigningKey.load(paths.witness_key), note.COSIGNATURE_V1_TYPE)


def node_signing_key(local: LocalFederation, node_id: str) -> SigningKey:
    return SigningKey.load(Path(local.nodes[node_id].config.data_dir) / "keys" / "signing.key")


def split_view(
    issuer: str,
    issuer_key: SigningKey,
    envelope: dsse.Envelope,
    witnesses: Sequence[note.NoteSigner],
    *,
    others: Sequence[bytes] = (b"an entry nobody else was shown",),
) -> federation_pb2.LogInclusion:
    """A proof of `envelope` as the last leaf of a tree of `others` and it, in a checkpoint of
    `issuer`'s log signed with `issuer_key` and cosigned by `witnesses`."""
    leaves = [*others, envelope.to_json()]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    size = len(leaves)
    _, root = merkle.root_from_leaves(hashes)
    checkpoint = note.Checkpoint(log_origin(issuer), size, root)
    signed = note.sign_note(checkpoint.to_text(), note.NoteSigner(log_origin(issuer), issuer_key))
    for witness in witnesses:
        signed += note.cosign(checkpoint.to_text(), witness, int(time.time()))
    return federation_pb2.LogInclusion(
        leaf_index=size - 1,
        tree_size=size,
        hashes=merkle.inclusion_proof_from_leaves(size - 1, hashes),
        checkpoint=log_pb2.SignedCheckpoint(note=signed),
    )
