"""Storage of the node aggregate: a node's application and status, signing keys and certificates.

Promises: the only code that writes the `node`, `node_key` and `node_certificate` tables. Every
function works inside the caller's session (one transaction decided by the caller); nothing here
commits. A node has one newest TLS certificate; recording a new one supersedes the others, at
once (re-issue) or at the end of an overlap window (renewal), during which both are accepted;
any older one is superseded at once, so a node never has more than two accepted certificates.
Status rules (what may follow what) are the caller's, in `registry.operations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from sqlalchemy import ColumnElement, Connection, bindparam, exists, or_
from sqlalchemy import select as sql_select
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import Session, col, select

from federation.errors import UnknownNodeError
from federation.transport import certificate_sha256
from registry.applications import Application
from registry.tables import Node, NodeCertificate, NodeKey, NodeState


def get(session: Session, node_id: str) -> Node | None:
    return session.get(Node, node_id)


def require(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise UnknownNodeError(f"no node {node_id!r} has applied to this registry")
    return node


def add_application(
    session: Session, application: Application, envelope_json: bytes, now: datetime
) -> Node:
    node = Node(
        node_id=application.node_id,
        display_name=application.display_name,
        region_codes=list(application.region_codes),
        roles=list(application.roles),
        endpoint=application.endpoint,
        signing_public_key=application.signing_public_key,
        hpke_public_key=application.hpke_public_key,
        tls_csr_pem=application.tls_csr_pem,
        application_digest=application.digest,
        application_envelope=envelope_json,
        applied_at=application.applied_at,
        received_at=now,
        status=NodeState.PENDING,
        status_reason="",
        status_changed_at=now,
    )
    session.add(node)
    session.flush()
    return node


def set_status(
    session: Session, node: Node, state: NodeState, reason: str, changed_at: datetime
) -> None:
    node.status = state
    node.status_reason = reason
    node.status_changed_at = changed_at
    session.add(node)
    session.flush()


def add_signing_key(
    session: Session, node_id: str, key_id: str, public_key: bytes, valid_from: datetime
) -> NodeKey:
    key = NodeKey(key_id=key_id, node_id=node_id, public_key=public_key, valid_from=valid_from)
    session.add(key)
    session.flush()
    return key


def key_owner(session: Session, key_id: str) -> str | None:
    """The node that holds signing key `key_id`, if any."""
    key = session.get(NodeKey, key_id)
    return key.node_id if key is not None else None


def revoke_signing_keys(
    session: Session, node_id: str, revoked_at: datetime, reason: str = ""
) -> None:
    """Mark every key of the node not yet revoked, and still able to sign at `revoked_at`, as
    revoked from then on (a key whose window ended before has nothing left to revoke)."""
    keys = session.exec(
        select(NodeKey).where(NodeKey.node_id == node_id, col(NodeKey.revoked_at).is_(None))
    ).all()
    for key in keys:
        if key.valid_until is None or key.valid_until > revoked_at:
            revoke_signing_key(session, key, revoked_at, reason)


def signing_key(session: Session, node_id: str, key_id: str) -> NodeKey:
    """The node's key `key_id`; UnknownNodeError naming both if the node holds no such key."""
    key = session.get(NodeKey, key_id)
    if key is None or key.node_id != node_id:
        raise UnknownNodeError(f"node {node_id!r} holds no signing key {key_id!r}")
    return key


def end_signing_key(session: Session, key: NodeKey, valid_until: datetime) -> None:
    """Let a key sign only before `valid_until` (never extends an earlier end)."""
    if key.valid_until is None or valid_until < key.valid_until:
        key.valid_until = valid_until
        session.add(key)
        session.flush()


def revoke_signing_key(session: Session, key: NodeKey, revoked_at: datetime, reason: str) -> None:
    key.revoked_at = revoked_at
    key.revocation_reason = reason
    session.add(key)
    session.flush()


def signing_keys(session: Session, node_id: str) -> list[NodeKey]:
    return list(
        session.exec(
            select(NodeKey)
            .where(NodeKey.node_id == node_id)
            .order_by(col(NodeKey.valid_from), col(NodeKey.key_id))
        ).all()
    )


def record_certificate(
    session: Session,
    node_id: str,
    certificate_pem: bytes,
    now: datetime,
    *,
    previous_until: datetime | None = None,
) -> NodeCertificate:
    """Store a newly issued certificate as the node's newest one, superseding the newest of the
    others at `previous_until` (a renewal's overlap window) or now, and any older one now."""
    for position, previous in enumerate(current_certificates(session, node_id, now)):
        until = (previous_until or now) if position == 0 else now
        if previous.superseded_at is None or until < previous.superseded_at:
            previous.superseded_at = until
            session.add(previous)
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    row = NodeCertificate(
        sha256=certificate_sha256(certificate),
        node_id=node_id,
        certificate_pem=certificate_pem,
        serial_number=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issued_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _accepted_at(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return or_(
        col(NodeCertificate.superseded_at).is_(None), col(NodeCertificate.superseded_at) > now
    )


class Caller(NamedTuple):
    """What authorising a call needs of the node behind a client certificate."""

    node_id: str
    roles: list[str]
    status: str
    status_reason: str


# One prepared SELECT per call: the node, if the certificate is one of its accepted ones.
_CALLER = sql_select(
    col(Node.node_id), col(Node.roles), col(Node.status), col(Node.status_reason)
).where(
    col(Node.node_id) == bindparam("node_id"),
    exists().where(
        col(NodeCertificate.node_id) == col(Node.node_id),
        col(NodeCertificate.sha256) == bindparam("sha256"),
        _accepted_at(bindparam("now")),
    ),
)


def caller(
    connection: Connection, node_id: str, certificate_sha256: str, now: datetime
) -> Caller | None:
    """The node `node_id` if the certificate `certificate_sha256` is one of its certificates
    still accepted at `now`; None for an unknown node or any other certificate."""
    row = connection.execute(
        _CALLER, {"node_id": node_id, "sha256": certificate_sha256, "now": now}
    ).one_or_none()
    return Caller(*row) if row is not None else None


def current_certificates(session: Session, node_id: str, now: datetime) -> list[NodeCertificate]:
    """The node's certificates still accepted at `now`, newest first."""
    return list(
        session.exec(
            select(NodeCertificate)
            .where(NodeCertificate.node_id == node_id, _accepted_at(now))
            .order_by(col(NodeCertificate.issued_at).desc())
        ).all()
    )


def current_certificate(session: Session, node_id: str, now: datetime) -> NodeCertificate | None:
    """The node's newest certificate (the one it is told to use), if any is accepted."""
    certificates = current_certificates(session, node_id, now)
    return certificates[0] if certificates else None


def end_overlapping_keys(session: Session, node_id: str, keep_key_id: str, now: datetime) -> None:
    """End now every key of the node still in its overlap window except `keep_key_id`: after a
    rotation only the new key and the one that signed the rotation may sign."""
    for key in signing_keys(session, node_id):
        if key.key_id != keep_key_id and key.valid_until is not None and key.valid_until > now:
            end_signing_key(session, key, now)


def overlap_ended(session: Session, since: datetime, now: datetime) -> bool:
    """Whether a certificate's overlap window ended in (since, now]: the directory lists it."""
    ended = session.exec(
        select(NodeCertificate.sha256)
        .where(
            col(NodeCertificate.superseded_at) > since,
            col(NodeCertificate.superseded_at) <= now,
        )
        .limit(1)
    ).first()
    return ended is not None


def list_nodes(session: Session) -> list[Node]:
    return list(session.exec(select(Node).order_by(col(Node.node_id))).all())


@dataclass(frozen=True)
class PublishedNode:
    """A node as the directory shows it, with its keys and current certificates."""

    node: Node
    signing_keys: list[NodeKey]
    certificates: list[NodeCertificate]


def _ended_before(key: NodeKey, moment: datetime) -> bool:
    """Whether the key's window ended before `moment` and it was never revoked. A revoked key
    stays listed: nodes review what it signed when they see the revocation, and only an
    administrator revokes, so members cannot grow the directory that way."""
    return key.revoked_at is None and key.valid_until is not None and key.valid_until < moment


def published_nodes(
    session: Session, now: datetime, *, keys_ended_before: datetime | None = None
) -> list[PublishedNode]:
    """Every node that is not pending (active, suspended and revoked), ordered by node id, with
    the certificates accepted at `now` and the keys that did not end before `keys_ended_before`
    (those live in the key history only)."""
    nodes = session.exec(
        select(Node).where(Node.status != NodeState.PENDING).order_by(col(Node.node_id))
    ).all()
    keys: dict[str, list[NodeKey]] = {node.node_id: [] for node in nodes}
    certificates: dict[str, list[NodeCertificate]] = {node.node_id: [] for node in nodes}
    for key in session.exec(
        select(NodeKey).order_by(col(NodeKey.valid_from), col(NodeKey.key_id))
    ).all():
        if keys_ended_before is None or not _ended_before(key, keys_ended_before):
            keys.get(key.node_id, []).append(key)
    for certificate in session.exec(
        select(NodeCertificate)
        .where(_accepted_at(now))
        .order_by(col(NodeCertificate.issued_at), col(NodeCertificate.sha256))
    ).all():
        certificates.get(certificate.node_id, []).append(certificate)
    return [PublishedNode(node, keys[node.node_id], certificates[node.node_id]) for node in nodes]


def key_history(session: Session, node_id: str = "") -> dict[str, list[NodeKey]]:
    """Every signing key of every published node (or of `node_id`), oldest first, by node."""
    query = (
        select(NodeKey)
        .join(Node, col(Node.node_id) == col(NodeKey.node_id))
        .where(Node.status != NodeState.PENDING)
        .order_by(col(NodeKey.node_id), col(NodeKey.valid_from), col(NodeKey.key_id))
    )
    if node_id:
        query = query.where(NodeKey.node_id == node_id)
    history: dict[str, list[NodeKey]] = {}
    for key in session.exec(query).all():
        history.setdefault(key.node_id, []).append(key)
    return history
