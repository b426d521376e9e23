"""Storage of published directory versions, and publishing a new one.

Promises: the only code that writes `directory_version`. `publish` builds a Directory from every
node that is not pending (active, suspended and revoked alike, so that nodes learn of a
suspension or revocation), numbers it one above the latest version, signs it with the root key
and stores the envelope JSON exactly as signed; versions only ever grow, also when several
registry processes share one PostgreSQL database. `latest` returns what GetDirectory serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from certfed.v1 import common_pb2, directory_pb2
from federation.directory import sign_directory
from federation.roles import role_values
from federation.timestamps import to_timestamp
from registry import nodes_store
from registry.db import advisory_lock
from registry.tables import DirectoryVersion, NodeState
from signing import dsse
from signing.keys import SigningKey

# pg_advisory_xact_lock key serialising directory publication ("certfed" + 1).
DIRECTORY_LOCK_KEY = 0x6365727466656401

STATUS_VALUES: dict[str, common_pb2.NodeStatus.ValueType] = {
    NodeState.PENDING: common_pb2.NODE_STATUS_PENDING,
    NodeState.ACTIVE: common_pb2.NODE_STATUS_ACTIVE,
    NodeState.SUSPENDED: common_pb2.NODE_STATUS_SUSPENDED,
    NodeState.REVOKED: common_pb2.NODE_STATUS_REVOKED,
}


@dataclass(frozen=True)
class PublishedDirectory:
    version: int
    envelope: dsse.Envelope
    issued_at: datetime
    expires_at: datetime


def _entry(published: nodes_store.PublishedNode) -> directory_pb2.DirectoryNode:
    node = published.node
    entry = directory_pb2.DirectoryNode(
        node_id=node.node_id,
        display_name=node.display_name,
        region_codes=list(node.region_codes),
        roles=role_values(node.roles),
        endpoint=node.endpoint,
        hpke_public_key=node.hpke_public_key,
        tls_certificate_sha256=[certificate.sha256 for certificate in published.certificates],
        status=STATUS_VALUES[NodeState(node.status)],
        status_changed_at=to_timestamp(node.status_changed_at),
        status_reason=node.status_reason,
    )
    for key in published.signing_keys:
        node_key = entry.signing_keys.add(
            key_id=key.key_id,
            public_key=key.public_key,
            valid_from=to_timestamp(key.valid_from),
        )
        if key.valid_until is not None:
            node_key.valid_until.CopyFrom(to_timestamp(key.valid_until))
        if key.revoked_at is not None:
            node_key.revoked_at.CopyFrom(to_timestamp(key.revoked_at))
            node_key.revocation_reason = key.revocation_reason
    return entry


def _from_row(row: DirectoryVersion) -> PublishedDirectory:
    return PublishedDirectory(
        version=row.version,
        envelope=dsse.Envelope.from_json(row.envelope_json, max_bytes=len(row.envelope_json)),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
    )


def latest_version(session: Session) -> int:
    """The newest published version, 0 when none was published yet."""
    value = session.exec(select(sa.func.max(col(DirectoryVersion.version)))).one()
    return int(value) if value is not None else 0


def latest(session: Session) -> PublishedDirectory | None:
    row = session.exec(
        select(DirectoryVersion).order_by(col(DirectoryVersion.version).desc()).limit(1)
    ).first()
    return _from_row(row) if row is not None else None


def publish(
    session: Session,
    *,
    federation_id: str,
    root_key: SigningKey,
    lifetime: timedelta,
    now: datetime,
) -> PublishedDirectory:
    """Sign and store the next directory version, built from the nodes as this session sees them."""
    advisory_lock(session, DIRECTORY_LOCK_KEY)
    version = latest_version(session) + 1
    expires_at = now + lifetime
    directory = directory_pb2.Directory(
        federation_id=federation_id,
        version=version,
        issued_at=to_timestamp(now),
        expires_at=to_timestamp(expires_at),
        nodes=[_entry(published) for published in nodes_store.published_nodes(session, now)],
    )
    envelope = sign_directory(directory, root_key)
    session.add(
        DirectoryVersion(
            version=version,
            envelope_json=envelope.to_json(),
            issued_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return PublishedDirectory(version, envelope, now, expires_at)
