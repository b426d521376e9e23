"""A root rotation statement is bound to its federation: a node refuses one naming another
federation, even when that federation shares the node's root key, and keeps its root."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import directory_pb2
from federation.directory import sign_directory
from federation.errors import DirectoryVerificationError
from federation.registry_client import DirectoryUpdate
from federation.root_chain import TrustedRoot, follow_root_chain, sign_root_statement
from federation.timestamps import to_timestamp
from federation_node.links.directory_client import DirectoryClient
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _statement(federation_id: str, previous: SigningKey, new: SigningKey) -> dsse.Envelope:
    return sign_root_statement(
        directory_pb2.RootStatement(
            federation_id=federation_id,
            version=2,
            previous_key_id=previous.key_id,
            root_public_key=new.public_key.raw,
            issued_at=to_timestamp(NOW),
        ),
        previous,
        new,
    )


def _directory(federation_id: str, version: int, root: SigningKey) -> dsse.Envelope:
    return sign_directory(
        directory_pb2.Directory(
            federation_id=federation_id,
            version=version,
            issued_at=to_timestamp(NOW),
            expires_at=to_timestamp(NOW + timedelta(days=1)),
        ),
        root,
    )


def test_statement_of_another_federation_is_refused() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    foreign = _statement("other-federation", old, new)
    with pytest.raises(DirectoryVerificationError, match="of federation 'other-federation'"):
        follow_root_chain(TrustedRoot(old.public_key), [foreign], "pension-federation")
    root, steps = follow_root_chain(
        TrustedRoot(old.public_key),
        [_statement("pension-federation", old, new)],
        "pension-federation",
    )
    assert root.key_id == new.key_id
    assert [step.federation_id for step in steps] == ["pension-federation"]


def test_node_sharing_a_root_key_with_another_federation_keeps_its_root(tmp_path: Path) -> None:
    shared_root, foreign_root = SigningKey.generate(), SigningKey.generate()
    answers = [
        DirectoryUpdate(_directory("pension-federation", 1, shared_root), ()),
        # The other federation rotated the shared root away, and signs its directory with it.
        DirectoryUpdate(
            _directory("pension-federation", 2, foreign_root),
            (_statement("other-federation", shared_root, foreign_root),),
        ),
    ]
    client = DirectoryClient(
        lambda version, root_key_id: answers.pop(0),
        shared_root.public_key,
        tmp_path / "directory.json",
        clock=lambda: NOW,
        root_chain_path=tmp_path / "root-chain",
    )
    assert client.refresh()
    with pytest.raises(DirectoryVerificationError, match="other-federation"):
        client.refresh()
    assert client.root.key_id == shared_root.key_id
    assert client.version == 1
    assert not (tmp_path / "root-chain").exists()
