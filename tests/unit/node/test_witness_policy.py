"""k of n: a checkpoint counts for an office only with cosignatures by `required` of the
witnesses its policy names; the policy file names them and is refused when it cannot be met."""

from __future__ import annotations

import pytest

from federation.errors import InvalidInputError
from federation_node.rules.policy import policy_from_mapping
from federation_node.tlog.checkpoints import CheckpointRefusedError
from federation_node.tlog.witness_policy import WitnessPolicy, office_witness_policy
from signing import merkle, note
from signing.keys import SigningKey
from tests.unit.node.test_attestation_keys import NOW, directory_listing

COSIGNED_AT = int(NOW.timestamp())


def witness(name: str) -> note.NoteSigner:
    return note.NoteSigner(name, SigningKey.generate(), note.COSIGNATURE_V1_TYPE)


REGISTRY = witness("certfed.registry/test")
FOSHAN = witness("certfed.witness/foshan")
MACAU = witness("certfed.witness/macau-desk")
NODE_KEY = SigningKey.generate()
DIRECTORY = directory_listing(NODE_KEY)
CHECKPOINT = note.Checkpoint("certfed.node/qingdao", 1, merkle.leaf_hash(b"entry"))


def signed_by(*witnesses: note.NoteSigner) -> bytes:
    text = CHECKPOINT.to_text()
    signed = note.sign_note(text, note.NoteSigner("certfed.node/qingdao", NODE_KEY))
    for cosigner in witnesses:
        signed += note.cosign(text, cosigner, COSIGNED_AT)
    return signed


def policy(required: int, *named: note.NoteSigner) -> WitnessPolicy:
    return WitnessPolicy.of(REGISTRY.verifier, [w.verifier for w in named], required)


def test_the_default_is_the_registry_alone() -> None:
    default = office_witness_policy(REGISTRY.verifier, policy_from_mapping({}))
    assert default.required == 1
    assert default.witnesses == (REGISTRY.verifier,)
    assert default.verify(signed_by(REGISTRY), "qingdao", DIRECTORY) == CHECKPOINT


def test_two_of_three_needs_two_named_cosignatures() -> None:
    two_of_three = policy(2, FOSHAN, MACAU)
    assert two_of_three.verify(signed_by(REGISTRY, MACAU), "qingdao", DIRECTORY) == CHECKPOINT
    assert two_of_three.verify(signed_by(FOSHAN, MACAU), "qingdao", DIRECTORY) == CHECKPOINT
    with pytest.raises(CheckpointRefusedError, match=r"requires cosignatures by 2 .* carries 1"):
        two_of_three.verify(signed_by(REGISTRY), "qingdao", DIRECTORY)


def test_a_witness_the_policy_does_not_name_counts_for_nothing() -> None:
    stranger = witness("certfed.witness/foshan")  # the right name, another key
    with pytest.raises(CheckpointRefusedError, match="carries 1"):
        policy(2, FOSHAN).verify(signed_by(REGISTRY, stranger), "qingdao", DIRECTORY)


def test_one_witness_counts_once_however_many_lines_it_adds() -> None:
    twice = signed_by(REGISTRY, REGISTRY)
    assert policy(2, FOSHAN).cosigners(twice) == [REGISTRY.verifier]
    with pytest.raises(CheckpointRefusedError):
        policy(2, FOSHAN).verify(twice, "qingdao", DIRECTORY)


def test_a_bad_cosignature_by_a_named_witness_does_not_count() -> None:
    # FOSHAN's line over another checkpoint, moved onto this one.
    other = note.Checkpoint("certfed.node/qingdao", 2, merkle.leaf_hash(b"other"))
    forged = signed_by(REGISTRY) + note.cosign(other.to_text(), FOSHAN, COSIGNED_AT)
    assert policy(2, FOSHAN).cosigners(forged) == [REGISTRY.verifier]
    assert policy(2, FOSHAN).cosigners(signed_by(REGISTRY, FOSHAN)) == [
        REGISTRY.verifier,
        FOSHAN.verifier,
    ]


def test_a_checkpoint_cosigned_enough_but_not_signed_by_its_log_is_refused() -> None:
    text = CHECKPOINT.to_text()
    impostor = note.sign_note(text, note.NoteSigner("certfed.node/qingdao", SigningKey.generate()))
    impostor += note.cosign(text, REGISTRY, COSIGNED_AT) + note.cosign(text, FOSHAN, COSIGNED_AT)
    with pytest.raises(CheckpointRefusedError):
        policy(2, FOSHAN).verify(impostor, "qingdao", DIRECTORY)


def test_a_policy_that_cannot_be_met_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"witnesses\.required"):
        policy(3, FOSHAN)
    with pytest.raises(InvalidInputError, match=r"witnesses\.required"):
        policy(0)
    with pytest.raises(InvalidInputError, match=r"witnesses\.required"):
        policy_from_mapping({"witnesses": {"required": 3, "keys": [FOSHAN.verifier.to_vkey()]}})


def test_the_policy_file_names_witnesses_by_their_verifier_keys() -> None:
    read = policy_from_mapping({"witnesses": {"required": 2, "keys": [FOSHAN.verifier.to_vkey()]}})
    office = office_witness_policy(REGISTRY.verifier, read)
    assert office.witnesses == (REGISTRY.verifier, FOSHAN.verifier)
    assert office.required == 2
    log_key = note.NoteSigner("certfed.node/qingdao", NODE_KEY).verifier.to_vkey()
    with pytest.raises(InvalidInputError, match=r"witnesses.keys\[0\].*0x04"):
        policy_from_mapping({"witnesses": {"keys": [log_key]}})
    with pytest.raises(InvalidInputError, match=r"witnesses.keys\[0\]"):
        policy_from_mapping({"witnesses": {"keys": ["not a key"]}})
