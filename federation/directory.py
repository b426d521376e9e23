"""The signed directory: who is in the federation, verified against the registry root key.

`sign_directory` is what the registry does; `verify_directory` is what every node does with what
it fetched or cached: check the root signature over the bytes as received, refuse a version older
than the one it trusts (rollback) or the same version with other content, and refuse an expired
directory. A `TrustedDirectory` then answers the questions the flows ask: is this node active,
which keys may sign for it at a given time, which node serves a region.

Keys that ended or were revoked long ago are not in the live directory (it would otherwise grow
with every rotation): the registry serves them in a `KeyHistory`, signed by the same root, which a
node fetches when an old attestation names a key the directory no longer lists
(`verify_key_history`, then `TrustedDirectory.with_history`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.message import DecodeError

from certfed.v1 import common_pb2, directory_pb2
from federation.errors import (
    AmbiguousRouteError,
    DirectoryExpiredError,
    DirectoryRollbackError,
    DirectoryVerificationError,
    NodeNotActiveError,
    NodeSuspendedError,
    UnknownNodeError,
    UnservedRegionError,
)
from federation.regions import coverage
from federation.timestamps import to_datetime
from signing import dsse
from signing.errors import SigningError
from signing.keys import SigningKey, VerifyKey

CERTIFYING_ROLES = frozenset(
    {
        common_pb2.ROLE_RESIDENCE_AGENCY,
        common_pb2.ROLE_PARTNER_LIAISON,
        common_pb2.ROLE_OVERSEAS_POST,
    }
)
PAYING_ROLES = frozenset({common_pb2.ROLE_PAYING_OFFICE, common_pb2.ROLE_PARTNER_LIAISON})
NODE_ACTIVE = common_pb2.NODE_STATUS_ACTIVE
KEY_HISTORY_PAYLOAD_TYPE = "application/vnd.certfed.key-history.v1+protobuf"


def sign_directory(directory: directory_pb2.Directory, root_key: SigningKey) -> dsse.Envelope:
    return dsse.sign(
        directory.SerializeToString(deterministic=True), dsse.DIRECTORY_PAYLOAD_TYPE, root_key
    )


def sign_key_history(history: directory_pb2.KeyHistory, root_key: SigningKey) -> dsse.Envelope:
    return dsse.sign(
        history.SerializeToString(deterministic=True), KEY_HISTORY_PAYLOAD_TYPE, root_key
    )


def verify_key_history(
    envelope: dsse.Envelope, root_key: VerifyKey, federation_id: str
) -> dict[str, tuple[directory_pb2.NodeKey, ...]]:
    """The past keys of each node, from a KeyHistory signed by the root of `federation_id`."""
    try:
        verified = dsse.verify(envelope, {root_key.key_id: root_key}, KEY_HISTORY_PAYLOAD_TYPE)
    except SigningError as error:
        raise DirectoryVerificationError(
            f"the key history is not signed by the registry root key: {error}"
        ) from error
    history = directory_pb2.KeyHistory()
    try:
        history.ParseFromString(verified.payload)
    except DecodeError as error:
        raise DirectoryVerificationError("the signed key history payload does not parse") from error
    if history.federation_id != federation_id:
        raise DirectoryVerificationError(
            f"the key history is of federation {history.federation_id!r}, not {federation_id!r}"
        )
    return {node.node_id: tuple(node.signing_keys) for node in history.nodes}


@dataclass(frozen=True)
class TrustedDirectory:
    """A directory whose root signature, version and freshness have been checked, with the past
    keys of the verified key history when one was fetched."""

    envelope: dsse.Envelope
    directory: directory_pb2.Directory
    key_history: Mapping[str, Sequence[directory_pb2.NodeKey]] = field(default_factory=dict)

    def with_history(
        self, key_history: Mapping[str, Sequence[directory_pb2.NodeKey]]
    ) -> TrustedDirectory:
        return dataclasses.replace(self, key_history=key_history)

    def listed_keys(self, node_id: str) -> list[directory_pb2.NodeKey]:
        """The node's keys in the live directory, then those only the key history holds."""
        live = list(self.node(node_id).signing_keys)
        known = {key.key_id for key in live}
        return live + [key for key in self.key_history.get(node_id, ()) if key.key_id not in known]

    @property
    def version(self) -> int:
        return int(self.directory.version)

    @property
    def expires_at(self) -> datetime:
        return to_datetime(self.directory.expires_at)

    @property
    def issued_at(self) -> datetime:
        return to_datetime(self.directory.issued_at)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def find(self, node_id: str) -> directory_pb2.DirectoryNode | None:
        for node in self.directory.nodes:
            if node.node_id == node_id:
                return node
        return None

    def node(self, node_id: str) -> directory_pb2.DirectoryNode:
        found = self.find(node_id)
        if found is None:
            raise UnknownNodeError(
                f"node {node_id!r} is not in federation directory version {self.version}"
            )
        return found

    def active_node(self, node_id: str) -> directory_pb2.DirectoryNode:
        node = self.node(node_id)
        if node.status != common_pb2.NODE_STATUS_ACTIVE:
            state = common_pb2.NodeStatus.Name(node.status).removeprefix("NODE_STATUS_").lower()
            reason = f" ({node.status_reason})" if node.status_reason else ""
            if node.status == common_pb2.NODE_STATUS_SUSPENDED:
                raise NodeSuspendedError(f"node {node_id!r} is {state}{reason}")
            raise NodeNotActiveError(f"node {node_id!r} is {state}{reason}")
        return node

    def is_suspended(self, node_id: str) -> bool:
        node = self.find(node_id)
        return node is not None and node.status == common_pb2.NODE_STATUS_SUSPENDED

    def signing_keys(self, node_id: str, at: datetime) -> Mapping[str, VerifyKey]:
        """The keys that could sign for `node_id` at time `at`: inside their window, not revoked."""
        keys: dict[str, VerifyKey] = {}
        for key in self.listed_keys(node_id):
            if key.HasField("valid_from") and at < to_datetime(key.valid_from):
                continue
            if key.HasField("valid_until") and at >= to_datetime(key.valid_until):
                continue
            if key.HasField("revoked_at") and at >= to_datetime(key.revoked_at):
                continue
            keys[key.key_id] = VerifyKey.from_raw(key.public_key)
        return keys

    def route(
        self, region: str, routing: Mapping[str, str] | None = None
    ) -> directory_pb2.DirectoryNode:
        """The active certifying node that serves `region`: the one the office's `routing`
        (region code -> node id, the most specific code covering `region` applies) names, or
        else the one node that serves it most specifically. Several equally specific nodes and
        no routing entry is AmbiguousRouteError: who gets a region's requests is configured,
        never guessed (a newcomer must not win by its node id)."""
        candidates: list[tuple[int, directory_pb2.DirectoryNode]] = []
        for node in self.directory.nodes:
            if not CERTIFYING_ROLES.intersection(node.roles):
                continue
            score = max((coverage(code, region) for code in node.region_codes), default=0)
            if score > 0:
                candidates.append((score, node))
        configured = _configured_node(routing or {}, region)
        if configured is not None:
            return self._configured_route(configured, region, candidates)
        active = [(s, node) for s, node in candidates if node.status == NODE_ACTIVE]
        if not active:
            if candidates:
                inactive = sorted(node.node_id for _, node in candidates)
                raise NodeNotActiveError(
                    f"region {region} is served only by {', '.join(inactive)}, "
                    "which is not active in the federation; ask the registry administrator"
                )
            raise UnservedRegionError(
                f"no node in the federation certifies residents of region {region}; "
                "check the residence region code or ask the registry administrator"
            )
        best = max(score for score, _ in active)
        chosen = [node for score, node in active if score == best]
        if len(chosen) > 1:
            names = ", ".join(sorted(node.node_id for node in chosen))
            raise AmbiguousRouteError(
                f"region {region} is served by several nodes ({names}); name the one this "
                f'office sends its requests to under [routing] in node.toml ({region} = "NODE")'
            )
        return chosen[0]

    def _configured_route(
        self,
        node_id: str,
        region: str,
        candidates: list[tuple[int, directory_pb2.DirectoryNode]],
    ) -> directory_pb2.DirectoryNode:
        for _, node in candidates:
            if node.node_id == node_id:
                return self.active_node(node_id)
        raise UnservedRegionError(
            f"node.toml [routing] sends region {region} to node {node_id!r}, which does not "
            f"certify residents of {region} in federation directory version {self.version}; "
            "correct the routing entry"
        )


def _configured_node(routing: Mapping[str, str], region: str) -> str | None:
    """The node id of the most specific routing entry covering `region`, if any."""
    best = 0
    chosen: str | None = None
    for code, node_id in routing.items():
        score = coverage(code, region)
        if score > best:
            best, chosen = score, node_id
    return chosen


def verify_directory(
    envelope: dsse.Envelope,
    root_key: VerifyKey,
    *,
    now: datetime,
    trusted: TrustedDirectory | None = None,
    allow_expired: bool = False,
) -> TrustedDirectory:
    """Check a directory envelope against the root key and what is already trusted."""
    try:
        verified = dsse.verify(envelope, {root_key.key_id: root_key}, dsse.DIRECTORY_PAYLOAD_TYPE)
    except SigningError as error:
        raise DirectoryVerificationError(
            f"the directory is not signed by the configured registry root key: {error}"
        ) from error
    directory = directory_pb2.Directory()
    try:
        directory.ParseFromString(verified.payload)
    except DecodeError as error:
        raise DirectoryVerificationError("the signed directory payload does not parse") from error
    candidate = TrustedDirectory(envelope, directory)
    if trusted is not None:
        if directory.federation_id != trusted.directory.federation_id:
            raise DirectoryVerificationError(
                f"the directory is of federation {directory.federation_id!r}, not "
                f"{trusted.directory.federation_id!r}; refusing it"
            )
        if candidate.version < trusted.version:
            raise DirectoryRollbackError(
                f"directory version {candidate.version} is older than the trusted version "
                f"{trusted.version}; refusing a rollback"
            )
        if candidate.version == trusted.version and envelope.payload != trusted.envelope.payload:
            raise DirectoryRollbackError(
                f"two different directories claim version {candidate.version}; refusing both "
                "the new one and any change until the registry publishes a higher version"
            )
    if not allow_expired and candidate.is_expired(now):
        raise DirectoryExpiredError(
            f"the federation directory (version {candidate.version}) expired at "
            f"{candidate.expires_at.isoformat()}; the registry has not published a fresh one"
        )
    return candidate
