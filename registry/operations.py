"""The registry's domain operations: each one a single transaction over the stores.

Promises: every operation either commits all of its effects together (a status change, the
directory version that announces it and the audit record naming who did it) or none. The rules
of a node's life are here and only here: an application is recorded as pending, and the same
application again changes nothing; only a pending node can be approved; a suspended node can be
reinstated; revocation is final. Approval issues the node's TLS certificate, records its signing
key and publishes a new directory; every status change publishes one too. So do the changes of
keys over time: a node rotating its signing key or renewing its certificate (the previous one
stays valid for an overlap window), an administrator retiring or revoking one key, and the
rotation of the registry's own root key. Callers (the gRPC servicer, the server's republisher)
validate request fields first and map results to protos.

The directory stays small: a node may rotate its signing key, and renew its certificate, at most
once per `key_change_interval_s` (RESOURCE_EXHAUSTED with the time to wait); a rotation ends the
overlap of any older key, so a node has at most two keys that can sign; a change that would make
the directory larger than `max_directory_bytes` is refused, and the refusal audited.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from cryptography import x509
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import directory_pb2
from federation import enrolment_query
from federation.database import reader
from federation.errors import (
    AlreadyExistsError,
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
    RateLimitedError,
    UnauthenticatedError,
)
from federation.key_rotation import validate_rotation
from federation.limits import Limits
from federation.root_chain import sign_root_statement
from federation.timestamps import to_timestamp
from federation.transport import PeerIdentity, PeerKind
from federation.witness_protocol import witness_signer
from registry import (
    audit_store,
    directory_store,
    locators_store,
    nodes_store,
    root_store,
)
from registry.admin_certificates import AdminCertificates
from registry.applications import Application, validate_application
from registry.approval import Approval, check_approval
from registry.ca import FederationCA
from registry.config import RegistryConfig, RegistryPaths
from registry.db import advisory_lock, transaction
from registry.directory_store import DirectoryTooLargeError
from registry.locator_oprf import Evaluation, LocatorEvaluator, load_locator_key
from registry.tables import Node, NodeKey, NodeState
from registry.utc import utc_now
from registry.witness import Witness
from signing import dsse
from signing.keys import SigningKey, VerifyKey
from signing.oprf import ServerKey

log = structlog.get_logger("certfed.registry")


@dataclass(frozen=True)
class RegistryKeys:
    """The registry's secrets: root key, federation CA, locator OPRF key, witness key."""

    root_key: SigningKey
    ca: FederationCA
    locator_key: ServerKey = field(repr=False)
    witness_key: SigningKey

    @classmethod
    def load(cls, paths: RegistryPaths) -> RegistryKeys:
        for path in (
            paths.root_key,
            paths.ca_key,
            paths.ca_certificate,
            paths.witness_key,
        ):
            if not path.exists():
                raise PreconditionError(
                    f"{path} is missing; create the registry's keys with `certfed registry init`"
                )
        return cls(
            root_key=SigningKey.load(paths.root_key),
            ca=FederationCA.load(paths.ca_certificate, paths.ca_key),
            locator_key=load_locator_key(paths),
            witness_key=SigningKey.load(paths.witness_key),
        )


@dataclass(frozen=True)
class Enrolment:
    """Where a node's application stands; its certificate only once it is active."""

    node_id: str
    status: NodeState
    status_reason: str
    certificate_pem: bytes
    ca_certificate_pem: bytes


@dataclass(frozen=True)
class RefusedChange:
    """A change that was refused because its directory would be too large, for the audit."""

    actor: str
    action: str
    node_id: str
    detail: str


class ChangeRefusedError(DirectoryTooLargeError):
    """DirectoryTooLargeError naming the change that was refused."""

    def __init__(self, message: str, change: RefusedChange) -> None:
        super().__init__(message)
        self.change = change


@dataclass(frozen=True)
class StatusChange:
    target: NodeState
    reason: str
    effective_at: datetime | None


@dataclass(frozen=True)
class KeyRotated:
    new_key_id: str
    valid_from: datetime
    previous_valid_until: datetime
    directory_version: int


@dataclass(frozen=True)
class CertificateRenewed:
    certificate_pem: bytes
    previous_valid_until: datetime
    directory_version: int


@dataclass(frozen=True)
class RootRotated:
    root_key_id: str
    root_version: int
    directory_version: int


def _valid_at(key: NodeKey, moment: datetime) -> bool:
    """The rule `TrustedDirectory.signing_keys` applies, on the registry's own rows."""
    return (
        key.valid_from <= moment
        and (key.valid_until is None or moment < key.valid_until)
        and (key.revoked_at is None or moment < key.revoked_at)
    )


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
        self._reader = reader(engine)
        self._keys = keys
        self._config = config
        self._clock = clock
        self.witness = Witness(
            engine, witness_signer(keys.witness_key, config.federation_id), clock=clock
        )
        # One root rotation at a time in this process (the database serialises replicas).
        self._root_rotation = threading.Lock()
        self._locator_evaluator = LocatorEvaluator(engine, keys.locator_key, config, clock=clock)
        self.admin_certificates = AdminCertificates(engine, config.paths.admin_dir, clock)

    @property
    def limits(self) -> Limits:
        return self._config.limits

    @property
    def ca(self) -> FederationCA:
        return self._keys.ca

    def _lifetime(self) -> timedelta:
        return timedelta(seconds=self._config.directory_lifetime_s)

    @contextmanager
    def _changing(self) -> Iterator[Session]:
        """A transaction for a change that publishes a directory: when the directory would be
        too large, the change rolls back and the refusal is audited in a transaction of its own."""
        try:
            with transaction(self._engine) as session:
                yield session
        except ChangeRefusedError as refused:
            change = refused.change
            with transaction(self._engine) as session:
                audit_store.record(
                    session,
                    actor=change.actor,
                    action=f"refused:{change.action}"[:32],
                    node_id=change.node_id,
                    at=self._clock(),
                    detail=f"{change.detail} {refused}".strip()[:1024],
                )
            log.warning(
                "registry.change_refused_directory_too_large",
                node_id=change.node_id,
                action=change.action,
            )
            raise

    def _check_key_change_rate(self, session: Session, node_id: str, action: str) -> None:
        """Refuse a node's second rotation (or renewal) within `key_change_interval_s`."""
        interval = timedelta(seconds=self._config.key_change_interval_s)
        last = audit_store.latest_at(session, node_id, action)
        if last is None or not interval:
            return
        wait = last + interval - self._clock()
        if wait > timedelta(0):
            raise RateLimitedError(
                f"node {node_id!r} did {action} at {last.isoformat()}; it may do so once every "
                f"{interval.total_seconds():.0f} s (key_change_interval_s): retry after "
                f"{wait.total_seconds():.0f} s",
                retry_after_s=max(wait.total_seconds(), 0.001),
            )

    def _publish_audited(
        self,
        session: Session,
        now: datetime,
        *,
        actor: str,
        action: str,
        node_id: str,
        detail: str = "",
        effective_at: datetime | None = None,
    ) -> int:
        """Publish a new directory for a change, and record who made it in the same transaction."""
        try:
            version = self._publish(session, now)
        except DirectoryTooLargeError as error:
            raise ChangeRefusedError(
                str(error), RefusedChange(actor, action, node_id, detail)
            ) from error
        audit_store.record(
            session,
            actor=actor,
            action=action,
            node_id=node_id,
            at=now,
            detail=detail,
            effective_at=effective_at,
            directory_version=version,
        )
        return version

    def _publish(self, session: Session, now: datetime) -> int:
        # The lock first, then the key: a root rotation committing meanwhile has swapped the key
        # before it released the lock, so no directory is ever signed by a retired root.
        advisory_lock(session, directory_store.DIRECTORY_LOCK_KEY)
        published = directory_store.publish(
            session,
            federation_id=self._config.federation_id,
            root_key=self._keys.root_key,
            lifetime=self._lifetime(),
            now=now,
            max_bytes=self.limits.max_directory_bytes,
            key_history_after=timedelta(seconds=self._config.key_history_after_s),
        )
        return published.version

    def _check_effective_at(self, effective_at: datetime, now: datetime) -> None:
        if effective_at > now + timedelta(seconds=self.limits.max_clock_skew_s):
            raise InvalidInputError(
                "effective_at",
                "is in the future; a status change takes effect when it is made, so make it "
                "then (a past time is allowed, e.g. when a key was compromised earlier)",
            )

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

    def get_enrolment(self, node_id: str, proof: dsse.Envelope | None) -> Enrolment:
        """Where the enrolment stands, for its applicant only (`federation.enrolment_query`):
        anyone else gets the same NOT_FOUND as for a node id that never applied."""
        now = self._clock()
        with transaction(self._engine) as session:
            node = nodes_store.get(session, node_id)
            if node is None:
                raise enrolment_query.not_found(node_id)
            keys = {
                key.key_id: VerifyKey.from_raw(key.public_key)
                for key in nodes_store.signing_keys(session, node_id)
                if _valid_at(key, now)
            }
            applied = VerifyKey.from_raw(node.signing_public_key)
            keys.setdefault(applied.key_id, applied)
            enrolment_query.check_enrolment_query(
                proof,
                node_id,
                keys,
                now=now,
                max_clock_skew=timedelta(seconds=self.limits.max_clock_skew_s),
            )
            state = NodeState(node.status)
            certificate_pem = b""
            if state is NodeState.ACTIVE:
                certificate = nodes_store.current_certificate(session, node_id, self._clock())
                if certificate is None:
                    raise PreconditionError(
                        f"node {node_id!r} is active but has no certificate; "
                        "ask the registry administrator"
                    )
                certificate_pem = certificate.certificate_pem
            return Enrolment(
                node_id=node.node_id,
                status=state,
                status_reason=node.status_reason,
                certificate_pem=certificate_pem,
                ca_certificate_pem=self._keys.ca.certificate_pem,
            )

    # Administration.

    def approve(self, node_id: str, admin: str, approval: Approval) -> int:
        """Activate a pending node the administrator confirmed (registry.approval): certificate,
        signing key, new directory, audit record."""
        now = self._clock()
        with self._changing() as session:
            node = nodes_store.require(session, node_id)
            if node.status != NodeState.PENDING:
                raise PreconditionError(
                    f"node {node_id!r} is {node.status}, not pending; only a pending "
                    "application can be approved"
                )
            shared = check_approval(session, node, approval)
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
            version = self._publish_audited(
                session,
                now,
                actor=f"admin:{admin}",
                action="approve",
                node_id=node_id,
                detail=("second node allowed for " + "; ".join(item.describe() for item in shared))[
                    :1024
                ]
                if shared
                else "",
            )
        log.info("registry.node_approved", node_id=node_id, admin=admin, directory=version)
        return version

    def set_status(self, node_id: str, change: StatusChange, admin: str) -> int:
        now = self._clock()
        effective_at = change.effective_at or now
        self._check_effective_at(effective_at, now)
        if change.target is not NodeState.ACTIVE and not change.reason.strip():
            raise InvalidInputError("reason", "say why the node is suspended or revoked")
        with self._changing() as session:
            node = nodes_store.require(session, node_id)
            current = NodeState(node.status)
            refusal = _TRANSITIONS[change.target].get(current)
            if refusal is not None:
                raise PreconditionError(f"node {node_id!r} is {current}: {refusal}")
            nodes_store.set_status(session, node, change.target, change.reason, effective_at)
            if change.target is NodeState.REVOKED:
                nodes_store.revoke_signing_keys(
                    session, node_id, effective_at, f"node revoked: {change.reason}"[:512]
                )
            version = self._publish_audited(
                session,
                now,
                actor=f"admin:{admin}",
                action=_ACTIONS[change.target],
                node_id=node_id,
                detail=change.reason,
                effective_at=effective_at,
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
        """Publish a fresh version when less than half the latest one's lifetime is left, or
        it is older than `directory_resign_s`."""
        now = self._clock()
        with transaction(self._engine) as session:
            latest = directory_store.latest(session)
            if latest is not None:
                half = (latest.expires_at - latest.issued_at) / 2
                resign = timedelta(seconds=self._config.directory_resign_s)
                # A renewed certificate's overlap that ended drops its fingerprint from the
                # directory: publish then, not only when the lifetime runs low.
                overlap_ended = nodes_store.overlap_ended(session, latest.issued_at, now)
                if (
                    latest.expires_at - now >= half
                    and now - latest.issued_at < resign
                    and not overlap_ended
                ):
                    return None
            version = self._publish(session, now)
            pruned = directory_store.prune(
                session, older_than=now - timedelta(seconds=self._config.directory_retention_s)
            )
        log.info("registry.directory_republished", directory=version, pruned=pruned)
        return version

    def key_history(self, node_id: str) -> dsse.Envelope:
        """Every signing key of the published nodes (or of `node_id`), signed by the root."""
        with transaction(self._engine) as session:
            return directory_store.key_history(
                session,
                federation_id=self._config.federation_id,
                root_key=self._keys.root_key,
                node_id=node_id,
                now=self._clock(),
            )

    # Locators.

    def publish_locators(
        self, node_id: str, locators: Sequence[bytes], withdrawn: Sequence[bytes] = ()
    ) -> locators_store.PublishOutcome:
        now = self._clock()
        with transaction(self._engine) as session:
            if withdrawn:
                locators_store.withdraw(session, node_id, withdrawn)
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

    def evaluate_locators(self, node_id: str, blinded: Sequence[bytes]) -> Evaluation:
        """The OPRF evaluation of a node's blinded elements (registry.locator_oprf)."""
        return self._locator_evaluator.evaluate(node_id, blinded)

    def list_duplicates(self, node_id: str) -> list[locators_store.Duplicate]:
        with transaction(self._engine) as session:
            return locators_store.duplicates(session, node_id)

    # Keys over time: signing-key rotation, retirement and revocation, certificate renewal.

    def rotate_signing_key(self, node_id: str, envelope: dsse.Envelope) -> KeyRotated:
        """Add the node's new signing key, valid from now; the key that signed the request stays
        valid for the overlap window. The same rotation again changes nothing."""
        now = self._clock()
        overlap = timedelta(seconds=self._config.signing_key_overlap_s)
        with self._changing() as session:
            nodes_store.require(session, node_id)
            keys = nodes_store.signing_keys(session, node_id)
            rotation = validate_rotation(
                envelope,
                node_id,
                {
                    key.key_id: VerifyKey.from_raw(key.public_key)
                    for key in keys
                    if _valid_at(key, now)
                },
                now=now,
                max_clock_skew=timedelta(seconds=self.limits.max_clock_skew_s),
            )
            new_key_id = rotation.new_key.key_id
            current = nodes_store.signing_key(session, node_id, rotation.current_key_id)
            existing = {key.key_id: key for key in keys}.get(new_key_id)
            if existing is not None:
                return KeyRotated(
                    new_key_id,
                    existing.valid_from,
                    current.valid_until or now + overlap,
                    directory_store.latest_version(session),
                )
            owner = nodes_store.key_owner(session, new_key_id)
            if owner is not None:
                raise PreconditionError(
                    f"the new signing key is already held by node {owner!r}; create another"
                )
            self._check_key_change_rate(session, node_id, "rotate-signing-key")
            nodes_store.add_signing_key(session, node_id, new_key_id, rotation.new_key.raw, now)
            nodes_store.end_signing_key(session, current, now + overlap)
            nodes_store.end_overlapping_keys(session, node_id, current.key_id, now)
            version = self._publish_audited(
                session,
                now,
                actor=f"node:{node_id}",
                action="rotate-signing-key",
                node_id=node_id,
                detail=f"{rotation.current_key_id} -> {new_key_id}",
            )
            previous_until = current.valid_until or now + overlap
        log.info(
            "registry.signing_key_rotated",
            node_id=node_id,
            new_key_id=new_key_id,
            previous_key_id=rotation.current_key_id,
            directory=version,
        )
        return KeyRotated(new_key_id, now, previous_until, version)

    def retire_signing_key(self, node_id: str, key_id: str, admin: str) -> int:
        """End a key's validity now (planned retirement); the node must hold another valid key."""
        now = self._clock()
        with self._changing() as session:
            nodes_store.require(session, node_id)
            key = nodes_store.signing_key(session, node_id, key_id)
            if not _valid_at(key, now):
                raise PreconditionError(
                    f"key {key_id} of node {node_id!r} cannot sign now already "
                    "(retired, revoked or not yet valid)"
                )
            others = [
                other
                for other in nodes_store.signing_keys(session, node_id)
                if other.key_id != key_id and _valid_at(other, now)
            ]
            if not others:
                raise PreconditionError(
                    f"key {key_id} is the only valid signing key of node {node_id!r}; the node "
                    "must rotate first (`certfed node rotate-key`), then retire the old key"
                )
            nodes_store.end_signing_key(session, key, now)
            version = self._publish_audited(
                session,
                now,
                actor=f"admin:{admin}",
                action="retire-signing-key",
                node_id=node_id,
                detail=key_id,
                effective_at=now,
            )
        log.info("registry.signing_key_retired", node_id=node_id, key_id=key_id, directory=version)
        return version

    def revoke_signing_key(
        self, node_id: str, key_id: str, reason: str, effective_at: datetime | None, admin: str
    ) -> int:
        """Distrust a key from `effective_at` (default now; may be earlier) for good."""
        now = self._clock()
        moment = effective_at or now
        self._check_effective_at(moment, now)
        if not reason.strip():
            raise InvalidInputError("reason", "say why the key is revoked")
        with self._changing() as session:
            nodes_store.require(session, node_id)
            key = nodes_store.signing_key(session, node_id, key_id)
            if key.revoked_at is not None:
                raise PreconditionError(
                    f"key {key_id} of node {node_id!r} was revoked already, from "
                    f"{key.revoked_at.isoformat()}"
                )
            nodes_store.revoke_signing_key(session, key, moment, reason)
            version = self._publish_audited(
                session,
                now,
                actor=f"admin:{admin}",
                action="revoke-signing-key",
                node_id=node_id,
                detail=f"{key_id}: {reason}"[:1024],
                effective_at=moment,
            )
        log.info("registry.signing_key_revoked", node_id=node_id, key_id=key_id, directory=version)
        return version

    def renew_certificate(self, node_id: str, csr_pem: bytes) -> CertificateRenewed:
        """Issue the node a new TLS certificate; its others stay accepted for the overlap."""
        now = self._clock()
        previous_until = now + timedelta(seconds=self._config.certificate_overlap_s)
        with self._changing() as session:
            nodes_store.require(session, node_id)
            self._check_key_change_rate(session, node_id, "renew-certificate")
            certificate_pem = self._keys.ca.issue(
                csr_pem,
                PeerKind.NODE,
                node_id,
                timedelta(days=self._config.node_certificate_days),
                now=now,
            )
            nodes_store.record_certificate(
                session, node_id, certificate_pem, now, previous_until=previous_until
            )
            version = self._publish_audited(
                session,
                now,
                actor=f"node:{node_id}",
                action="renew-certificate",
                node_id=node_id,
            )
        log.info("registry.certificate_renewed", node_id=node_id, directory=version)
        return CertificateRenewed(certificate_pem, previous_until, version)

    # The registry's own root key.

    @property
    def root_key_id(self) -> str:
        return self._keys.root_key.key_id

    def root_statements(self, known_root_key_id: str) -> list[dsse.Envelope]:
        """The root rotations a caller trusting `known_root_key_id` has not followed yet."""
        if known_root_key_id == self.root_key_id:
            return []
        with transaction(self._engine) as session:
            return root_store.since(session, known_root_key_id)

    def reconcile_root_key(self) -> None:
        """At start: finish or discard a root rotation interrupted between its commit and the
        key file replacement, and refuse a root key file that is not the current root."""
        paths = self._config.paths
        with transaction(self._engine) as session:
            latest = root_store.latest(session)
        if paths.next_root_key.exists():
            pending = SigningKey.load(paths.next_root_key)
            if latest is not None and latest.key_id == pending.key_id:
                self._install_root_key(pending)
            else:
                paths.next_root_key.unlink()
                log.warning("registry.root_rotation_discarded", key_id=pending.key_id)
        if latest is not None and latest.key_id != self.root_key_id:
            raise PreconditionError(
                f"{paths.root_key} holds root key {self.root_key_id[:16]}, but the federation's "
                f"current root (version {latest.version}) is {latest.key_id[:16]}; restore the "
                "current root key file"
            )

    def _install_root_key(self, key: SigningKey) -> None:
        """Make `key` the root key on disk: root.key, root.pub and the trust bundle for nodes."""
        paths = self._config.paths
        public_hex = (key.public_key.raw.hex() + "\n").encode("ascii")
        os.replace(paths.next_root_key, paths.root_key)
        for public in (paths.root_public_key, paths.trust_root_public_key):
            temporary = public.with_name(f".{public.name}.tmp")
            temporary.write_bytes(public_hex)
            os.replace(temporary, public)
        self._keys = dataclasses.replace(self._keys, root_key=key)

    def rotate_root(self, admin: str, expected_root_key_id: str) -> RootRotated:
        """Replace the root key: a statement signed by the old and the new root, and the first
        directory signed by the new root, commit together; the old key file is then replaced."""
        paths = self._config.paths
        with self._root_rotation:
            previous = self._keys.root_key
            if previous.key_id != expected_root_key_id:
                raise PreconditionError(
                    f"the root key is {previous.key_id[:16]}..., not "
                    f"{expected_root_key_id[:16]}...; it was rotated already: check the "
                    "registry's root before rotating again"
                )
            new = SigningKey.generate()
            new.save(paths.next_root_key)
            now = self._clock()
            try:
                with self._changing() as session:
                    advisory_lock(session, directory_store.DIRECTORY_LOCK_KEY)
                    root_version = root_store.latest_version(session) + 1
                    statement = directory_pb2.RootStatement(
                        federation_id=self._config.federation_id,
                        version=root_version,
                        previous_key_id=previous.key_id,
                        root_public_key=new.public_key.raw,
                        issued_at=to_timestamp(now),
                    )
                    root_store.add(
                        session,
                        version=root_version,
                        key_id=new.key_id,
                        previous_key_id=previous.key_id,
                        envelope=sign_root_statement(statement, previous, new),
                        issued_at=now,
                    )
                    # Swapped before commit, while the directory lock is held (see _publish).
                    self._keys = dataclasses.replace(self._keys, root_key=new)
                    version = self._publish_audited(
                        session,
                        now,
                        actor=f"admin:{admin}",
                        action="rotate-root",
                        node_id="registry",
                        detail=f"{previous.key_id} -> {new.key_id}",
                    )
            except BaseException:
                self._keys = dataclasses.replace(self._keys, root_key=previous)
                paths.next_root_key.unlink(missing_ok=True)
                raise
            self._install_root_key(new)
        log.info(
            "registry.root_rotated",
            admin=admin,
            root_key_id=new.key_id,
            root_version=root_version,
            directory=version,
        )
        return RootRotated(new.key_id, root_version, version)

    # Callers.

    def is_federation_certificate(self, certificate: x509.Certificate) -> bool:
        return self._keys.ca.issued(certificate, now=self._clock())

    def caller_node(self, identity: PeerIdentity) -> nodes_store.Caller:
        """The node a verified certificate speaks for, if it is that node's current certificate.

        Raises UnauthenticatedError for an unknown node or a certificate the registry did not
        issue to it (or has superseded), PermissionDeniedError when the node is not active.
        """
        # A pooled connection and one prepared SELECT, not a transaction: every node's every
        # call to the registry passes here.
        with self._reader.connect() as connection:
            node = nodes_store.caller(
                connection, identity.name, identity.certificate_sha256, self._clock()
            )
        if node is None:
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
