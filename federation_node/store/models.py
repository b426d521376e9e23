"""The node's tables, as SQLModel classes, and the column types they share.

Every table lives in `metadata` (not SQLModel's global one), so the node's schema can be compared
with its migrations without picking up tables of other services imported in the same process.
The schema itself is created only by the migrations in `federation_node/store/migrations`.

Promises kept here, whatever the database:

* every datetime read back is timezone-aware UTC (`UtcDateTime`), and a naive one is refused
  on write;
* closed sets are Python `StrEnum`s stored as their string values (`StrEnumType`), with a CHECK
  constraint so the database refuses anything else;
* no identity number or name is stored in clear: a beneficiary's identity is the caller's sealed
  bytes plus a masked number for display, and the person is found by subject locator (a keyed
  hash).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel

from federation_node.rules.entitlement import EntitlementState, ReminderKind
from federation_node.rules.report_windows import DeathReporter
from signing.locator import LOCATOR_SIZE

ID_LENGTH = 64
NODE_ID_LENGTH = 64
REGION_LENGTH = 16
HEX_SHA256_LENGTH = 64
ENUM_LENGTH = 32
# "YYYY-MM": sorts in time order and reads the same in a bank file.
MONTH_LENGTH = 7
# A beneficiary without a roll key who can still be given one (an erased person has no identity
# left to key): the predicate of the index that finds them, and of the look that uses it.
UNKEYED = "roll_key IS NULL AND length(sealed_identity) > 0"
# The desk's lists of people with an overpayment to recover and of possible duplicates: a few
# people of a roll of millions, each list read through an index of those few alone.
OVERPAID = "overpayment_fen > 0"
POSSIBLE_DUPLICATE = {
    "postgresql": "possible_duplicate IS true",
    "sqlite": "possible_duplicate IS 1",
}

# Deterministic constraint names, the same on SQLite and PostgreSQL, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every engine.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is written as naive
    UTC (a fixed-width string that sorts in time order) and given back its UTC tzinfo on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: certfed keeps every time in UTC with tzinfo")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


E = TypeVar("E", bound=enum.StrEnum)


class StrEnumType(TypeDecorator[E]):
    """A `StrEnum` stored as its string value in a VARCHAR; read back as the enum member."""

    impl = String(ENUM_LENGTH)
    cache_ok = True

    def __init__(self, enum_class: type[E]) -> None:
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        # Raises ValueError for a string that is not one of the members.
        return self.enum_class(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        if value is None:
            return None
        return self.enum_class(value)


def _enum_check(column: str, enum_class: type[enum.StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum_class)
    return CheckConstraint(f"{column} IN ({values})", name=column)


def _where_set(column: str) -> Index:
    """An index of `column` over the rows that set it: rows leaving it NULL cost no index entry,
    and a lookup of one value (`column = x` implies it is set) still uses it."""
    predicate = text(f"{column} IS NOT NULL")
    return Index(None, column, postgresql_where=predicate, sqlite_where=predicate)


class IdentityType(enum.StrEnum):
    RESIDENT_ID = "resident_id"
    HKID = "hkid"
    MACAU_BIR = "macau_bir"
    PASSPORT = "passport"


class PensionScheme(enum.StrEnum):
    EMPLOYEE = "employee"
    RESIDENT = "resident"
    PUBLIC_SERVICE = "public_service"


class BeneficiaryState(enum.StrEnum):
    ACTIVE = "active"
    DECEASED = "deceased"
    IMPRISONED = "imprisoned"
    DECLARED_MISSING = "declared_missing"


class RequestDirection(enum.StrEnum):
    # Sent by this node, a paying office, to the residence node.
    OUTBOUND = "outbound"
    # Received by this node, as the residence node.
    INBOUND = "inbound"


class AssistanceState(enum.StrEnum):
    QUEUED = "queued"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    DECLINED = "declined"
    COMPLETED = "completed"


OPEN_ASSISTANCE_STATES = frozenset(
    {
        AssistanceState.QUEUED,
        AssistanceState.RECEIVED,
        AssistanceState.ACCEPTED,
        AssistanceState.SCHEDULED,
    }
)


class CertificationState(enum.StrEnum):
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    REJECTED = "rejected"


class AttestationDirection(enum.StrEnum):
    ISSUED = "issued"
    RECEIVED = "received"


class RevocationFinding(enum.StrEnum):
    # Signed at or after the signing key's revocation time: must not be trusted.
    REFUSED_AFTER_REVOCATION = "refused-after-revocation"
    # Signed before the key was revoked: still valid, but a person looks at it again.
    SIGNED_BY_SINCE_REVOKED_KEY = "signed-by-since-revoked-key"


class OutboxKind(enum.StrEnum):
    REQUEST_ASSISTANCE = "request_assistance"
    UPDATE_ASSISTANCE_STATUS = "update_assistance_status"
    # An attestation delivery carrying its request (queued by a release before 0019).
    DELIVER_ATTESTATION = "deliver_attestation"
    PUBLISH_LOCATORS = "publish_locators"
    # An attestation delivery queued without a copy: built from the log when it goes.
    DELIVER_LOGGED_ATTESTATION = "deliver_logged_attestation"


# The kinds that deliver an attestation to its paying office.
ATTESTATION_DELIVERIES = frozenset(
    {OutboxKind.DELIVER_ATTESTATION, OutboxKind.DELIVER_LOGGED_ATTESTATION}
)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OperatorRole(enum.StrEnum):
    CLERK = "clerk"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    # A data feed's service account: records signals for the sources it is bound to, nothing else.
    FEED = "feed"


# Destination of outbox messages addressed to the registry rather than to a peer node.
REGISTRY_DESTINATION = "registry"


class NodeTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of the node's tables: they all belong to `metadata`."""


def _key_type(length: int = ID_LENGTH) -> TypeEngine[str]:
    """An identifier's column type: ids, node ids, a feed's source keys, the audit chain's actor.

    On PostgreSQL it compares byte by byte (COLLATE "C") whatever the database's locale: an id's
    order means nothing to a reader, and under a locale such as en_US.UTF-8 every comparison in
    its indexes and joins would go through the locale's collation (a feed imported a tenth slower
    than under "C"), and an operating system update of that collation could leave the
    indexes out of order. SQLite compares bytes already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _id(*, primary_key: bool = False, nullable: bool = False, **kwargs: Any) -> Any:
    return Field(
        sa_column=Column(_key_type(), primary_key=primary_key, nullable=nullable, **kwargs)
    )


def _beneficiary(*, primary_key: bool = False, nullable: bool = False, index: bool = False) -> Any:
    """A reference to the beneficiary a row is about."""
    return Field(
        sa_column=Column(
            _key_type(),
            ForeignKey("beneficiary.beneficiary_id"),
            primary_key=primary_key,
            nullable=nullable,
            index=index,
        )
    )


def _node_id() -> Any:
    return Field(sa_column=Column(_key_type(NODE_ID_LENGTH), nullable=False))


def _region() -> Any:
    return Field(sa_column=Column(String(REGION_LENGTH), nullable=False))


def _when(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(UtcDateTime(), nullable=nullable))


def _bytes(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(LargeBinary(), nullable=nullable))


def _text() -> Any:
    return Field(sa_column=Column(Text(), nullable=False))


def _hex_sha256() -> Any:
    return Field(sa_column=Column(String(HEX_SHA256_LENGTH), nullable=False))


def _int() -> Any:
    return Field(sa_column=Column(Integer(), nullable=False))


def _json() -> Any:
    return Field(sa_column=Column(JSON(), nullable=False))


def _enum(enum_class: type[enum.StrEnum]) -> Any:
    return Field(sa_column=Column(StrEnumType(enum_class), nullable=False))


class Beneficiary(NodeTable, table=True):
    """A person this office pays."""

    __tablename__ = "beneficiary"
    __table_args__ = (
        _enum_check("identity_type", IdentityType),
        _enum_check("status", BeneficiaryState),
        _enum_check("scheme", PensionScheme),
        CheckConstraint(f"length(subject_locator) = {LOCATOR_SIZE}", name="subject_locator_length"),
        # The few people without a roll key who can be keyed (an erased person has no identity
        # left), found without reading the whole roll.
        Index(
            "ix_beneficiary_without_roll_key",
            "beneficiary_id",
            postgresql_where=text(UNKEYED),
            sqlite_where=text(UNKEYED),
        ),
        Index(
            "ix_beneficiary_possible_duplicate",
            "beneficiary_id",
            postgresql_where=text(POSSIBLE_DUPLICATE["postgresql"]),
            sqlite_where=text(POSSIBLE_DUPLICATE["sqlite"]),
        ),
    )

    beneficiary_id: str = _id(primary_key=True)
    # HMAC of the normalised identity number (signing.locator): how the federation names a person.
    subject_locator: bytes = Field(
        sa_column=Column(LargeBinary(), nullable=False, unique=True),
    )
    identity_type: IdentityType = _enum(IdentityType)
    masked_identity_number: str = Field(sa_column=Column(String(32), nullable=False))
    sealed_identity: bytes = _bytes()
    residence_region: str = _region()
    paying_region: str = _region()
    status: BeneficiaryState = _enum(BeneficiaryState)
    status_effective_at: datetime | None = _when(nullable=True)
    valid_until: datetime | None = _when(nullable=True)
    possible_duplicate: bool = Field(sa_column=Column(Boolean(), nullable=False))
    created_at: datetime = _when()
    updated_at: datetime = _when()
    # From the office's roll; NULL when the roll did not say (or for people registered before).
    scheme: PensionScheme | None = Field(
        sa_column=Column(StrEnumType(PensionScheme), nullable=True)
    )
    # The first month the pension was paid, "YYYY-MM".
    payment_start_month: str | None = Field(sa_column=Column(String(MONTH_LENGTH), nullable=True))
    # HMAC of the locator's input under a key of this node's (rules/feed_records.py): how a feed
    # row finds the person without asking the registry. NULL once the identity is erased, and
    # for rows written before it existed until the node fills them in (at start, before a feed).
    roll_key: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary(), nullable=True, unique=True)
    )


class AssistanceRequest(NodeTable, table=True):
    """An assistance request, sent by this node (outbound) or received by it (inbound)."""

    __tablename__ = "assistance_request"
    __table_args__ = (
        _enum_check("direction", RequestDirection),
        _enum_check("status", AssistanceState),
        Index(None, "direction", "status", "request_id"),
    )

    request_id: str = _id(primary_key=True)
    direction: RequestDirection = _enum(RequestDirection)
    # The residence node for an outbound request, the paying node for an inbound one.
    peer_node_id: str = _node_id()
    beneficiary_id: str | None = _beneficiary(nullable=True, index=True)
    subject_locator: bytes = _bytes()
    paying_node_id: str = _node_id()
    paying_region: str = _region()
    residence_region: str = _region()
    # Inbound: the HPKE-sealed identity exactly as received. Outbound: NULL, the identity sealed
    # to the peer travels only in the outbox message.
    sealed_identity: bytes | None = _bytes(nullable=True)
    # Hex SHA-256 of the RequestAssistanceRequest bytes, to tell a redelivery from a reused id.
    payload_sha256: str = _hex_sha256()
    deadline: datetime = _when()
    acceptable_methods: list[int] = _json()
    note: str = _text()
    status: AssistanceState = _enum(AssistanceState)
    status_reason: str = _text()
    scheduled_for: datetime | None = _when(nullable=True)
    # Inbound: bumped by every local status change and sent along. Outbound: the last applied.
    status_sequence: int = _int()
    attestation_id: str | None = _id(nullable=True)
    # = beneficiary_id while an outbound request is open, else NULL. Being UNIQUE, it lets the
    # database refuse a second open request for one person, whatever the number of replicas.
    open_beneficiary_id: str | None = Field(
        sa_column=Column(_key_type(), nullable=True, unique=True)
    )
    created_at: datetime = _when()
    updated_at: datetime = _when()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ASSISTANCE_STATES


class Certification(NodeTable, table=True):
    """The outcome of a check, recorded by a clerk and reviewed by another operator."""

    __tablename__ = "certification"
    __table_args__ = (
        _enum_check("status", CertificationState),
        Index(None, "status", "certification_id"),
    )

    certification_id: str = _id(primary_key=True)
    status: CertificationState = _enum(CertificationState)
    request_id: str | None = Field(
        sa_column=Column(
            _key_type(),
            ForeignKey("assistance_request.request_id"),
            nullable=True,
            index=True,
        )
    )
    subject_locator: bytes = _bytes()
    paying_node_id: str = _node_id()
    paying_region: str = _region()
    certifying_region: str = _region()
    # certfed.v1.CertificationMethod and CertificationOutcome values.
    method: int = _int()
    outcome: int = _int()
    observed_at: datetime = _when()
    # Hex SHA-256 of evidence kept at this office.
    evidence_digests: list[str] = _json()
    note: str = _text()
    clerk_id: str = _id()
    reviewer_id: str | None = _id(nullable=True)
    recorded_at: datetime = _when()
    reviewed_at: datetime | None = _when(nullable=True)
    rejection_reason: str = _text()
    attestation_id: str | None = _id(nullable=True)
    # A walk-in several offices claim: the others (node id to paying region), each sent its own
    # attestation on approval; None when one office pays the person.
    also_paying: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSON(), nullable=True)
    )
    # An attestation this node issued that this certification corrects (offices/corrections.py).
    corrects_attestation_id: str | None = Field(
        default=None, sa_column=Column(_key_type(), nullable=True)
    )


class Attestation(NodeTable, table=True):
    """A signed attestation, issued by this node or received from another, kept as signed.

    Keyed by (attestation id, issuing node): an id is its issuer's, so another member reusing
    it stores a second attestation beside the first, never in its place."""

    __tablename__ = "attestation"
    __table_args__ = (
        _enum_check("direction", AttestationDirection),
        Index(None, "direction", "attestation_id"),
        # A person's attestations (their last certification, who reported an end) without
        # reading every attestation. Those about other offices' people name none: left out.
        _where_set("beneficiary_id"),
        # Only corrections name an attestation they correct; data matches and answers do not.
        _where_set("corrects_attestation_id"),
    )

    attestation_id: str = _id(primary_key=True)
    direction: AttestationDirection = _enum(AttestationDirection)
    # The DSSE envelope's JSON serialisation, byte for byte as signed and sent.
    envelope_json: bytes = _bytes()
    issuing_node_id: str = Field(sa_column=Column(_key_type(NODE_ID_LENGTH), primary_key=True))
    paying_node_id: str = _node_id()
    subject_locator: bytes = Field(sa_column=Column(LargeBinary(), nullable=False, index=True))
    beneficiary_id: str | None = _beneficiary(nullable=True)
    request_id: str | None = Field(sa_column=Column(_key_type(), nullable=True))
    method: int = _int()
    outcome: int = _int()
    observed_at: datetime = _when()
    valid_until: datetime = _when()
    signing_key_id: str = Field(sa_column=Column(String(128), nullable=False))
    # Hex SHA-256 of the DSSE payload, to tell a redelivery from a conflicting reuse of an id.
    payload_sha256: str = _hex_sha256()
    stored_at: datetime = _when()
    # The attestation of the same issuer this one supersedes (offices/corrections.py).
    corrects_attestation_id: str | None = Field(
        default=None, sa_column=Column(_key_type(), nullable=True)
    )


class RevocationReview(NodeTable, table=True):
    """A received attestation whose signing key the directory has since revoked: listed for a
    person to review, never silently kept as valid nor silently deleted."""

    __tablename__ = "revocation_review"
    __table_args__ = (
        _enum_check("finding", RevocationFinding),
        ForeignKeyConstraint(
            ["attestation_id", "issuing_node_id"],
            ["attestation.attestation_id", "attestation.issuing_node_id"],
        ),
    )

    attestation_id: str = _id(primary_key=True)
    issuing_node_id: str = Field(sa_column=Column(_key_type(NODE_ID_LENGTH), primary_key=True))
    signing_key_id: str = Field(sa_column=Column(String(128), nullable=False))
    finding: RevocationFinding = _enum(RevocationFinding)
    # The attestation's own issued_at, read from its signed payload.
    issued_at: datetime = _when()
    key_revoked_at: datetime = _when()
    revocation_reason: str = _text()
    # The directory version that brought the revocation, and when this node found it.
    directory_version: int = Field(sa_column=Column(BigInteger(), nullable=False))
    flagged_at: datetime = _when()


class OutboxMessage(NodeTable, table=True):
    """A message committed with the state change it announces, delivered by the dispatcher."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        _enum_check("kind", OutboxKind),
        _enum_check("state", DeliveryState),
        Index(None, "state", "next_attempt_at"),
    )

    message_id: str = _id(primary_key=True)
    kind: OutboxKind = _enum(OutboxKind)
    # A peer node id, or REGISTRY_DESTINATION.
    destination: str = _node_id()
    # The request, attestation or beneficiary the message is about.
    subject_id: str = _id()
    # A serialized protobuf request, ready to send.
    payload: bytes = _bytes()
    state: DeliveryState = _enum(DeliveryState)
    attempts: int = _int()
    next_attempt_at: datetime = _when()
    last_error: str = _text()
    created_at: datetime = _when()
    delivered_at: datetime | None = _when(nullable=True)
    # When an administrator last put the message back from the dead letters: the retry budget
    # in time counts from here instead of created_at.
    retried_at: datetime | None = _when(nullable=True)
    # The dispatcher replica holding the message's lease (next_attempt_at), while it delivers;
    # a restarted replica releases its previous incarnation's leases at once.
    leased_by: str | None = Field(default=None, sa_column=Column(_key_type(), nullable=True))


class Operator(NodeTable, table=True):
    """A clerk, reviewer or administrator of this node, known by a role label, not a name."""

    __tablename__ = "operator"

    operator_id: str = _id(primary_key=True)
    label: str = Field(sa_column=Column(String(128), nullable=False))
    roles: list[str] = _json()
    token_salt: bytes = _bytes()
    token_hash: bytes = _bytes()
    disabled: bool = Field(sa_column=Column(Boolean(), nullable=False))
    created_at: datetime = _when()
    disabled_at: datetime | None = _when(nullable=True)
    # Signing in with a password (migration 0009): an operator with only a bearer token has
    # neither. The password is kept as a scrypt hash string (rules/passwords.py).
    user_name: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True, unique=True, index=True)
    )
    password_hash: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    password_set_at: datetime | None = _when(nullable=True)
    # The desk language the operator chose; "" for the desk's default.
    locale: str = Field(default="", sa_column=Column(String(16), nullable=False, server_default=""))
    # When the bearer token stops working; None (a row written before 0009 by an older
    # replica) means a year after created_at.
    token_expires_at: datetime | None = _when(nullable=True)
    last_sign_in_at: datetime | None = _when(nullable=True)
    # A feed account's sources (migration 0012): the `source` names of the signals it may
    # record; empty for every other operator.
    feed_sources: list[str] = Field(
        default_factory=list, sa_column=Column(JSON(), nullable=False, server_default="[]")
    )

    def has_role(self, role: OperatorRole) -> bool:
        return role.value in self.roles


class SessionEndReason(enum.StrEnum):
    SIGNED_OUT = "signed_out"
    OPERATOR_DISABLED = "operator_disabled"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a reason's name, not a password)


class OperatorSession(NodeTable, table=True):
    """A signed-in operator's session: its token is `<session_id>.<secret>`, kept like a bearer
    token's (salted SHA-256, store/operator_sessions.py). It ends at `expires_at`, after the
    node's idle time without a call, or when `ended_at` is set."""

    __tablename__ = "operator_session"
    __table_args__ = (_enum_check("ended_reason", SessionEndReason),)

    session_id: str = _id(primary_key=True)
    operator_id: str = Field(
        sa_column=Column(
            _key_type(), ForeignKey("operator.operator_id"), nullable=False, index=True
        )
    )
    secret_salt: bytes = _bytes()
    secret_hash: bytes = _bytes()
    created_at: datetime = _when()
    last_used_at: datetime = _when()
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    ended_at: datetime | None = _when(nullable=True)
    ended_reason: SessionEndReason | None = Field(
        default=None, sa_column=Column(StrEnumType(SessionEndReason), nullable=True)
    )


class SignInFailure(NodeTable, table=True):
    """A failed sign-in, counted against the account and the address it came from; in the
    database, so every replica of the node sees the same counts. Keys are hashes: an unknown
    user name or an address is never stored in clear."""

    __tablename__ = "sign_in_failure"
    __table_args__ = (Index(None, "limit_key", "failed_at"),)

    failure_id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    # "account:<sha256 hex>" or "address:<sha256 hex>".
    limit_key: str = Field(sa_column=Column(String(80), nullable=False))
    failed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


class AuditRecord(NodeTable, table=True):
    """One link of the audit hash chain: who did what to which subject, and when."""

    __tablename__ = "audit_record"
    __table_args__ = (
        # An auditor's two questions, newest first: what happened to this subject, what did
        # this operator do; without them each page read the whole chain.
        Index(None, "subject_id", "seq"),
        Index(None, "actor", "seq"),
    )

    # Assigned by audit.sequence_pending under a lock, not by a database sequence: a sequence
    # leaves gaps when a transaction rolls back, and a gap is how a deleted record shows.
    seq: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    at: datetime = _when()
    # An operator id, or "node:<node id>" for what the node does on its own.
    actor: str = Field(sa_column=Column(_key_type(80), nullable=False))
    action: str = Field(sa_column=Column(String(64), nullable=False))
    subject_type: str = Field(sa_column=Column(String(32), nullable=False))
    subject_id: str = _id()
    # Ids and enum values only; never a name or identity number.
    details: dict[str, Any] = _json()
    prev_hash: str = _hex_sha256()
    record_hash: str = _hex_sha256()

    GENESIS_HASH: ClassVar[str] = "0" * HEX_SHA256_LENGTH


class AuditPending(NodeTable, table=True):
    """An audit record written by a business transaction and not yet chained.

    audit.sequence_pending moves it into the chain as an AuditRecord, in pending_id order, and
    deletes it in the same transaction.
    """

    __tablename__ = "audit_pending"

    # Orders the queue only; a gap here (a rolled-back transaction) means nothing.
    pending_id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    at: datetime = _when()
    actor: str = Field(sa_column=Column(String(80), nullable=False))
    action: str = Field(sa_column=Column(String(64), nullable=False))
    subject_type: str = Field(sa_column=Column(String(32), nullable=False))
    subject_id: str = _id()
    details: dict[str, Any] = _json()


# The transparency log (RFC 9162): what this node issued, and what it synced from other nodes.


class LogEntry(NodeTable, table=True):
    """One entry of this node's append-only log: an attestation envelope it issued, in order."""

    __tablename__ = "log_entry"
    __table_args__ = (CheckConstraint("length(leaf_hash) = 32", name="leaf_hash_length"),)

    # Position in the log from 0, assigned under the log head's lock in the issuing transaction.
    leaf_index: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    # SHA-256(0x00 || envelope_json) (RFC 9162 2.1.1), kept so proofs never rehash envelopes.
    leaf_hash: bytes = _bytes()
    envelope_json: bytes = _bytes()
    paying_region: str = _region()
    attestation_id: str = Field(sa_column=Column(_key_type(), nullable=False, unique=True))


class LogHead(NodeTable, table=True):
    """The log's one head row: its size, root and compact right edge; locked by every append."""

    __tablename__ = "log_head"
    __table_args__ = (CheckConstraint("head_id = 1", name="single_row"),)

    head_id: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    tree_size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    root_hash: bytes = _bytes()
    # Roots of the perfect subtrees along the right edge, largest first, concatenated
    # (signing.merkle.TreeBuilder.state), so an append costs O(log n) hashes, not O(n).
    compact_state: bytes = _bytes()
    # The largest size the registry witness is known to have cosigned for this log (from a
    # cosignature, or from a refusal naming its size). While the log is shorter (restored from
    # an older backup), appends are refused: they would fork the log.
    witnessed_size: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    # Set by `certfed node restore`: appends wait until the witness has said what it cosigned.
    awaiting_witness: bool = Field(default=False, sa_column=Column(Boolean(), nullable=False))


class LogSubtree(NodeTable, table=True):
    """Root of a complete, aligned subtree of 2**level leaves: immutable once the log holds it.

    Kept for levels from log_store.CACHED_LEVEL up, so a proof reads O(log n) rows and at most
    two short runs of leaf hashes instead of rehashing the log.
    """

    __tablename__ = "log_subtree"

    level: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    subtree_index: int = Field(
        sa_column=Column(BigInteger(), primary_key=True, autoincrement=False)
    )
    subtree_hash: bytes = _bytes()


class LogCheckpoint(NodeTable, table=True):
    """A checkpoint of this log that the registry witness cosigned (C2SP signed note)."""

    __tablename__ = "log_checkpoint"

    tree_size: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    root_hash: bytes = _bytes()
    # The note with the node's signature and the registry's cosignature, as the witness sent it.
    note: bytes = _bytes()
    cosigned_at: datetime = _when()


class WitnessedLog(NodeTable, table=True):
    """This node as a witness (tlog/node_witness.py): the checkpoint it last cosigned for
    another member's log, which every later one must extend consistently."""

    __tablename__ = "witnessed_log"

    origin: str = Field(sa_column=Column(String(160), primary_key=True))
    tree_size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    root_hash: bytes = _bytes()
    # The note as submitted, with this node's cosignature line appended.
    note: bytes = _bytes()
    cosigned_at: datetime = _when()


class InclusionWait(NodeTable, table=True):
    """A peer's attestation stored here and waiting to be proven in its issuer's witnessed
    log before it is applied (tlog/inclusion.py); `proven_at` once it is."""

    __tablename__ = "inclusion_wait"

    issuing_node_id: str = Field(sa_column=Column(_key_type(NODE_ID_LENGTH), primary_key=True))
    attestation_id: str = _id(primary_key=True)
    received_at: datetime = _when()
    attempts: int = _int()
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    last_error: str = _text()
    proven_at: datetime | None = _when(nullable=True)
    # The witnessed checkpoint the attestation was proven against (its tree size and note).
    proven_tree_size: int | None = Field(sa_column=Column(BigInteger(), nullable=True))
    checkpoint_note: bytes | None = _bytes(nullable=True)


class SyncedLog(NodeTable, table=True):
    """How far this node has verified another node's log, and the checkpoint that proved it."""

    __tablename__ = "synced_log"

    origin_node_id: str = Field(sa_column=Column(_key_type(NODE_ID_LENGTH), primary_key=True))
    tree_size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    root_hash: bytes = _bytes()
    compact_state: bytes = _bytes()
    # The cosigned checkpoint of the origin that the stored entries were last verified against.
    checkpoint_note: bytes = _bytes()
    updated_at: datetime = _when()


class SyncedEntry(NodeTable, table=True):
    """An entry of another node's log, stored only after its root was verified."""

    __tablename__ = "synced_entry"

    origin_node_id: str = Field(sa_column=Column(_key_type(NODE_ID_LENGTH), primary_key=True))
    leaf_index: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    envelope_json: bytes = _bytes()
    paying_region: str = _region()


# The paying office's year: entitlements, data signals, payment instructions,
# reminders and the daily cycle. The rules live in federation_node/rules/entitlement.py.


class SignalOutcome(enum.StrEnum):
    APPLIED = "applied"
    UNKNOWN_PERSON = "unknown_person"
    IGNORED = "ignored"


class PaymentAction(enum.StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    TERMINATE = "terminate"


def _money() -> Any:
    return Field(sa_column=Column(BigInteger(), nullable=False))


def _month(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(String(MONTH_LENGTH), nullable=nullable))


class Entitlement(NodeTable, table=True):
    """Where a beneficiary stands in the entitlement lifecycle, and what payment knows of it."""

    __tablename__ = "entitlement"
    __table_args__ = (
        _enum_check("state", EntitlementState),
        CheckConstraint("monthly_amount_fen >= 0", name="monthly_amount_fen_not_negative"),
        Index(None, "state", "beneficiary_id"),
        Index(
            "ix_entitlement_overpaid",
            "beneficiary_id",
            postgresql_where=text(OVERPAID),
            sqlite_where=text(OVERPAID),
        ),
    )

    beneficiary_id: str = _beneficiary(primary_key=True)
    monthly_amount_fen: int = _money()
    state: EntitlementState = _enum(EntitlementState)
    # When the current state took effect (for a termination: the date the evidence names).
    state_since: datetime = _when()
    # A negative signal suspended payment and waits for a reviewer to confirm the termination.
    termination_pending_review: bool = Field(sa_column=Column(Boolean(), nullable=False))
    pending_status: BeneficiaryState | None = Field(
        sa_column=Column(StrEnumType(BeneficiaryState), nullable=True)
    )
    pending_effective_at: datetime | None = _when(nullable=True)
    # First month whose pension is withheld, while a suspension is in effect; else NULL.
    withheld_from_month: str | None = _month(nullable=True)
    # Paid after entitlement ended, to recover.
    overpayment_fen: int = _money()
    updated_at: datetime = _when()


class DataSignal(NodeTable, table=True):
    """A record from a data feed, kept once per (source, source_record_id)."""

    __tablename__ = "data_signal"
    __table_args__ = (
        _enum_check("outcome", SignalOutcome),
        UniqueConstraint("source", "source_record_id"),
        # The retention's daily delete finds the signals past their period through it. Rows go
        # in as they are recorded, so on PostgreSQL a BRIN index (the range of recorded_at in
        # each 1 MiB of the table) does it for a few kilobytes and almost no cost per insert.
        Index(None, "recorded_at", postgresql_using="brin"),
    )

    signal_id: str = _id(primary_key=True)
    source: str = Field(sa_column=Column(_key_type(), nullable=False))
    source_record_id: str = Field(sa_column=Column(_key_type(128), nullable=False))
    # certfed.v1.SignalKind value.
    kind: int = _int()
    beneficiary_id: str | None = _beneficiary(nullable=True, index=True)
    observed_at: datetime = _when()
    outcome: SignalOutcome = _enum(SignalOutcome)
    attestation_id: str | None = _id(nullable=True)
    recorded_by: str = Field(sa_column=Column(String(80), nullable=False))
    recorded_at: datetime = _when()


class PaymentInstruction(NodeTable, table=True):
    """What the bank is told for a month; one per beneficiary, month and action."""

    __tablename__ = "payment_instruction"
    __table_args__ = (
        _enum_check("action", PaymentAction),
        UniqueConstraint("beneficiary_id", "effective_month", "action"),
        Index(None, "effective_month", "instruction_id"),
    )

    instruction_id: str = _id(primary_key=True)
    beneficiary_id: str = _beneficiary()
    action: PaymentAction = _enum(PaymentAction)
    effective_month: str = _month()
    back_pay_fen: int = _money()
    back_pay_months: int = _int()
    overpayment_fen: int = _money()
    created_at: datetime = _when()


class Reminder(NodeTable, table=True):
    """A reminder or overdue notice for a notifier to send; one per validity end and offset."""

    __tablename__ = "reminder"
    __table_args__ = (
        _enum_check("kind", ReminderKind),
        UniqueConstraint("beneficiary_id", "expires_at", "offset_days"),
        Index(None, "acknowledged", "reminder_id"),
    )

    reminder_id: str = _id(primary_key=True)
    beneficiary_id: str = _beneficiary()
    kind: ReminderKind = _enum(ReminderKind)
    # The end of validity the reminder is about, and its day relative to it in the schedule.
    expires_at: datetime = _when()
    offset_days: int = _int()
    acknowledged: bool = Field(sa_column=Column(Boolean(), nullable=False))
    acknowledged_at: datetime | None = _when(nullable=True)
    created_at: datetime = _when()


class CycleRun(NodeTable, table=True):
    """One run of the daily cycle. The day is the primary key: the run that inserts it does the
    day, batch by batch; a later attempt finds it finished and changes nothing, or unfinished
    (a run killed midway) and carries on after its last committed batch."""

    __tablename__ = "cycle_run"

    day: str = Field(sa_column=Column(String(10), primary_key=True))
    actor: str = Field(sa_column=Column(String(80), nullable=False))
    started_at: datetime = _when()
    became_due: int = _int()
    requests_sent: int = _int()
    reminders_queued: int = _int()
    warned: int = _int()
    suspended: int = _int()
    # The last beneficiary id whose batch of the day committed; None before the first.
    resume_after: str | None = _id(nullable=True)
    # None while the day's run is under way (a run killed midway resumes after resume_after).
    finished_at: datetime | None = _when(nullable=True)


class Evidence(NodeTable, table=True):
    """A file kept as evidence of a certification, named by the SHA-256 of its content and
    stored sealed to the node's own key (offices/evidence.py): never in clear."""

    __tablename__ = "evidence"

    # Hex SHA-256 of the file as uploaded: the name certifications and attestations carry.
    sha256: str = Field(sa_column=Column(String(HEX_SHA256_LENGTH), primary_key=True))
    media_type: str = Field(sa_column=Column(String(ENUM_LENGTH), nullable=False))
    size_bytes: int = Field(sa_column=Column(BigInteger(), nullable=False))
    # HPKE-sealed to the node's key, bound to the digest (signing.sealing.at_rest_info).
    sealed_content: bytes = _bytes()
    uploaded_at: datetime = _when()
    # Last uploaded or attached to a certification; the retention period counts from here.
    retained_from: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


# The paying office's roll: monthly amount changes under review, and closed payment months.


class AmountChangeState(enum.StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class AmountChange(NodeTable, table=True):
    """A new monthly amount a clerk proposed; it applies only when another operator, a
    reviewer, approves it (separation of duties). Until then the entitlement keeps its amount."""

    __tablename__ = "amount_change"
    __table_args__ = (
        _enum_check("state", AmountChangeState),
        CheckConstraint("proposed_amount_fen >= 0", name="proposed_amount_fen_not_negative"),
        Index(None, "state", "change_id"),
    )

    change_id: str = _id(primary_key=True)
    beneficiary_id: str = _beneficiary(index=True)
    state: AmountChangeState = _enum(AmountChangeState)
    previous_amount_fen: int = Field(sa_column=Column(BigInteger(), nullable=False))
    proposed_amount_fen: int = Field(sa_column=Column(BigInteger(), nullable=False))
    reason: str = Field(sa_column=Column(String(512), nullable=False))
    proposed_by: str = Field(sa_column=Column(String(80), nullable=False))
    proposed_at: datetime = _when()
    reviewed_by: str | None = Field(sa_column=Column(String(80), nullable=True))
    reviewed_at: datetime | None = _when(nullable=True)
    review_reason: str | None = Field(sa_column=Column(String(512), nullable=True))


class ClosedMonth(NodeTable, table=True):
    """A payment month whose instructions may no longer change: its bank file was exported
    (docs/policy.md, "Closed months")."""

    __tablename__ = "closed_month"

    # "YYYY-MM".
    month: str = Field(sa_column=Column(String(MONTH_LENGTH), primary_key=True))
    closed_by: str = Field(sa_column=Column(String(80), nullable=False))
    closed_at: datetime = _when()


class HoldReason(enum.StrEnum):
    """Why a received attestation was kept for review instead of applied."""

    # It names no request of this office, and its issuer may not certify walk-ins here.
    WALK_IN_NOT_ALLOWED = "walk-in-not-allowed"
    # It names no request of this office and reports a death, imprisonment or disappearance:
    # only an office asked may report those.
    NEGATIVE_WITHOUT_REQUEST = "negative-without-request"
    # It names a request this office never sent, or sent to another node or about another person.
    NOT_OUR_REQUEST = "not-our-request"
    # It corrects an earlier attestation: only this office's reviewer re-applies one.
    CORRECTION = "correction"
    # It shows alive a person whose entitlement ended with imprisonment or a declaration of
    # missing: only this office's reviewer restores it.
    RESTORES_ENTITLEMENT = "restores-entitlement"


class HoldDecision(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    DISMISSED = "dismissed"


class AttestationReview(NodeTable, table=True):
    """A received attestation kept for this office's reviewer, never applied by itself
    (offices/attestation_review.py is the only writer)."""

    __tablename__ = "attestation_review"
    __table_args__ = (
        _enum_check("reason", HoldReason),
        _enum_check("decision", HoldDecision),
        UniqueConstraint("issuing_node_id", "attestation_id"),
    )

    review_id: str = _id(primary_key=True)
    issuing_node_id: str = _node_id()
    attestation_id: str = _id()
    beneficiary_id: str = _beneficiary(index=True)
    reason: HoldReason = _enum(HoldReason)
    held_at: datetime = _when()
    decision: HoldDecision = _enum(HoldDecision)
    decided_by: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    decided_at: datetime | None = _when(nullable=True)
    decision_reason: str = _text()


class PendingSignalDecision(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class PendingSignal(NodeTable, table=True):
    """An alive signal a person entered at the desk, held until a second person approves it
    (offices/pending_signals.py is the only writer). Its (source, source_record_id) is taken
    as `data_signal`'s is: a rerun of the same record is a duplicate."""

    __tablename__ = "pending_signal"
    __table_args__ = (
        _enum_check("decision", PendingSignalDecision),
        UniqueConstraint("source", "source_record_id"),
    )

    pending_signal_id: str = _id(primary_key=True)
    source: str = Field(sa_column=Column(_key_type(), nullable=False))
    source_record_id: str = Field(sa_column=Column(_key_type(128), nullable=False))
    # certfed.v1.SignalKind value.
    kind: int = _int()
    beneficiary_id: str = _beneficiary(index=True)
    observed_at: datetime = _when()
    entered_by: str = Field(sa_column=Column(String(80), nullable=False))
    entered_at: datetime = _when()
    decision: PendingSignalDecision = _enum(PendingSignalDecision)
    decided_by: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    decided_at: datetime | None = _when(nullable=True)
    decision_reason: str = _text()


class FaceRecognitionOutcome(enum.StrEnum):
    CERTIFIED = "certified"
    BELOW_THRESHOLD = "below_threshold"
    IGNORED = "ignored"


class FaceRecognitionRecord(NodeTable, table=True):
    """A provider's face-recognition result for one of this office's people, kept once per
    (provider, provider_reference); store/face_recognitions.py is the only writer. A result
    below the policy's thresholds stays on the follow-up list while the person's validity is
    still `valid_until_then` (no certification by any channel since)."""

    __tablename__ = "face_recognition"
    __table_args__ = (
        _enum_check("outcome", FaceRecognitionOutcome),
        UniqueConstraint("provider", "provider_reference"),
    )

    face_recognition_id: str = _id(primary_key=True)
    provider: str = Field(sa_column=Column(String(64), nullable=False))
    # Keyed (rules/feed_records.py), as a feed's record id is.
    provider_reference: str = Field(sa_column=Column(String(128), nullable=False))
    beneficiary_id: str = _beneficiary(index=True)
    observed_at: datetime = _when()
    liveness_score: float = Field(sa_column=Column(Float(), nullable=False))
    match_score: float = Field(sa_column=Column(Float(), nullable=False))
    # Empty when the person certified themselves (policy.HELPER_RELATIONS otherwise).
    helper_relation: str = Field(sa_column=Column(String(32), nullable=False))
    outcome: FaceRecognitionOutcome = _enum(FaceRecognitionOutcome)
    attestation_id: str | None = _id(nullable=True)
    valid_until_then: datetime | None = _when(nullable=True)
    recorded_by: str = Field(sa_column=Column(String(80), nullable=False))
    recorded_at: datetime = _when()


class EmployerBatchState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class EmployerBatch(NodeTable, table=True):
    """A unit's batch list of retirees it confirms alive, approved or rejected as a whole by a
    reviewer who did not upload it (store/employer_batches.py is the only writer)."""

    __tablename__ = "employer_batch"
    __table_args__ = (_enum_check("state", EmployerBatchState),)

    batch_id: str = _id(primary_key=True)
    unit: str = Field(sa_column=Column(String(128), nullable=False))
    file_name: str = Field(sa_column=Column(String(255), nullable=False))
    file_sha256: str = _hex_sha256()
    state: EmployerBatchState = _enum(EmployerBatchState)
    uploaded_by: str = Field(sa_column=Column(String(80), nullable=False))
    uploaded_at: datetime = _when()
    decided_by: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    decided_at: datetime | None = _when(nullable=True)
    reason: str = _text()
    issued: int = _int()
    skipped: int = _int()


class EmployerBatchRow(NodeTable, table=True):
    """One person of a batch: a pending employer-batch certification until the batch is
    decided; on approval, the certification recorded and the attestation issued for it."""

    __tablename__ = "employer_batch_row"

    row_id: str = _id(primary_key=True)
    batch_id: str = Field(
        sa_column=Column(
            _key_type(),
            ForeignKey("employer_batch.batch_id"),
            nullable=False,
            index=True,
        )
    )
    line: int = _int()
    beneficiary_id: str = _beneficiary()
    observed_at: datetime = _when()
    certification_id: str | None = _id(nullable=True)
    # Why an approved batch skipped this row; empty otherwise.
    skipped_reason: str = _text()


class DebtEntryKind(enum.StrEnum):
    FRAUD = "fraud"
    RECOVERY = "recovery"


class RecoveryMethod(enum.StrEnum):
    BANK_RETURN = "bank_return"
    REPAYMENT = "repayment"
    WITHHOLDING = "withholding"


class DebtEntry(NodeTable, table=True):
    """One line of what a person owes the office beyond the overpayment their entitlement
    carries: a fraud finding (the amount obtained and its fine) or a recovery. Never edited;
    store/recoveries.py is the only writer (offices/recovery.py)."""

    __tablename__ = "debt_entry"
    __table_args__ = (
        _enum_check("kind", DebtEntryKind),
        _enum_check("method", RecoveryMethod),
        CheckConstraint("amount_fen > 0", name="amount_fen_positive"),
        CheckConstraint("fine_fen >= 0", name="fine_fen_not_negative"),
    )

    entry_id: str = _id(primary_key=True)
    beneficiary_id: str = _beneficiary(index=True)
    kind: DebtEntryKind = _enum(DebtEntryKind)
    amount_fen: int = _money()
    fine_fen: int = _money()
    # Recoveries only.
    method: RecoveryMethod | None = Field(
        sa_column=Column(StrEnumType(RecoveryMethod), nullable=True)
    )
    # When the money was received, or the fraud found.
    occurred_at: datetime = _when()
    reference: str = Field(sa_column=Column(String(64), nullable=False))
    recorded_by: str = Field(sa_column=Column(String(80), nullable=False))
    recorded_at: datetime = _when()


class DeathReport(NodeTable, table=True):
    """Who reported a death recorded at this desk, and whether within their report window
    (rules/recovery.py); store/death_reports.py is the only writer."""

    __tablename__ = "death_report"
    __table_args__ = (
        _enum_check("reporter", DeathReporter),
        Index(None, "late", "certification_id"),
    )

    certification_id: str = Field(
        sa_column=Column(
            _key_type(), ForeignKey("certification.certification_id"), primary_key=True
        )
    )
    # None when the person is not one this office pays.
    beneficiary_id: str | None = _beneficiary(nullable=True)
    reporter: DeathReporter = _enum(DeathReporter)
    died_at: datetime = _when()
    reported_at: datetime = _when()
    days_taken: int = _int()
    window_days: int = _int()
    late: bool = Field(sa_column=Column(Boolean(), nullable=False))


class Tally(NodeTable, table=True):
    """A running total of rows the node has written, by counter and label, for the metrics
    (store/tally.py is the only writer): never lowered when retention deletes the rows."""

    __tablename__ = "tally"

    counter: str = Field(sa_column=Column(String(64), primary_key=True))
    label: str = Field(sa_column=Column(String(64), primary_key=True))
    total: int = Field(sa_column=Column(BigInteger(), nullable=False))


class AuditCheck(NodeTable, table=True):
    """How far the audit chain has been verified and what the checks found (store/audit_check.py
    is the only writer). One row, named "chain", created by the migration that added the table."""

    __tablename__ = "audit_check"

    name: str = Field(sa_column=Column(String(16), primary_key=True))
    # Records 1 to through_seq have been verified; through_hash is the hash record through_seq
    # had then, so a later change to it, or its removal, shows at the next check.
    through_seq: int = _int()
    through_hash: str = _hex_sha256()
    checked_at: datetime | None = _when(nullable=True)
    # When a pass last re-read every record from the first, and how far it went.
    full_pass_at: datetime | None = _when(nullable=True)
    full_pass_through: int = _int()
    # What the checks found, oldest first, each sentence once; never cleared by a later pass.
    problems: list[str] = _json()
    problems_dropped: bool = Field(sa_column=Column(Boolean(), nullable=False))
