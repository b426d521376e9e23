"""The paying office's roll: the people it pays as its own system of record lists them.

What this office does with it, one transaction per operation:

* `upsert`: a batch of roll rows, each registered when the person (the identity's locator) is
  new here and otherwise brought up to date: residence region, paying region, name, phone,
  address, scheme and first payment month, where the row gives them. A row's monthly amount
  that differs from the entitlement's is never applied: it becomes a proposal a reviewer
  decides on. Validity comes from the roll only at registration; afterwards only
  certifications move it. All or none per batch, and idempotent: the same rows again change
  nothing and register nobody twice. The inserts are set-based (COPY on PostgreSQL) and the
  identities of a batch are sealed with one HPKE encapsulation (`signing.sealing.seal_many`),
  so a million-row roll goes in within minutes.
* `update_contact`: a clerk changes where a person lives and their phone number (audited).
* a changed monthly amount becomes a proposal for a reviewer (monthly_amounts.py), never an
  update.
* `find`: a person looked up by identity number; the number is turned into the locator here and
  is neither logged nor kept.

Nothing here writes an identity number, a name or a phone number to a log, an error or the
audit trail: errors name the field (`beneficiaries[12].identity.identity_number`), audit
records the ids and the names of the fields changed.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, desk_pb2, registry_pb2
from federation.errors import (
    InvalidInputError,
    UnavailableError,
    UnknownBeneficiaryError,
)
from federation.roles import PAYING_ROLE_NAMES
from federation.timestamps import optional_datetime
from federation_node.locators import Located
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.entitlement import add_months, parse_month
from federation_node.rules.feed_records import roll_key, roll_key_of
from federation_node.rules.validation import (
    IDENTITY_KINDS,
    identity_fields,
    require_id,
    require_record_date,
    require_region,
    require_text,
)
from federation_node.store import (
    amount_changes,
    audit,
    beneficiaries,
    entitlements_store,
    outbox,
)
from federation_node.store.db import lock_and_refresh, session_scope
from federation_node.store.models import (
    REGISTRY_DESTINATION,
    AmountChange,
    Beneficiary,
    Entitlement,
    IdentityType,
    OutboxKind,
    PensionScheme,
)
from signing import sealing
from signing.errors import InvalidIdentityNumberError, UnsealError
from signing.identity import IdentityKind, mask_identity_number, validate_identity_number
from signing.locator import normalised_input

SCHEMES: dict[desk_pb2.PensionScheme.ValueType, PensionScheme] = {
    desk_pb2.PENSION_SCHEME_EMPLOYEE: PensionScheme.EMPLOYEE,
    desk_pb2.PENSION_SCHEME_RESIDENT: PensionScheme.RESIDENT,
    desk_pb2.PENSION_SCHEME_PUBLIC_SERVICE: PensionScheme.PUBLIC_SERVICE,
}
# The parts of the sealed identity a roll row may change.
_IDENTITY_FIELDS = ("full_name", "phone", "address")


@dataclass(frozen=True)
class RollEntry:
    """One person as a registration or roll row gives them, checked and normalised."""

    identity: attestation_pb2.IdentityBundle
    kind: IdentityKind
    locator: bytes
    residence_region: str
    # None when the row leaves it to the node (its first region for a new person).
    paying_region: str | None
    valid_until: datetime | None
    amount_fen: int
    scheme: PensionScheme | None
    payment_start_month: str | None

    def new_beneficiary(
        self, context: NodeContext, sealed_identity: bytes
    ) -> beneficiaries.NewBeneficiary:
        return beneficiaries.NewBeneficiary(
            subject_locator=self.locator,
            identity_type=IdentityType(self.kind.value),
            masked_identity_number=mask_identity_number(self.kind, self.identity.identity_number),
            sealed_identity=sealed_identity,
            residence_region=self.residence_region,
            paying_region=self.paying_region or context.config.primary_region,
            valid_until=self.valid_until,
            # The number was validated and normalised when the entry was checked.
            roll_key=roll_key_of(
                context.keys.hpke, normalised_input(self.kind, self.identity.identity_number)
            ),
            scheme=self.scheme,
            payment_start_month=self.payment_start_month,
        )


@dataclass(frozen=True)
class DateBounds:
    """The latest dates a registration may give, as of one moment (a batch shares them)."""

    # A pension starts at most a year ahead.
    latest_start: datetime
    # Validity runs at most one policy period from the last certification, which is past.
    latest_valid_until: datetime
    validity_months: int

    @classmethod
    def as_of(cls, context: NodeContext) -> DateBounds:
        now = context.now()
        period = context.policy.validity_months
        return cls(add_months(now, 12), add_months(now, period), period)


def on_the_roll(context: NodeContext, inputs: list[bytes]) -> dict[bytes, bytes]:
    """The locators of the people on the roll among these locator inputs, by input: found by
    roll key, so they cost no registry evaluation (`Locators.prefetch`'s `known`)."""
    hpke = context.keys.hpke
    by_key = {roll_key_of(hpke, data): data for data in inputs}
    with Session(context.engine) as session:
        found = beneficiaries.locators_by_roll_key(session, list(by_key))
    return {by_key[key]: locator for key, locator in found.items()}


def checked_entry(
    context: NodeContext,
    request: desk_pb2.RegisterBeneficiaryRequest,
    prefix: str,
    bounds: DateBounds | None = None,
    located: Located | None = None,
) -> RollEntry:
    """A registration checked field by field; every error names `prefix` + the field. `bounds`
    and the identity's locator (in `located`, from `Locators.prefetch`) are computed here when
    the caller has none for its whole batch."""
    config = context.config
    limits = config.limits
    kind = identity_fields(request.identity, f"{prefix}identity", limits)
    given = request.identity.identity_number
    known = located.get((kind, given)) if located is not None else None
    try:
        number, locator = known or context.locators.locate(kind, given)
    except InvalidIdentityNumberError as error:
        raise InvalidInputError(f"{prefix}identity.identity_number", error.reason) from None
    residence = require_region(request.residence_region, f"{prefix}residence_region")
    paying_region = request.paying_region or None
    if paying_region is not None and paying_region not in config.region_codes:
        raise InvalidInputError(
            f"{prefix}paying_region",
            f"this node pays for {', '.join(config.region_codes)} only",
        )
    amount = request.monthly_amount_fen
    if not 0 <= amount <= limits.max_monthly_amount_fen:
        raise InvalidInputError(
            f"{prefix}monthly_amount_fen",
            f"must be between 0 and {limits.max_monthly_amount_fen} fen",
        )
    scheme = None
    if request.scheme:
        scheme = SCHEMES.get(request.scheme)
        if scheme is None:
            raise InvalidInputError(f"{prefix}scheme", "is not a known pension scheme")
    start = request.payment_start_month or None
    if start is not None:
        try:
            parse_month(start)
        except ValueError:
            raise InvalidInputError(
                f"{prefix}payment_start_month", "must be a month written YYYY-MM, e.g. 2015-07"
            ) from None
    if bounds is None:
        bounds = DateBounds.as_of(context)
    if start is not None:
        require_record_date(
            datetime(int(start[:4]), int(start[5:]), 1, tzinfo=UTC),
            f"{prefix}payment_start_month",
            latest=bounds.latest_start,
            what="a pension starts at most a year ahead",
        )
    valid_until = optional_datetime(request, "valid_until")
    if valid_until is not None:
        require_record_date(
            valid_until,
            f"{prefix}valid_until",
            latest=bounds.latest_valid_until,
            what=f"at most {bounds.validity_months} months from today under this office's policy",
        )
    identity = attestation_pb2.IdentityBundle()
    identity.CopyFrom(request.identity)
    identity.identity_number = number
    return RollEntry(
        identity=identity,
        kind=kind,
        locator=locator,
        residence_region=residence,
        paying_region=paying_region,
        valid_until=valid_until,
        amount_fen=amount,
        scheme=scheme,
        payment_start_month=start,
    )


def seal_identities(
    context: NodeContext, identities: Sequence[tuple[attestation_pb2.IdentityBundle, bytes]]
) -> list[bytes]:
    """(identity, locator) pairs sealed at rest to this node's own key, each bound to its
    locator, so a sealed identity moved onto another beneficiary's row does not open."""
    return sealing.seal_many(
        [
            (
                identity.SerializeToString(deterministic=True),
                sealing.at_rest_info(locator.hex()),
            )
            for identity, locator in identities
        ],
        context.keys.hpke.public_raw,
    )


def open_identity(
    context: NodeContext,
    sealed_identity: bytes,
    locator: bytes,
    data_keys: dict[bytes, bytes] | None = None,
) -> attestation_pb2.IdentityBundle:
    """A beneficiary's sealed identity opened; `data_keys` caches the keys of sealed batches."""
    plain = sealing.open_sealed(
        sealed_identity,
        context.keys.hpke,
        sealing.at_rest_info(locator.hex()),
        data_keys=data_keys,
    )
    return attestation_pb2.IdentityBundle.FromString(plain)


class RowOutcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class UpsertedRow:
    outcome: RowOutcome
    beneficiary_id: str
    changed_fields: tuple[str, ...] = ()
    # The amount change this row proposed, or the identical one already awaiting review.
    amount_change_id: str = ""


@dataclass
class _Changes:
    """What one existing beneficiary's row changes."""

    record: beneficiaries.RollRecord
    # Names of the fields changed, and the new values of the columns that hold them.
    fields: list[str]
    columns: dict[str, str | bytes | PensionScheme | None] = field(default_factory=dict)
    identity: attestation_pb2.IdentityBundle | None = None
    amount_change_id: str = ""

    def set(self, column: str, value: str | PensionScheme) -> None:
        self.fields.append(column)
        self.columns[column] = value


class Roll:
    """The roll of a paying office (or partner liaison desk) of this node."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def identity(self, beneficiary: Beneficiary) -> attestation_pb2.IdentityBundle:
        """The beneficiary's identity, unsealed: for a notifier or a sealed request only."""
        return open_identity(
            self._context, beneficiary.sealed_identity, beneficiary.subject_locator
        )

    # Bulk import.

    def upsert(
        self, actor: Actor, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> list[UpsertedRow]:
        context = self._context
        context.require_role(PAYING_ROLE_NAMES, "pay pensions")
        limits = context.config.limits
        if not requests:
            raise InvalidInputError("beneficiaries", "give at least one beneficiary")
        if len(requests) > limits.max_repeated:
            raise InvalidInputError(
                "beneficiaries", f"has {len(requests)} items; the limit is {limits.max_repeated}"
            )
        # Every locator of the batch from the roll (people on it already) or from the registry
        # in a few calls, not one per person.
        located = context.locators.prefetch(
            (
                (kind, request.identity.identity_number)
                for request in requests
                if (kind := IDENTITY_KINDS.get(request.identity.identity_type)) is not None
            ),
            known=functools.partial(on_the_roll, context),
            keep=context.config.locator_reserve,
        )
        bounds = DateBounds.as_of(context)
        entries = [
            checked_entry(context, request, f"beneficiaries[{index}].", bounds, located)
            for index, request in enumerate(requests)
        ]
        first_row: dict[bytes, int] = {}
        for index, entry in enumerate(entries):
            earlier = first_row.setdefault(entry.locator, index)
            if earlier != index:
                raise InvalidInputError(
                    f"beneficiaries[{index}].identity",
                    f"names the same person as beneficiaries[{earlier}]; list each person once",
                )
        now = context.now()
        try:
            with session_scope(context.engine) as session:
                rows = self._upsert(session, actor, entries, now)
        except IntegrityError:
            raise UnavailableError(
                "another registration of some of these people was saved at the same moment; "
                "nothing of this batch was saved, send it again"
            ) from None
        if any(row.outcome is RowOutcome.CREATED for row in rows):
            context.on_enqueued()
        return rows

    def _upsert(
        self, session: Session, actor: Actor, entries: list[RollEntry], now: datetime
    ) -> list[UpsertedRow]:
        context = self._context
        records = beneficiaries.roll_records(session, [entry.locator for entry in entries])
        data_keys: dict[bytes, bytes] = {}
        new_entries = [entry for entry in entries if entry.locator not in records]
        changes: dict[bytes, _Changes] = {}
        for entry in entries:
            record = records.get(entry.locator)
            if record is not None:
                stored = open_identity(
                    context, record.sealed_identity, record.subject_locator, data_keys
                )
                changes[entry.locator] = self._compare(record, entry, stored)
        # Seal every identity this batch writes, new or changed, with one encapsulation.
        to_seal = [(entry.identity, entry.locator) for entry in new_entries] + [
            (change.identity, locator)
            for locator, change in changes.items()
            if change.identity is not None
        ]
        sealed = iter(seal_identities(context, to_seal))
        created_ids = beneficiaries.add_many(
            session,
            [entry.new_beneficiary(context, next(sealed)) for entry in new_entries],
            now,
        )
        entitlements_store.open_many(
            session,
            [(bid, entry.amount_fen) for bid, entry in zip(created_ids, new_entries, strict=True)],
            now,
        )
        created = {entry.locator: bid for bid, entry in zip(created_ids, new_entries, strict=True)}
        updated: list[str] = []
        for change in changes.values():
            if change.identity is not None:
                change.columns["sealed_identity"] = next(sealed)
            if change.columns:
                beneficiaries.update_columns(
                    session, change.record.beneficiary_id, change.columns, now
                )
                updated.append(f"{change.record.beneficiary_id}:{'+'.join(change.fields)}")
        proposed = self._amounts_from_roll(session, actor, entries, changes, now)
        rows = [self._result(entry, created, changes) for entry in entries]
        if created:
            publish = registry_pb2.PublishLocatorsRequest(locators=list(created))
            outbox.enqueue(
                session,
                kind=OutboxKind.PUBLISH_LOCATORS,
                destination=REGISTRY_DESTINATION,
                subject_id=created_ids[0],
                payload=publish.SerializeToString(),
                now=now,
            )
        audit.append(
            session,
            actor=actor.label,
            action="beneficiary.roll_import",
            subject_type="beneficiary",
            subject_id=rows[0].beneficiary_id,
            details={
                "rows": len(entries),
                "created": created_ids,
                "updated": updated,
                "amount_changes_proposed": proposed,
            },
            now=now,
        )
        return rows

    @staticmethod
    def _compare(
        record: beneficiaries.RollRecord, entry: RollEntry, stored: attestation_pb2.IdentityBundle
    ) -> _Changes:
        """What the row changes; empty cells (and validity) leave the record as it is."""
        change = _Changes(record, [])
        if entry.residence_region != record.residence_region:
            change.set("residence_region", entry.residence_region)
        if entry.paying_region is not None and entry.paying_region != record.paying_region:
            change.set("paying_region", entry.paying_region)
        if entry.scheme is not None and entry.scheme != record.scheme:
            change.set("scheme", entry.scheme)
        if (
            entry.payment_start_month is not None
            and entry.payment_start_month != record.payment_start_month
        ):
            change.set("payment_start_month", entry.payment_start_month)
        identity = attestation_pb2.IdentityBundle()
        identity.CopyFrom(stored)
        for name in _IDENTITY_FIELDS:
            given = getattr(entry.identity, name)
            if given and given != getattr(stored, name):
                setattr(identity, name, given)
                change.fields.append(name)
                change.identity = identity
        return change

    def _amounts_from_roll(
        self,
        session: Session,
        actor: Actor,
        entries: list[RollEntry],
        changes: dict[bytes, _Changes],
        now: datetime,
    ) -> list[str]:
        """A roll amount that differs from the entitlement's becomes a proposal, unless the
        same one already awaits review; returns the ids of the proposals made."""
        differing = [
            (entry, changes[entry.locator])
            for entry in entries
            if entry.locator in changes
            and entry.amount_fen != changes[entry.locator].record.monthly_amount_fen
        ]
        if not differing:
            return []
        pending = amount_changes.pending_for(
            session, [change.record.beneficiary_id for _, change in differing]
        )
        proposing: list[_Changes] = []
        proposals: list[amount_changes.Proposal] = []
        for entry, change in differing:
            record = change.record
            waiting = pending.get(record.beneficiary_id)
            if waiting is not None and waiting.proposed_amount_fen == entry.amount_fen:
                change.amount_change_id = waiting.change_id
                continue
            proposing.append(change)
            proposals.append(
                amount_changes.Proposal(
                    record.beneficiary_id, record.monthly_amount_fen, entry.amount_fen
                )
            )
        # A proposal awaiting review with another amount is superseded by the new one.
        proposed = amount_changes.propose_many(
            session, proposals, reason="roll import", proposed_by=actor.name, now=now
        )
        for change, change_id in zip(proposing, proposed, strict=True):
            change.amount_change_id = change_id
        return proposed

    @staticmethod
    def _result(
        entry: RollEntry, created: dict[bytes, str], changes: dict[bytes, _Changes]
    ) -> UpsertedRow:
        if entry.locator in created:
            return UpsertedRow(RowOutcome.CREATED, created[entry.locator])
        change = changes[entry.locator]
        return UpsertedRow(
            RowOutcome.UPDATED if change.fields else RowOutcome.UNCHANGED,
            change.record.beneficiary_id,
            tuple(change.fields),
            change.amount_change_id,
        )

    # One person's record.

    def update_contact(
        self, actor: Actor, request: desk_pb2.UpdateBeneficiaryContactRequest
    ) -> tuple[Beneficiary, list[str]]:
        """Change where a beneficiary lives and their phone number; returns the record and the
        names of the fields that changed (none when both were already so)."""
        context = self._context
        limits = context.config.limits
        require_id(request.beneficiary_id, "beneficiary_id")
        region = (
            require_region(request.residence_region, "residence_region")
            if request.residence_region
            else None
        )
        phone = request.phone if request.HasField("phone") else None
        if phone is not None:
            require_text(phone, "phone", limits)
        if region is None and phone is None:
            raise InvalidInputError(
                "residence_region", "give a new residence region, a phone number, or both"
            )
        now = context.now()
        with session_scope(context.engine) as session:
            person = beneficiaries.get(session, request.beneficiary_id)
            lock_and_refresh(session, person)
            changed: list[str] = []
            if region is not None and region != person.residence_region:
                changed.append("residence_region")
            sealed = None
            if phone is not None:
                identity = open_identity(context, person.sealed_identity, person.subject_locator)
                if identity.phone != phone:
                    identity.phone = phone
                    [sealed] = seal_identities(context, [(identity, person.subject_locator)])
                    changed.append("phone")
            if changed:
                beneficiaries.update_record(
                    session,
                    person,
                    residence_region=region if "residence_region" in changed else None,
                    sealed_identity=sealed,
                    now=now,
                )
                details: dict[str, audit.DetailValue] = {"changed": changed}
                if "residence_region" in changed:
                    details["residence_region"] = region
                audit.append(
                    session,
                    actor=actor.label,
                    action="beneficiary.update_contact",
                    subject_type="beneficiary",
                    subject_id=person.beneficiary_id,
                    details=details,
                    now=now,
                )
        return person, changed

    def find(
        self, request: desk_pb2.FindBeneficiaryRequest
    ) -> tuple[Entitlement, Beneficiary, AmountChange | None]:
        """The beneficiary with this identity, their entitlement and a pending amount change."""
        kind = IDENTITY_KINDS.get(request.identity_type)
        if kind is None:
            raise InvalidInputError("identity_type", "is missing or not a known type")
        try:
            number = validate_identity_number(kind, request.identity_number)
        except InvalidIdentityNumberError as error:
            raise InvalidInputError("identity_number", error.reason) from None
        locator = self._context.locators.subject_locator(kind, number)
        with self._context.session() as session:
            person = beneficiaries.by_locator(session, locator)
            if person is None:
                raise UnknownBeneficiaryError(
                    "no beneficiary of this office has that identity; check the type and number"
                )
            entitlement = entitlements_store.get(session, person.beneficiary_id)
            pending = amount_changes.pending_for(session, [person.beneficiary_id])
        return entitlement, person, pending.get(person.beneficiary_id)


# People keyed per transaction when filling in roll keys.
_FILL_BATCH = 1_000


def fill_roll_keys(context: NodeContext) -> tuple[int, int]:
    """Write the roll key of every person registered before roll keys existed (the node does it
    as it starts and before each feed batch): each sealed identity opened, a batch per
    transaction, so an interrupted run resumes where it stopped. Returns (keyed, skipped): a
    person whose identity does not open or whose number no longer validates is left unkeyed, so
    feeds do not match them; the caller says how many."""
    keyed = skipped = 0
    after = ""
    data_keys: dict[bytes, bytes] = {}
    while True:
        with session_scope(context.engine) as session:
            people = beneficiaries.without_roll_key(session, after, _FILL_BATCH)
            if not people:
                return keyed, skipped
            keys: list[tuple[str, bytes]] = []
            for person in people:
                try:
                    identity = open_identity(
                        context, person.sealed_identity, person.subject_locator, data_keys
                    )
                    kind = IdentityKind(person.identity_type.value)
                    keys.append(
                        (
                            person.beneficiary_id,
                            roll_key(context.keys.hpke, kind, identity.identity_number),
                        )
                    )
                except (UnsealError, DecodeError, InvalidIdentityNumberError):
                    skipped += 1
            beneficiaries.set_roll_keys(session, keys)
            keyed += len(keys)
            after = people[-1].beneficiary_id
