"""The registry's tables, as SQLModel classes sharing one metadata.

Only the store modules (`nodes_store`, `directory_store`, `locators_store`, `audit_store`,
`witness_store`) read or write these; the schema itself is created by the alembic migrations in
`registry/migrations`, which a test keeps identical to this metadata. Every timestamp column is
timezone-aware and holds UTC; `UtcDateTime` refuses naive values on the way in and restores the
zone SQLite drops on the way out, so Python code only ever sees aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from registry.utc import as_utc
from signing.locator import LOCATOR_SIZE


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that only accepts and only returns aware UTC datetimes."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime; certfed stores aware UTC")
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return as_utc(value)


class NodeState(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class RegistryTable(SQLModel, registry=registry()):
    """Base of the registry's tables: their own metadata, apart from any node's tables."""


def _node_ref(*, primary_key: bool = False) -> Any:
    """A reference to the node a row belongs to, indexed for lookups by node."""
    return Field(
        sa_column=sa.Column(
            sa.String(64),
            sa.ForeignKey("node.node_id"),
            primary_key=primary_key,
            nullable=False,
            index=True,
        )
    )


def _locator_key() -> Any:
    return Field(sa_column=sa.Column(sa.LargeBinary(LOCATOR_SIZE), primary_key=True))


def _utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=sa.Column(UtcDateTime(), nullable=nullable, index=index))


class Node(RegistryTable, table=True):
    """One enrolled (or applying) node, with what its application declared."""

    __tablename__ = "node"

    node_id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    display_name: str = Field(sa_column=sa.Column(sa.String(512), nullable=False))
    # JSON lists of region codes and role names, in the order the application gave them.
    region_codes: list[str] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    roles: list[str] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    endpoint: str = Field(sa_column=sa.Column(sa.String(512), nullable=False))
    signing_public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    hpke_public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    tls_csr_pem: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    # SHA-256 over what makes an application the same one again (keys and declared details).
    application_digest: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    # The signed application as DSSE envelope JSON (payload bytes as received), as evidence.
    application_envelope: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    applied_at: datetime = _utc_column()
    received_at: datetime = _utc_column()
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False, index=True))
    status_reason: str = Field(sa_column=sa.Column(sa.String(512), nullable=False))
    status_changed_at: datetime = _utc_column()


class NodeKey(RegistryTable, table=True):
    """An Ed25519 attestation signing key of a node and its validity window."""

    __tablename__ = "node_key"

    key_id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    node_id: str = _node_ref()
    public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    valid_from: datetime = _utc_column()
    valid_until: datetime | None = _utc_column(nullable=True)
    revoked_at: datetime | None = _utc_column(nullable=True)
    # Why the key was revoked (empty while it is not), published with it in the directory.
    revocation_reason: str = Field(
        default="",
        sa_column=sa.Column(sa.String(512), nullable=False, server_default=""),
    )


class NodeCertificate(RegistryTable, table=True):
    """A TLS certificate the federation CA issued to a node."""

    __tablename__ = "node_certificate"

    # Lowercase hex SHA-256 of the DER certificate.
    sha256: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    node_id: str = _node_ref()
    certificate_pem: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    serial_number: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    not_before: datetime = _utc_column()
    not_after: datetime = _utc_column()
    issued_at: datetime = _utc_column()
    # When a newer certificate replaces this one: set at renewal to the end of the overlap
    # window (so may be in the future); from then on the certificate is refused.
    superseded_at: datetime | None = _utc_column(nullable=True)


class DirectoryVersion(RegistryTable, table=True):
    """One published, signed directory."""

    __tablename__ = "directory_version"

    version: int = Field(
        sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False)
    )
    envelope_json: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    issued_at: datetime = _utc_column()
    expires_at: datetime = _utc_column()


class SubjectLocator(RegistryTable, table=True):
    """A paying node declares that it pays the person behind `locator`."""

    __tablename__ = "subject_locator"

    locator: bytes = _locator_key()
    node_id: str = _node_ref(primary_key=True)
    published_at: datetime = _utc_column()


class DuplicateEntitlement(RegistryTable, table=True):
    """A locator held by two or more paying nodes: one row per node involved."""

    __tablename__ = "duplicate_entitlement"

    locator: bytes = _locator_key()
    node_id: str = _node_ref(primary_key=True)
    detected_at: datetime = _utc_column()


class LocatorEvaluationDay(RegistryTable, table=True):
    """How many blinded elements the registry evaluated for one node on one UTC day (its quota)."""

    __tablename__ = "locator_evaluation_day"

    node_id: str = _node_ref(primary_key=True)
    # ISO date, YYYY-MM-DD, UTC.
    day: str = Field(sa_column=sa.Column(sa.String(10), primary_key=True))
    evaluated: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))


class AuditEvent(RegistryTable, table=True):
    """Who did what to which node, when: every administrative act and every application."""

    __tablename__ = "audit_event"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=True)
    )
    at: datetime = _utc_column(index=True)
    # "admin:<name>" or "node:<node id>".
    actor: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    action: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    node_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    detail: str = Field(sa_column=sa.Column(sa.String(1024), nullable=False))
    # For status changes: when the change takes effect (may be before `at`).
    effective_at: datetime | None = _utc_column(nullable=True)
    # The directory version that announced the change, when there is one.
    directory_version: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True)
    )


class RootStatementRecord(RegistryTable, table=True):
    """A rotation of the registry root key: the RootStatement envelope, signed by both roots."""

    __tablename__ = "root_statement"

    # The root version the statement makes current: 2 for the first rotation, then 3, ...
    version: int = Field(
        sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False)
    )
    key_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    previous_key_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    # DSSE envelope JSON exactly as signed.
    envelope_json: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    issued_at: datetime = _utc_column()


class WitnessedCheckpoint(RegistryTable, table=True):
    """The last checkpoint the registry cosigned for one log (c2sp.org/tlog-witness)."""

    __tablename__ = "witnessed_checkpoint"

    # The log's origin line, "certfed.node/<node id>".
    origin: str = Field(sa_column=sa.Column(sa.String(255), primary_key=True))
    tree_size: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    root_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    # The signed note as answered: the log's signature and the registry's cosignature.
    note: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    cosigned_at: datetime = _utc_column()


class WitnessFork(RegistryTable, table=True):
    """Evidence that a log showed the witness two histories: both signed notes, and when."""

    __tablename__ = "witness_fork"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=True)
    )
    node_id: str = _node_ref()
    origin: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    detected_at: datetime = _utc_column(index=True)
    # What was inconsistent: same size with another root, or a consistency proof that fails.
    reason: str = Field(sa_column=sa.Column(sa.String(512), nullable=False))
    # The note the witness had cosigned, and the conflicting note the log signed and offered.
    cosigned_note: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    offered_note: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))


class RevokedAdminCertificate(RegistryTable, table=True):
    """An administrator certificate the registry refuses from `revoked_at` on."""

    __tablename__ = "revoked_admin_certificate"

    # Lowercase hex SHA-256 of the DER certificate.
    sha256: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    revoked_at: datetime = _utc_column()
    revoked_by: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    reason: str = Field(sa_column=sa.Column(sa.String(512), nullable=False))


metadata = RegistryTable.metadata
