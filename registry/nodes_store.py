"""Storage of the node aggregate: a node's application and status, signing keys and certificates.

Promises: the only code that writes the `node`, `node_key` and `node_certificate` tables. Every
function works inside the caller's session (one transaction decided by the caller); nothing here
commits. A node has at most one current TLS certificate: recording a new one supersedes the old.
Status rules (what may follow what) are the caller's, in `registry.operations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlmodel import Session, col, select

from registry.applications import Application
from registry.errors import UnknownNodeError
from registry.tables import Node, NodeCertificate, NodeKey, NodeState
from registry.transport import certificate_sha256


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


def revoke_signing_keys(session: Session, node_id: str, revoked_at: datetime) -> None:
    """Mark every key of the node not yet revoked as revoked from `revoked_at` on."""
    keys = session.exec(
        select(NodeKey).where(NodeKey.node_id == node_id, col(NodeKey.revoked_at).is_(None))
    ).all()
    for key in keys:
        key.revoked_at = revoked_at
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
    session: Session, node_id: str, certificate_pem: bytes, now: datetime
) -> NodeCertificate:
    """Store a newly issued certificate as the node's current one, superseding any other."""
    for previous in current_certificates(session, node_id):
        previous.superseded_at = now
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


def current_certificates(session: Session, node_id: str) -> list[NodeCertificate]:
    return list(
        session.exec(
            select(NodeCertificate)
            .where(
                NodeCertificate.node_id == node_id,
                col(NodeCertificate.superseded_at).is_(None),
            )
            .order_by(col(NodeCertificate.issued_at).desc())
        ).all()
    )


def current_certificate(session: Session, node_id: str) -> NodeCertificate | None:
    certificates = current_certificates(session, node_id)
    return certificates[0] if certificates else None


def list_nodes(session: Session) -> list[Node]:
    return list(session.exec(select(Node).order_by(col(Node.node_id))).all())


@dataclass(frozen=True)
class PublishedNode:
    """A node as the directory shows it, with its keys and current certificates."""

    node: Node
    signing_keys: list[NodeKey]
    certificates: list[NodeCertificate]


def published_nodes(session: Session) -> list[PublishedNode]:
    """Every node that is not pending (active, suspended and revoked), ordered by node id."""
    nodes = session.exec(
        select(Node).where(Node.status != NodeState.PENDING).order_by(col(Node.node_id))
    ).all()
    keys: dict[str, list[NodeKey]] = {node.node_id: [] for node in nodes}
    certificates: dict[str, list[NodeCertificate]] = {node.node_id: [] for node in nodes}
    for key in session.exec(
        select(NodeKey).order_by(col(NodeKey.valid_from), col(NodeKey.key_id))
    ).all():
        keys.get(key.node_id, []).append(key)
    for certificate in session.exec(
        select(NodeCertificate)
        .where(col(NodeCertificate.superseded_at).is_(None))
        .order_by(col(NodeCertificate.issued_at), col(NodeCertificate.sha256))
    ).all():
        certificates.get(certificate.node_id, []).append(certificate)
    return [PublishedNode(node, keys[node.node_id], certificates[node.node_id]) for node in nodes]
