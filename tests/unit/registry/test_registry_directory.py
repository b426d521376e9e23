"""The signed directory as nodes verify it, and routing a region to its most specific node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certfed.v1 import common_pb2, directory_pb2
from federation.directory import TrustedDirectory, sign_directory, verify_directory
from federation.errors import (
    AmbiguousRouteError,
    DirectoryExpiredError,
    DirectoryRollbackError,
    DirectoryVerificationError,
    InvalidInputError,
    NodeNotActiveError,
    UnservedRegionError,
)
from federation.regions import validate_region_code
from federation.timestamps import to_timestamp
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ROOT = SigningKey.generate()

AGENCY = common_pb2.ROLE_RESIDENCE_AGENCY
PAYING = common_pb2.ROLE_PAYING_OFFICE
LIAISON = common_pb2.ROLE_PARTNER_LIAISON


def _node(
    node_id: str,
    regions: list[str],
    roles: list[common_pb2.Role.ValueType] | None = None,
    status: common_pb2.NodeStatus.ValueType = common_pb2.NODE_STATUS_ACTIVE,
) -> directory_pb2.DirectoryNode:
    return directory_pb2.DirectoryNode(
        node_id=node_id, region_codes=regions, roles=roles or [AGENCY], status=status
    )


def _directory(
    version: int,
    nodes: list[directory_pb2.DirectoryNode] | None = None,
    *,
    issued: datetime = NOW,
    lifetime: timedelta = timedelta(days=7),
    federation_id: str = "test",
) -> directory_pb2.Directory:
    return directory_pb2.Directory(
        federation_id=federation_id,
        version=version,
        issued_at=to_timestamp(issued),
        expires_at=to_timestamp(issued + lifetime),
        nodes=nodes or [],
    )


def _trusted(directory: directory_pb2.Directory) -> TrustedDirectory:
    return verify_directory(sign_directory(directory, ROOT), ROOT.public_key, now=NOW)


def test_signed_directory_verifies_against_the_root_key() -> None:
    trusted = _trusted(_directory(3, [_node("foshan", ["440600"])]))
    assert trusted.version == 3
    assert trusted.active_node("foshan").region_codes == ["440600"]
    assert trusted.expires_at == NOW + timedelta(days=7)


def test_directory_signed_by_another_key_is_refused() -> None:
    envelope = sign_directory(_directory(1), SigningKey.generate())
    with pytest.raises(DirectoryVerificationError):
        verify_directory(envelope, ROOT.public_key, now=NOW)


def test_directory_with_altered_payload_is_refused() -> None:
    envelope = sign_directory(_directory(1), ROOT)
    altered = dsse.Envelope(
        _directory(2).SerializeToString(), envelope.payload_type, envelope.signatures
    )
    with pytest.raises(DirectoryVerificationError):
        verify_directory(altered, ROOT.public_key, now=NOW)


def test_lower_version_than_the_trusted_one_is_refused_as_rollback() -> None:
    trusted = _trusted(_directory(5))
    with pytest.raises(DirectoryRollbackError):
        verify_directory(
            sign_directory(_directory(4), ROOT), ROOT.public_key, now=NOW, trusted=trusted
        )


def test_same_version_with_other_content_is_refused() -> None:
    trusted = _trusted(_directory(5))
    other = _directory(5, [_node("foshan", ["440600"])])
    with pytest.raises(DirectoryRollbackError, match="two different directories"):
        verify_directory(sign_directory(other, ROOT), ROOT.public_key, now=NOW, trusted=trusted)


def test_same_version_with_same_content_is_accepted() -> None:
    envelope = sign_directory(_directory(5), ROOT)
    trusted = verify_directory(envelope, ROOT.public_key, now=NOW)
    assert verify_directory(envelope, ROOT.public_key, now=NOW, trusted=trusted).version == 5


def test_expired_directory_is_refused_unless_explicitly_allowed() -> None:
    envelope = sign_directory(_directory(1, lifetime=timedelta(hours=1)), ROOT)
    later = NOW + timedelta(hours=1)
    with pytest.raises(DirectoryExpiredError):
        verify_directory(envelope, ROOT.public_key, now=later)
    assert verify_directory(envelope, ROOT.public_key, now=later, allow_expired=True).version == 1


def test_route_prefers_the_prefecture_node_over_the_province_node() -> None:
    trusted = _trusted(
        _directory(
            1,
            [
                _node("guangdong", ["440000"]),
                _node("foshan", ["440600"]),
                _node("guangzhou", ["440100"]),
            ],
        )
    )
    assert trusted.route("440604").node_id == "foshan"
    assert trusted.route("440600").node_id == "foshan"
    assert trusted.route("440300").node_id == "guangdong"


def test_route_to_hong_kong_and_macau_is_exact() -> None:
    trusted = _trusted(
        _directory(
            1,
            [
                _node("guangdong", ["440000"]),
                _node("macau-desk", ["MO"], [LIAISON]),
                _node("hk-desk", ["HK"], [LIAISON]),
            ],
        )
    )
    assert trusted.route("MO").node_id == "macau-desk"
    assert trusted.route("HK").node_id == "hk-desk"
    with pytest.raises(UnservedRegionError):
        trusted.route("810000")


def test_route_skips_inactive_and_non_certifying_nodes() -> None:
    trusted = _trusted(
        _directory(
            1,
            [
                _node("foshan", ["440600"], status=common_pb2.NODE_STATUS_SUSPENDED),
                _node("foshan-paying", ["440600"], [PAYING]),
                _node("guangdong", ["440000"]),
            ],
        )
    )
    assert trusted.route("440604").node_id == "guangdong"


def test_route_to_a_region_served_only_by_a_suspended_node_says_so() -> None:
    trusted = _trusted(
        _directory(1, [_node("qingdao", ["370200"], status=common_pb2.NODE_STATUS_SUSPENDED)])
    )
    with pytest.raises(NodeNotActiveError, match="qingdao"):
        trusted.route("370202")


def test_route_among_equal_nodes_follows_configuration_never_the_node_ids() -> None:
    trusted = _trusted(
        _directory(1, [_node("b-office", ["140200"]), _node("a-office", ["140200"])])
    )
    with pytest.raises(AmbiguousRouteError, match=r"a-office, b-office.*\[routing\]"):
        trusted.route("140200")
    assert trusted.route("140200", {"140200": "b-office"}).node_id == "b-office"
    assert trusted.route("140203", {"140000": "b-office"}).node_id == "b-office"


def test_configured_route_overrides_a_more_specific_newcomer() -> None:
    trusted = _trusted(
        _directory(1, [_node("shanxi", ["140000"]), _node("a-newcomer", ["140200"])])
    )
    assert trusted.route("140200").node_id == "a-newcomer"
    assert trusted.route("140200", {"140000": "shanxi"}).node_id == "shanxi"
    with pytest.raises(UnservedRegionError, match="routing"):
        trusted.route("140200", {"140200": "foshan"})


@pytest.mark.parametrize("code", ["440600", "620102", "370200", "140200", "110000", "HK", "MO"])
def test_valid_region_codes_are_accepted(code: str) -> None:
    assert validate_region_code(code) == code


@pytest.mark.parametrize("code", ["", "4406", "4406000", "44060X", "990000", "hk", "TW", " 44060"])
def test_invalid_region_codes_are_refused_naming_the_field(code: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_region_code(code, "region_codes[0]")
    assert refused.value.field == "region_codes[0]"
