"""The registry's domain operations: each one a single transaction over the stores.

Promises: every operation either commits all of its effects together (a status change, the
directory version that announces it and the audit record naming who did it) or none. The rules
of a node's life are here and only here: an application is recorded as pending, and the same
application again changes nothing; only a pending node can be approved; a suspended node can be
reinstated; revocation is final. Approval issues the node's TLS certificate, records its signing
key and publishes a new directory; every status change publishes one too. Callers (the gRPC
servicer, the server's republisher) validate request fields first and map results to protos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from cryptography import x509
from sqlalchemy.engine import Engine
from sqlmodel import Session

from registry import audit_store, directory_store, locators_store, nodes_store
from registry.applications import Application, validate_application
from registry.ca import FederationCA
from registry.config import RegistryConfig, RegistryPaths
from registry.db import transaction
from registry.errors import (
    AlreadyExistsError,
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from registry.limits import Limits
from registry.tables import Node, NodeState
from registry.transport import PeerIdentity, PeerKind
from registry.utc import utc_now
from signing import dsse, sealing
from signing.keys import SigningKey, VerifyKey, read_private_file
from signing.locator import LOCATOR_KEY_SIZE

log = structlog.get_logger("certfed.registry")


@dataclass(frozen=True)
class RegistryKeys:
    """The registry's secrets: root signing key, federation CA and federation locator key."""

    root_key: SigningKey
    ca: FederationCA
    locator_key: bytes

    @classmethod
    def load(cls, paths: RegistryPaths) -> RegistryKeys:
        for path in (paths.root_key, paths.ca_key, paths.ca_certificate, paths.locator_key):
            if not path.exists():
                raise PreconditionError(
                    f"{path} is missing; create the registry's keys with `certfed registry init`"
                )
        locator_key = read_private_file(paths.locator_key)
        if len(locator_key) != LOCATOR_KEY_SIZE:
            raise PreconditionError(
                f"{paths.locator_key} holds {len(locator_key)} bytes, not {LOCATOR_KEY_SIZE}"
            )
        return cls(
            root_key=SigningKey.load(paths.root_key),
            ca=FederationCA.load(paths.ca_certificate, paths.ca_key),
            locator_key=locator_key,
        )


@dataclass(frozen=True)
class Enrolment:
    """Where a node's application stands; certificate and sealed key only once it is active."""

    node_id: str
    status: NodeState
    status_reason: str
    certificate_pem: bytes
    ca_certificate_pem: bytes
    sealed_locator_key: bytes


@dataclass(frozen=True)
class StatusChange:
    target: NodeState
    reason: str
    effective_at: datetime | None


# What SetNodeStatus may do to a node in each state; anything else is refused with the reason.
_TRANSITIONS: dict[NodeState, dict[NodeState, str]] = {
    NodeState.ACTIVE: {
        NodeState.PENDING: "a pending node is activated by approving its enrolment",
        NodeState.ACTIVE: "the node is already active",
        NodeState.REVOKED: "revocation is final; the node must enrol again under a new node id",
    },
    NodeState.SUSPENDED: {
        NodeState.PENDING: "a pending node cannot be suspended; approve or revoke it",
        NodeState.SUSPENDED: "the node is already suspended",
        NodeState.REVOKED: "revocation is final",
    },
    NodeState.REVOKED: {
        NodeState.REVOKED: "the node is already revoked",
    },
}
_ACTIONS = {
    NodeState.ACTIVE: "reinstate",
    NodeState.SUSPENDED: "suspend",
    NodeState.REVOKED: "revoke",
}


class Registry:
    """The registry's state, behind one engine, with the keys it signs and issues with."""

    def __init__(
        self,
        engine: Engine,
        keys: RegistryKeys,
        config: RegistryConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._config = config
        self._clock = clock

    @property
    def limits(self) -> Limits:
        return self._config.limits

    @property
    def ca(self) -> FederationCA:
        return self._keys.ca

    def _lifetime(self) -> timedelta:
        return timedelta(seconds=self._config.directory_lifetime_s)

    def _publish(self, session: Session, now: datetime) -> int:
        published = directory_store.publish(
            session,
            federation_id=self._config.federation_id,
            root_key=self._keys.root_key,
            lifetime=self._lifetime(),
            now=now,
        )
        return published.version

    # Enrolment.

    def enrol(self, envelope: dsse.Envelope) -> tuple[str, NodeState]:
        """Record a verified application as pending; the same application again is a no-op."""
        now = self._clock()
        application = validate_application(envelope, self.limits, now)
        try:
            return self._enrol(application, envelope, now)
        except sa.exc.IntegrityError:
            # Another replica recorded the same node id between our read and our insert.
            return self._enrol(application, envelope, now)

    def _enrol(
        self, application: Application, envelope: dsse.Envelope, now: datetime
    ) -> tuple[str, NodeState]:
        with transaction(self._engine) as session:
            existing = nodes_store.get(session, application.node_id)
            if existing is not None:
                if existing.application_digest != application.digest:
                    raise AlreadyExistsError(
                        f"node id {application.node_id!r} already has an application with "
                        f"other keys or details (status {existing.status}); choose another "
                        "node id, or ask the registry administrator"
                    )
                return existing.node_id, NodeState(existing.status)
            node = nodes_store.add_application(session, application, envelope.to_json(), now)
            audit_store.record(
                session,
                actor=f"node:{node.node_id}",
                action="enrol",
                node_id=node.node_id,
                at=now,
            )
        log.info("registry.enrolment_received", node_id=node.node_id)
        return node.node_id, NodeState.PENDING

    def get_enrolment(self, node_id: str) -> Enrolment:
        with transaction(self._engine) as session:
            node = nodes_store.require(session, node_id)
            state = NodeState(node.status)
            certificate_pem = b""
            sealed = b""
            if state is NodeState.ACTIVE:
                certificate = nodes_store.current_certificate(session, node_id)
                if certificate is None:
                    raise PreconditionError(
                        f"node {node_id!r} is active but has no certificate; "
                        "ask the registry administrator"
                    )
                certificate_pem = certificate.certificate_pem
                sealed = sealing.seal(
                    self._keys.locator_key,
                    node.hpke_public_key,
                    sealing.locator_key_info(node_id),
                )
            return Enrolment(
                node_id=node.node_id,
                status=state,
                status_reason=node.status_reason,
                certificate_pem=certificate_pem,
                ca_certificate_pem=self._keys.ca.certificate_pem,
                sealed_locator_key=sealed,
            )

    # Administration.

    def approve(self, node_id: str, admin: str) -> int:
        """Activate a pending node: certificate, signing key, new directory, audit record."""
        now = self._clock()
        with transaction(self._engine) as session:
            node = nodes_store.require(session, node_id)
            if node.status != NodeState.PENDING:
                raise PreconditionError(
                    f"node {node_id!r} is {node.status}, not pending; only a pending "
                    "application can be approved"
                )
            key = VerifyKey.from_raw(node.signing_public_key)
            owner = nodes_store.key_owner(session, key.key_id)
            if owner is not None:
                raise PreconditionError(
                    f"node {node_id!r} applied with a signing key that node {owner!r} already "
                    "holds; the applicant must create new keys and enrol again"
                )
            certificate_pem = self._keys.ca.issue(
                node.tls_csr_pem,
                PeerKind.NODE,
                node_id,
                timedelta(days=self._config.node_certificate_days),
                now=now,
            )
            nodes_store.record_certificate(session, node_id, certificate_pem, now)
            nodes_store.add_signing_key(session, node_id, key.key_id, key.raw, now)
            nodes_store.set_status(session, node, NodeState.ACTIVE, "", now)
            version = self._publish(session, now)
            audit_store.record(
                session,
                actor=f"admin:{admin}",
                action="approve",
                node_id=node_id,
                at=now,
                directory_version=version,
            )
        log.info("registry.node_approved", node_id=node_id, admin=admin, directory=version)
        return version

    def set_status(self, node_id: str, change: StatusChange, admin: str) -> int:
        now = self._clock()
        effective_at = change.effective_at or now
        if effective_at > now + timedelta(seconds=self.limits.max_clock_skew_s):
            raise InvalidInputError(
                "effective_at",
                "is in the future; a status change takes effect when it is made, so make it "
                "then (a past time is allowed, e.g. when a key was compromised earlier)",
            )
        if change.target is not NodeState.ACTIVE and not change.reason.strip():
            raise InvalidInputError("reason", "say why the node is suspended or revoked")
        with transaction(self._engine) as session:
            node = nodes_store.require(session, node_id)
            current = NodeState(node.status)
            refusal = _TRANSITIONS[change.target].get(current)
            if refusal is not None:
                raise PreconditionError(f"node {node_id!r} is {current}: {refusal}")
            nodes_store.set_status(session, node, change.target, change.reason, effective_at)
            if change.target is NodeState.REVOKED:
                nodes_store.revoke_signing_keys(session, node_id, effective_at)
            version = self._publish(session, now)
            audit_store.record(
                session,
                actor=f"admin:{admin}",
                action=_ACTIONS[change.target],
                node_id=node_id,
                at=now,
                detail=change.reason,
                effective_at=effective_at,
                directory_version=version,
            )
        log.info(
            "registry.node_status_changed",
            node_id=node_id,
            admin=admin,
            status=str(change.target),
            directory=version,
        )
        return version

    def list_nodes(self) -> list[Node]:
        with transaction(self._engine) as session:
            return nodes_store.list_nodes(session)

    # Directory.

    def directory(self, known_version: int) -> directory_store.PublishedDirectory | None:
        """The latest directory, or None when the caller already holds it."""
        with transaction(self._engine) as session:
            latest = directory_store.latest(session)
        if latest is None:
            raise PreconditionError("the registry has not published a directory yet")
        return None if latest.version == known_version else latest

    def ensure_directory(self) -> int:
        """Publish the first directory if there is none; returns the latest version."""
        with transaction(self._engine) as session:
            latest = directory_store.latest_version(session)
            if latest:
                return latest
            return self._publish(session, self._clock())

    def republish_if_due(self) -> int | None:
        """Publish a fresh version when less than half the latest one's lifetime is left."""
        now = self._clock()
        with transaction(self._engine) as session:
            latest = directory_store.latest(session)
            if latest is not None:
                half = (latest.expires_at - latest.issued_at) / 2
                if latest.expires_at - now >= half:
                    return None
            version = self._publish(session, now)
        log.info("registry.directory_republished", directory=version)
        return version

    # Locators.

    def publish_locators(
        self, node_id: str, locators: Sequence[bytes]
    ) -> locators_store.PublishOutcome:
        now = self._clock()
        with transaction(self._engine) as session:
            outcome = locators_store.publish(session, node_id, locators, now)
        if outcome.duplicates:
            log.info("registry.duplicates_detected", node_id=node_id, count=len(outcome.duplicates))
        return outcome

    def withdraw_locators(self, node_id: str, locators: Sequence[bytes]) -> int:
        with transaction(self._engine) as session:
            return locators_store.withdraw(session, node_id, locators)

    def locate(self, locator: bytes) -> list[str]:
        with transaction(self._engine) as session:
            return locators_store.locate(session, locator)

    def list_duplicates(self, node_id: str) -> list[locators_store.Duplicate]:
        with transaction(self._engine) as session:
            return locators_store.duplicates(session, node_id)

    # Callers.

    def is_federation_certificate(self, certificate: x509.Certificate) -> bool:
        return self._keys.ca.issued(certificate, now=self._clock())

    def caller_node(self, identity: PeerIdentity) -> Node:
        """The node a verified certificate speaks for, if it is that node's current certificate.

        Raises UnauthenticatedError for an unknown node or a certificate the registry did not
        issue to it (or has superseded), PermissionDeniedError when the node is not active.
        """
        with transaction(self._engine) as session:
            node = nodes_store.get(session, identity.name)
            current = {
                certificate.sha256
                for certificate in nodes_store.current_certificates(session, identity.name)
            }
        if node is None or identity.certificate_sha256 not in current:
            raise UnauthenticatedError(
                f"the certificate presented for node {identity.name!r} is not one this "
                "registry issued to it (unknown node, or a superseded certificate)"
            )
        state = NodeState(node.status)
        if state is NodeState.SUSPENDED:
            raise NodeNotActivePermissionError(
                f"node {node.node_id} is suspended: {node.status_reason}"
            )
        if state is not NodeState.ACTIVE:
            raise NodeNotActivePermissionError(f"node {node.node_id} is {state}")
        return node


class NodeNotActivePermissionError(PermissionDeniedError):
    """A suspended or revoked node called an RPC that needs an active node."""


def load_registry(config: RegistryConfig, engine: Engine) -> Registry:
    return Registry(engine, RegistryKeys.load(config.paths), config)
