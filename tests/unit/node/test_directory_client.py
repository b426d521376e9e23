"""The node's directory client: verified, cached, never rolled back, usable until it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import common_pb2, directory_pb2
from federation.directory import sign_directory
from federation.errors import (
    DirectoryExpiredError,
    DirectoryRollbackError,
    DirectoryVerificationError,
    PreconditionError,
    UnavailableError,
)
from federation.registry_client import DirectoryUpdate
from federation.timestamps import to_timestamp
from federation_node.links.directory_client import DirectoryClient
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Registry:
    """Stands in for the network: hands out whatever envelope a test puts up, or fails."""

    def __init__(self) -> None:
        self.envelope: dsse.Envelope | None = None
        self.down = False

    def fetch(self, known_version: int, known_root_key_id: str) -> DirectoryUpdate:
        if self.down:
            raise UnavailableError("cannot reach the registry")
        if self.envelope is None:
            return DirectoryUpdate(None)
        version = directory_pb2.Directory.FromString(self.envelope.payload).version
        return DirectoryUpdate(None if version == known_version else self.envelope)


def signed(
    root: SigningKey, version: int, *, lifetime: timedelta = timedelta(days=7)
) -> dsse.Envelope:
    directory = directory_pb2.Directory(
        federation_id="test",
        version=version,
        issued_at=to_timestamp(NOW),
        expires_at=to_timestamp(NOW + lifetime),
        nodes=[
            directory_pb2.DirectoryNode(
                node_id="qingdao",
                region_codes=["370200"],
                roles=[common_pb2.ROLE_RESIDENCE_AGENCY],
                status=common_pb2.NODE_STATUS_ACTIVE,
            )
        ],
    )
    return sign_directory(directory, root)


@pytest.fixture
def root() -> SigningKey:
    return SigningKey.generate()


def client(
    registry: Registry, root: SigningKey, cache: Path, now: datetime = NOW
) -> DirectoryClient:
    return DirectoryClient(registry.fetch, root.public_key, cache, clock=lambda: now)


def test_a_fetched_directory_is_verified_cached_and_used(root: SigningKey, tmp_path: Path) -> None:
    registry = Registry()
    registry.envelope = signed(root, 3)
    directory = client(registry, root, tmp_path / "d.json")
    assert directory.refresh()
    assert directory.current().version == 3
    assert (tmp_path / "d.json").exists()


def test_a_directory_with_a_bad_signature_is_refused_and_the_old_one_kept(
    root: SigningKey, tmp_path: Path
) -> None:
    registry = Registry()
    registry.envelope = signed(root, 3)
    directory = client(registry, root, tmp_path / "d.json")
    directory.refresh()
    registry.envelope = signed(SigningKey.generate(), 4)
    with pytest.raises(DirectoryVerificationError):
        directory.refresh()
    assert directory.current().version == 3


def test_a_lower_version_is_refused_as_a_rollback(root: SigningKey, tmp_path: Path) -> None:
    registry = Registry()
    registry.envelope = signed(root, 5)
    directory = client(registry, root, tmp_path / "d.json")
    directory.refresh()
    registry.envelope = signed(root, 4)
    with pytest.raises(DirectoryRollbackError):
        directory.refresh()
    assert directory.current().version == 5


def test_deleting_the_cache_does_not_forget_the_highest_version(
    root: SigningKey, tmp_path: Path
) -> None:
    registry = Registry()
    registry.envelope = signed(root, 5)
    client(registry, root, tmp_path / "d.json").refresh()
    (tmp_path / "d.json").unlink()
    registry.envelope = signed(root, 4)
    restarted = client(registry, root, tmp_path / "d.json")
    with pytest.raises(DirectoryRollbackError, match="version 5"):
        restarted.refresh()
    assert restarted.version == 0


def test_an_older_cache_put_back_is_not_trusted(root: SigningKey, tmp_path: Path) -> None:
    registry = Registry()
    registry.envelope = signed(root, 4)
    client(registry, root, tmp_path / "d.json").refresh()
    old_cache = (tmp_path / "d.json").read_bytes()
    registry.envelope = signed(root, 5)
    client(registry, root, tmp_path / "d.json").refresh()
    (tmp_path / "d.json").write_bytes(old_cache)
    registry.down = True
    restarted = client(registry, root, tmp_path / "d.json")
    with pytest.raises(PreconditionError, match="no federation directory"):
        restarted.current()


def test_a_garbled_highest_version_file_stops_the_node(root: SigningKey, tmp_path: Path) -> None:
    (tmp_path / "d.json.highest-version").write_text("five")
    with pytest.raises(DirectoryRollbackError, match="does not hold a directory version"):
        client(Registry(), root, tmp_path / "d.json")


def test_the_cached_directory_serves_while_the_registry_is_down(
    root: SigningKey, tmp_path: Path
) -> None:
    registry = Registry()
    registry.envelope = signed(root, 2)
    client(registry, root, tmp_path / "d.json").refresh()
    registry.down = True
    restarted = client(registry, root, tmp_path / "d.json", now=NOW + timedelta(days=1))
    assert not restarted.refresh()
    assert restarted.current().version == 2
    assert restarted.status()["stale"] is True


def test_an_expired_cached_directory_is_refused_with_a_clear_error(
    root: SigningKey, tmp_path: Path
) -> None:
    registry = Registry()
    registry.envelope = signed(root, 2, lifetime=timedelta(hours=1))
    client(registry, root, tmp_path / "d.json").refresh()
    registry.down = True
    later = client(registry, root, tmp_path / "d.json", now=NOW + timedelta(hours=2))
    later.refresh()
    with pytest.raises(DirectoryExpiredError, match="expired"):
        later.current()


def test_a_tampered_cache_file_is_not_trusted(root: SigningKey, tmp_path: Path) -> None:
    registry = Registry()
    registry.envelope = signed(root, 2)
    cache = tmp_path / "d.json"
    client(registry, root, cache).refresh()
    cache.write_bytes(cache.read_bytes().replace(b'"payloadType"', b'"payloadtype"'))
    registry.down = True
    fresh = client(registry, root, cache)
    assert fresh.version == 0
