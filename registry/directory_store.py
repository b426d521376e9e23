"""Storage of published directory versions, and publishing a new one.

Promises: the only code that writes `directory_version`. `publish` builds a Directory from every
node that is not pending (active, suspended and revoked alike, so that nodes learn of a
suspension or revocation), numbers it one above the latest version, signs it with the root key
and stores the envelope JSON exactly as signed; versions only ever grow, also when several
registry processes share one PostgreSQL database. `latest` returns what GetDirectory serves.

The directory must not grow with time: keys that ended or were revoked before the history cut-off
are left out of it (`key_history` signs them all, for old attestations), a directory larger than
`max_bytes` is refused with DirectoryTooLargeError before anything is stored, and `prune` deletes
versions past the retention window while always keeping the latest, from which the next version
number follows (nodes refuse any version lower than the highest they saw).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from certfed.v1 import common_pb2, directory_pb2
from federation.directory import sign_directory, sign_key_history
from federation.errors import PreconditionError
from federation.roles import role_values
from federation.timestamps import to_timestamp
from registry import nodes_store
from registry.db import advisory_lock
from registry.tables import DirectoryVersion, NodeKey, NodeState
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


class DirectoryTooLargeError(PreconditionError):
    """The change would make the signed directory larger than `max_directory_bytes`."""


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
    entry.signing_keys.extend(_node_key(key) for key in published.signing_keys)
    return entry


def _node_key(key: NodeKey) -> directory_pb2.NodeKey:
    node_key = directory_pb2.NodeKey(
        key_id=key.key_id, public_key=key.public_key, valid_from=to_timestamp(key.valid_from)
    )
    if key.valid_until is not None:
        node_key.valid_until.CopyFrom(to_timestamp(key.valid_until))
    if key.revoked_at is not None:
        node_key.revoked_at.CopyFrom(to_timestamp(key.revoked_at))
        node_key.revocation_reason = key.revocation_reason
    return node_key


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
    max_bytes: int,
    key_history_after: timedelta,
) -> PublishedDirectory:
    """Sign and store the next directory version, built from the nodes as this session sees them;
    DirectoryTooLargeError (nothing stored) when its envelope would exceed `max_bytes`."""
    advisory_lock(session, DIRECTORY_LOCK_KEY)
    version = latest_version(session) + 1
    expires_at = now + lifetime
    directory = directory_pb2.Directory(
        federation_id=federation_id,
        version=version,
        issued_at=to_timestamp(now),
        expires_at=to_timestamp(expires_at),
        nodes=[
            _entry(published)
            for published in nodes_store.published_nodes(
                session, now, keys_ended_before=now - key_history_after
            )
        ],
    )
    envelope = sign_directory(directory, root_key)
    size = len(envelope.to_json())
    if size > max_bytes:
        raise DirectoryTooLargeError(
            f"the change would make the federation directory {size} bytes, more than the limit "
            f"of {max_bytes} (max_directory_bytes); it was not made. Ask the registry "
            "administrator to review the nodes' keys and certificates"
        )
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


def prune(session: Session, *, older_than: datetime) -> int:
    """Delete the versions issued before `older_than`, never the latest; returns how many."""
    newest = latest_version(session)
    due = (
        col(DirectoryVersion.issued_at) < older_than,
        col(DirectoryVersion.version) < newest,
    )
    count = session.exec(select(sa.func.count()).select_from(DirectoryVersion).where(*due)).one()
    if count:
        session.execute(sa.delete(DirectoryVersion).where(*due))
    return int(count)


def key_history(
    session: Session, *, federation_id: str, root_key: SigningKey, node_id: str, now: datetime
) -> dsse.Envelope:
    """Every signing key of the published nodes (or of `node_id`), signed by the root key."""
    history = directory_pb2.KeyHistory(federation_id=federation_id, issued_at=to_timestamp(now))
    for owner, keys in nodes_store.key_history(session, node_id).items():
        history.nodes.add(node_id=owner, signing_keys=[_node_key(key) for key in keys])
    return sign_key_history(history, root_key)
