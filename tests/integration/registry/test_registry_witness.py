"""The registry as witness of the nodes' logs (c2sp.org/tlog-witness), over mTLS on SQLite and
PostgreSQL: cosigning consistent checkpoints, refusing and recording forks, and keeping its
state across a restart."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import pytest

from cli.witness_commands import forks_command
from federation.errors import InvalidInputError, PermissionDeniedError, PreconditionError
from federation.registry_client import RegistryClient
from federation.witness_protocol import size_mismatch_from_message
from registry.server import build_registry_server
from signing import merkle
from signing.errors import NoteError
from signing.keys import SigningKey
from signing.note import (
    COSIGNATURE_V1_TYPE,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    sign_note,
    split_note,
    verify_cosignature,
)

if TYPE_CHECKING:
    from conftest import EnrolledFactory, NodeKit, RunningRegistry


class NodeLog:
    """A node's log as the node keeps it: leaves, and checkpoints signed with its signing key."""

    def __init__(self, node: NodeKit, history: bytes = b"entry") -> None:
        self.signer = NoteSigner(f"certfed.node/{node.node_id}", node.signing_key)
        self.leaves: list[bytes] = []
        self.history = history

    def grow_to(self, size: int) -> NodeLog:
        while len(self.leaves) < size:
            self.leaves.append(merkle.leaf_hash(b"%b-%d" % (self.history, len(self.leaves))))
        return self

    def note(self, size: int) -> bytes:
        _, root = merkle.root_from_leaves(self.leaves[:size])
        return sign_note(Checkpoint(self.signer.name, size, root).to_text(), self.signer)

    def proof(self, old_size: int, size: int) -> list[bytes]:
        return merkle.consistency_proof_from_leaves(old_size, self.leaves[:size])


def witness_verifier(registry: RunningRegistry) -> NoteVerifier:
    vkey = (registry.config.paths.data_dir / "trust" / "witness.vkey").read_text().strip()
    return NoteVerifier.from_vkey(vkey)


def submit(client: RegistryClient, log: NodeLog, old_size: int, size: int) -> bytes:
    return client.witness_checkpoint(log.note(size), old_size, log.proof(old_size, size))


def list_forks(
    registry: RunningRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """What `certfed registry forks --notes` prints for this registry's database."""
    monkeypatch.setenv("CERTFED_REGISTRY_DATABASE_URL", registry.config.database_url)
    config_file = registry.config.paths.config_file
    capsys.readouterr()
    assert forks_command(argparse.Namespace(config=str(config_file), notes=True)) == 0
    return capsys.readouterr().out


def test_first_checkpoint_is_cosigned_by_the_published_witness_key(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(5)
    note = log.note(5)
    cosigned = client.witness_checkpoint(note, 0, [])
    witness = witness_verifier(registry)
    assert witness.signature_type == COSIGNATURE_V1_TYPE
    assert witness.name == "certfed.registry/test-federation"
    assert cosigned.startswith(note)
    text, names = open_note(cosigned, [log.signer.verifier], required=witness)
    assert names == [log.signer.name, witness.name]
    assert verify_cosignature(text, cosigned[len(note) :], witness) > 0


def test_consistent_extension_is_cosigned(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(20)
    submit(client, log, 0, 3)
    submit(client, log, 3, 3)  # the same checkpoint again is cosigned again
    cosigned = submit(client, log, 3, 20)
    text, _ = open_note(cosigned, [], required=witness_verifier(registry))
    assert Checkpoint.parse(text).tree_size == 20


def test_same_size_with_another_root_is_refused_and_recorded_as_a_fork(
    registry: RunningRegistry,
    enrolled_node: EnrolledFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, client = enrolled_node("node-a")
    honest, forked = NodeLog(node).grow_to(8), NodeLog(node, b"rewritten").grow_to(8)
    submit(client, honest, 0, 8)
    with pytest.raises(PreconditionError, match="fork detected: size 8 signed with two"):
        submit(client, forked, 8, 8)
    output = list_forks(registry, capsys, monkeypatch)
    assert "node-a" in output
    assert "two different root hashes" in output
    assert honest.note(8).decode() in output
    assert forked.note(8).decode() in output
    # The witness keeps the history it cosigned: the honest log still extends.
    submit(client, honest.grow_to(9), 8, 9)


def test_inconsistent_proof_is_refused_and_recorded_as_a_fork(
    registry: RunningRegistry,
    enrolled_node: EnrolledFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, client = enrolled_node("node-a")
    honest, forked = NodeLog(node).grow_to(4), NodeLog(node, b"rewritten").grow_to(12)
    submit(client, honest, 0, 4)
    with pytest.raises(PreconditionError, match="fork detected: no consistency from size 4"):
        submit(client, forked, 4, 12)
    assert "no consistency from size 4 to 12" in list_forks(registry, capsys, monkeypatch)


def test_wrong_old_size_is_refused_with_the_witness_size(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(9)
    submit(client, log, 0, 5)
    with pytest.raises(PreconditionError, match="at size 5") as refused:
        submit(client, log, 2, 9)
    mismatch = size_mismatch_from_message(str(refused.value))
    assert mismatch is not None
    assert mismatch.current_size == 5
    submit(client, log, mismatch.current_size, 9)


def test_checkpoint_signed_by_another_nodes_key_is_refused(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node_a, client_a = enrolled_node("node-a")
    node_b, client_b = enrolled_node("node-b", region_codes=("440300",))
    impostor = NodeLog(node_a).grow_to(3)
    impostor.signer = NoteSigner(impostor.signer.name, node_b.signing_key)
    with pytest.raises(PermissionDeniedError, match="no valid signature by a current signing key"):
        submit(client_a, impostor, 0, 3)
    # Nor may node B submit node A's log, even signed with A's key.
    with pytest.raises(PermissionDeniedError, match=r"origin must be 'certfed\.node/node-b'"):
        submit(client_b, NodeLog(node_a).grow_to(3), 0, 3)


def test_malformed_submissions_are_refused_naming_the_field(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(6)
    with pytest.raises(InvalidInputError, match="must be empty when old_size is 0"):
        client.witness_checkpoint(log.note(6), 0, [merkle.EMPTY_ROOT])
    submit(client, log, 0, 6)
    with pytest.raises(InvalidInputError, match="old_size"):
        client.witness_checkpoint(log.note(4), 6, [])
    with pytest.raises(InvalidInputError, match=r"consistency_proof\[0\]"):
        client.witness_checkpoint(log.note(6), 6, [b"short"])
    text, _ = split_note(log.note(6))
    with pytest.raises(InvalidInputError, match=r"checkpoint\.note"):
        client.witness_checkpoint(text, 6, [])


def test_witness_signature_is_not_a_note_signature_by_the_root_or_log_key(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(2)
    cosigned = client.witness_checkpoint(log.note(2), 0, [])
    stranger = NoteVerifier("certfed.registry/test-federation", SigningKey.generate().public_key)
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(cosigned, [], required=stranger)


def test_witness_state_survives_a_restart(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("node-a")
    log = NodeLog(node).grow_to(10)
    submit(client, log, 0, 7)
    registry.server.stop(grace=0.5)
    # build_registry_server returns once both ports are bound and serving.
    restarted = type(registry)(registry.config, build_registry_server(registry.config))
    try:
        with restarted.anonymous() as anonymous:
            enrolment = anonymous.get_enrolment(node.node_id, node.signing_key)
        tls = node.tls(enrolment.tls_certificate_pem, enrolment.ca_certificate_pem)
        with restarted.node_client(tls) as again:
            with pytest.raises(PreconditionError, match="at size 7"):
                submit(again, log, 0, 10)
            cosigned = submit(again, log, 7, 10)
        open_note(cosigned, [], required=witness_verifier(restarted))
    finally:
        restarted.server.stop(grace=0.5)
