"""Root key rotation in the TUF model: a node follows only statements signed by both roots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certfed.v1 import directory_pb2
from federation.errors import DirectoryVerificationError
from federation.root_chain import TrustedRoot, follow_root_chain, sign_root_statement
from federation.timestamps import to_timestamp
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def statement(version: int, previous: SigningKey, new: SigningKey) -> dsse.Envelope:
    return sign_root_statement(
        directory_pb2.RootStatement(
            federation_id="test",
            version=version,
            previous_key_id=previous.key_id,
            root_public_key=new.public_key.raw,
            issued_at=to_timestamp(NOW),
        ),
        previous,
        new,
    )


@pytest.fixture
def roots() -> list[SigningKey]:
    return [SigningKey.generate() for _ in range(3)]


def test_a_node_follows_two_rotations_to_the_newest_root(roots: list[SigningKey]) -> None:
    chain = [statement(2, roots[0], roots[1]), statement(3, roots[1], roots[2])]
    newest, steps = follow_root_chain(TrustedRoot(roots[0].public_key), chain)
    assert newest == TrustedRoot(roots[2].public_key, 3)
    assert [step.root.version for step in steps] == [2, 3]


def test_statements_before_the_trusted_root_are_skipped(roots: list[SigningKey]) -> None:
    chain = [statement(2, roots[0], roots[1]), statement(3, roots[1], roots[2])]
    newest, steps = follow_root_chain(TrustedRoot(roots[1].public_key), chain)
    assert newest.key_id == roots[2].key_id
    assert len(steps) == 1


def test_a_statement_without_the_old_roots_signature_is_refused(
    roots: list[SigningKey],
) -> None:
    genuine = statement(2, roots[0], roots[1])
    impostor = SigningKey.generate()
    # Someone without the old root key claims its key id for their own signature.
    forged = dsse.Signature(
        keyid=roots[0].key_id, sig=impostor.sign(dsse.pae(genuine.payload_type, genuine.payload))
    )
    envelope = dsse.Envelope(genuine.payload, genuine.payload_type, (forged, genuine.signatures[1]))
    with pytest.raises(DirectoryVerificationError, match="not signed by both"):
        follow_root_chain(TrustedRoot(roots[0].public_key), [envelope])


def test_a_statement_without_proof_of_possession_of_the_new_root_is_refused(
    roots: list[SigningKey],
) -> None:
    full = statement(2, roots[0], roots[1])
    old_only = dsse.Envelope(full.payload, full.payload_type, full.signatures[:1])
    with pytest.raises(DirectoryVerificationError, match="not signed by both"):
        follow_root_chain(TrustedRoot(roots[0].public_key), [old_only])


def test_a_chain_that_skips_a_version_is_refused(roots: list[SigningKey]) -> None:
    chain = [statement(2, roots[0], roots[1]), statement(4, roots[1], roots[2])]
    with pytest.raises(DirectoryVerificationError, match="does not follow"):
        follow_root_chain(TrustedRoot(roots[0].public_key), chain)


def test_a_statement_with_a_tampered_payload_is_refused(roots: list[SigningKey]) -> None:
    genuine = statement(2, roots[0], roots[1])
    payload = directory_pb2.RootStatement.FromString(genuine.payload)
    payload.root_public_key = roots[2].public_key.raw
    tampered = dsse.Envelope(payload.SerializeToString(), genuine.payload_type, genuine.signatures)
    with pytest.raises(DirectoryVerificationError):
        follow_root_chain(TrustedRoot(roots[0].public_key), [tampered])
