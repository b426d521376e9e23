"""Certifications at this node's desk: a clerk records how a person was seen, a different
reviewer approves it, and the node issues the signed attestation (issuing.py).

Whom a clerk may certify follows from the node's roles:

* a residence agency or partner desk: the person an inbound assistance request names, and a
  walk-in whom another office pays (found through the registry's locator index; when several
  offices published the person's locator, each is sent its own attestation of the check and the
  desk tells the clerk, since any member can publish any locator);
* a paying office: its own beneficiaries, by beneficiary id (at its counter, by video call, on a
  home visit, by face recognition, helped by a relative) or as a walk-in it recognises.

Separation of duties (处理权与审核权分离): the store refuses the recording clerk as reviewer
(store/certifications.py). Only an approval issues; when this node pays the person, the approval
also applies the attestation to the office's own record in the same transaction, through the
paying office's one apply path (paying_office.py), so a certification made here and one received
from a peer move validity and payment by the same rules. Every file a certification names must
have been uploaded here first (evidence.py).

The date a clerk says the person was seen is bounded as a paying office bounds it on receipt
(rules/plausibility.py, with this node's policy): not in the future, not before the birth date a
resident ID number carries, not more than `certifications.max_age_days` before today, and, for a
person this office pays, not before their last certification here. The age is checked again on
approval, when the attestation is issued.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation import tracing
from federation.errors import InvalidInputError, PreconditionError
from federation.roles import PAYING_ROLE_NAMES
from federation.timestamps import to_datetime
from federation_node.offices import corrections, death_reports
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.evidence import EvidenceArchive
from federation_node.offices.issuing import Finding, Issuer
from federation_node.offices.life_events import STATUS_OUTCOMES, LifeEvents
from federation_node.offices.paying_office import PayingOffice
from federation_node.offices.residence_agency import ResidenceAgency
from federation_node.offices.restoration import RETURNS
from federation_node.rules.plausibility import (
    ObservationBounds,
    birth_date,
    require_plausible_observation,
)
from federation_node.rules.validation import (
    IDENTITY_KINDS,
    normalised_identity,
    require_digests,
    require_enum,
    require_id,
    require_past,
    require_text,
)
from federation_node.store import audit, beneficiaries, certifications
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, BeneficiaryState, Certification
from signing import dsse


@dataclass(frozen=True)
class _Subject:
    """Whom a certification is about, and which office pays them."""

    locator: bytes
    paying_node_id: str
    paying_region: str
    request_id: str | None = None
    # Set when this office pays the person.
    beneficiary_id: str | None = None
    # The birth date the identity number of a person another office pays carries, if any (the
    # paying office's own check reads it for its own beneficiaries).
    born: date | None = None
    # A walk-in several offices claim: the others, node id to paying region. Each is sent its
    # own attestation on approval.
    also_paying: dict[str, str] | None = None
    # The attestation of this node a correction supersedes (corrections.py).
    corrects_attestation_id: str | None = None


class Certifier:
    """Records certifications, and approves or rejects them, at this node's desk."""

    def __init__(
        self,
        context: NodeContext,
        issuer: Issuer,
        residence_agency: ResidenceAgency,
        paying_office: PayingOffice,
        evidence: EvidenceArchive,
        life_events: LifeEvents,
    ) -> None:
        self._context = context
        self._issuer = issuer
        self._residence_agency = residence_agency
        self._paying_office = paying_office
        self._evidence = evidence
        self._life_events = life_events

    def record_certification(
        self, actor: Actor, request: desk_pb2.RecordCertificationRequest
    ) -> Certification:
        limits = self._context.config.limits
        method = require_enum(request.method, common_pb2.CertificationMethod, "method")
        if method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH:
            raise InvalidInputError(
                "method",
                "a data match comes from a data feed (RecordSignals), not from a clerk's check; "
                "give how the person was seen (on_site, video_call, home_visit, ...)",
            )
        outcome = require_enum(request.outcome, common_pb2.CertificationOutcome, "outcome")
        reporter = death_reports.reporter_of(request, outcome)
        if not request.HasField("observed_at"):
            raise InvalidInputError("observed_at", "is required")
        now = self._context.now()
        observed_at = require_past(
            to_datetime(request.observed_at, "observed_at"), "observed_at", now, limits
        )
        digests = require_digests(list(request.evidence_digests), limits)
        note = require_text(request.note, "note", limits)
        subject = (
            self._corrected_subject(request)
            if request.corrects_attestation_id
            else self._subject(request)
        )
        if (
            subject.beneficiary_id is not None
            and subject.corrects_attestation_id is None
            and outcome in STATUS_OUTCOMES.values()
        ):
            # A death (imprisonment, disappearance) of one of this office's own people goes to
            # every other office paying them too, as a walk-in several claim (life_events.py).
            others = self._life_events.other_offices(subject.locator).offices
            if others:
                subject = dataclasses.replace(subject, also_paying=others)
        with session_scope(self._context.engine) as session:
            self._require_plausible(session, observed_at, subject.beneficiary_id, subject.born, now)
            self._evidence.require_kept(session, digests, now)
            recorded = certifications.record(
                session,
                request_id=subject.request_id,
                subject_locator=subject.locator,
                paying_node_id=subject.paying_node_id,
                paying_region=subject.paying_region,
                certifying_region=self._context.config.primary_region,
                method=method,
                outcome=outcome,
                observed_at=observed_at,
                evidence_digests=digests,
                note=note,
                clerk_id=actor.name,
                also_paying=subject.also_paying,
                corrects_attestation_id=subject.corrects_attestation_id,
                now=now,
            )
            if reporter is not None:
                death_reports.record(
                    session, self._context.policy, recorded, reporter, subject.beneficiary_id, now
                )
            audit.append(
                session,
                actor=actor.label,
                action="certification.record",
                subject_type="certification",
                subject_id=recorded.certification_id,
                details={
                    "request_id": subject.request_id,
                    "walk_in": request.WhichOneof("subject") == "walk_in",
                    "beneficiary_id": subject.beneficiary_id,
                    "evidence_files": len(digests),
                    "paying_node_ids": certifications.paying_node_ids(recorded),
                    "corrects_attestation_id": subject.corrects_attestation_id,
                },
                now=now,
            )
        return recorded

    def _require_plausible(
        self,
        session: Session,
        observed_at: datetime,
        beneficiary_id: str | None,
        born: date | None,
        now: datetime,
    ) -> None:
        """The bounds a paying office applies on receipt, with this node's policy: for a person
        this office pays, exactly the paying office's check."""
        if beneficiary_id is not None:
            beneficiary = beneficiaries.get(session, beneficiary_id)
            self._paying_office.require_plausible_observation(
                session, beneficiary, observed_at, issued_at=now
            )
            return
        context = self._context
        bounds = ObservationBounds(
            issued_at=now,
            max_age=timedelta(days=context.policy.certification_max_age_days),
            clock_skew=timedelta(seconds=context.config.limits.max_clock_skew_s),
            now=now,
            born=born,
        )
        require_plausible_observation(observed_at, "observed_at", bounds)

    def _subject(self, request: desk_pb2.RecordCertificationRequest) -> _Subject:
        which = request.WhichOneof("subject")
        if which == "request_id":
            request_id = require_id(request.request_id, "request_id")
            inbound = self._residence_agency.inbound_request(request_id)
            return _Subject(
                inbound.subject_locator,
                inbound.paying_node_id,
                inbound.paying_region,
                request_id=request_id,
                born=_born(self._residence_agency.inbound_identity(inbound)),
            )
        if which == "beneficiary_id":
            self._context.require_role(
                PAYING_ROLE_NAMES, "pay pensions, so it has no beneficiaries of its own to certify"
            )
            beneficiary_id = require_id(request.beneficiary_id, "beneficiary_id")
            with self._context.session() as session:
                beneficiary = beneficiaries.get(session, beneficiary_id)
            return self._own(beneficiary)
        if which == "walk_in":
            limits = self._context.config.limits
            kind, number = normalised_identity(request.walk_in, "walk_in", limits)
            locator = self._context.locators.subject_locator(kind, number)
            own = self._own_by_locator(locator)
            if own is not None:
                return self._own(own)
            [(paying_node_id, paying_region), *others] = self._residence_agency.paying_offices_of(
                locator
            )
            return _Subject(
                locator,
                paying_node_id,
                paying_region,
                born=birth_date(kind, number),
                also_paying=dict(others) or None,
            )
        raise InvalidInputError(
            "subject", "give request_id, beneficiary_id or the walk-in identity"
        )

    def _corrected_subject(self, request: desk_pb2.RecordCertificationRequest) -> _Subject:
        """A correction is about the person the attestation it corrects names, paid by the
        office that attestation went to; that attestation must be this node's, not corrected
        yet (corrections.py)."""
        if request.WhichOneof("subject") is not None:
            raise InvalidInputError(
                "subject",
                "a correction is about the person the corrected attestation names; give "
                "corrects_attestation_id and no request_id, beneficiary_id or walk-in identity",
            )
        attestation_id = require_id(request.corrects_attestation_id, "corrects_attestation_id")
        with self._context.session() as session:
            corrected = corrections.correctable_here(session, self._context.node_id, attestation_id)
        envelope = dsse.Envelope.from_json(
            corrected.envelope_json, max_bytes=len(corrected.envelope_json)
        )
        signed = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
        own = corrected.paying_node_id == self._context.node_id
        return _Subject(
            corrected.subject_locator,
            corrected.paying_node_id,
            signed.paying_region,
            beneficiary_id=corrected.beneficiary_id if own else None,
            corrects_attestation_id=attestation_id,
        )

    def _own_by_locator(self, locator: bytes) -> Beneficiary | None:
        """The beneficiary a walk-in is, when this office pays them."""
        if not PAYING_ROLE_NAMES.intersection(self._context.config.roles):
            return None
        with self._context.session() as session:
            return beneficiaries.by_locator(session, locator)

    def _own(self, beneficiary: Beneficiary) -> _Subject:
        # A person released from prison or reappearing is certified to restore entitlement.
        if beneficiary.status is not BeneficiaryState.ACTIVE and beneficiary.status not in RETURNS:
            raise PreconditionError(
                f"beneficiary {beneficiary.beneficiary_id} is {beneficiary.status.value}: "
                "entitlement has ended, so there is nothing to certify"
            )
        return _Subject(
            beneficiary.subject_locator,
            self._context.node_id,
            beneficiary.paying_region,
            beneficiary_id=beneficiary.beneficiary_id,
        )

    def approve_certification(self, actor: Actor, certification_id: str) -> Certification:
        if not tracing.enabled():
            return self._approve_certification(actor, certification_id)
        # The approval answers a request: it joins the trace the request came in.
        require_id(certification_id, "certification_id")
        with self._context.session() as session:
            request_id = certifications.get(session, certification_id).request_id
        with tracing.resumed(request_id or certification_id, "certification.approve"):
            return self._approve_certification(actor, certification_id)

    def _approve_certification(self, actor: Actor, certification_id: str) -> Certification:
        require_id(certification_id, "certification_id")
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            pending = certifications.get(session, certification_id, for_update=True)
            finding = _finding(pending, actor.name)
            attestation = self._issuer.attestation(finding, now)
            attestation_id = attestation.attestation_id
            # A walk-in several offices claim: each is sent its own attestation of the same
            # check.
            also_sent = [
                self._issuer.attestation(
                    dataclasses.replace(finding, paying_node_id=node_id, paying_region=region),
                    now,
                )
                for node_id, region in sorted((pending.also_paying or {}).items())
            ]
            if pending.corrects_attestation_id is not None:
                # Another correction of the same attestation may have been approved since.
                corrections.correctable_here(
                    session, self._context.node_id, pending.corrects_attestation_id
                )
            # Issued now: the observation must still be current, and not superseded since.
            own = (
                beneficiaries.by_locator(session, pending.subject_locator)
                if pending.paying_node_id == self._context.node_id
                else None
            )
            self._require_plausible(
                session,
                pending.observed_at,
                own.beneficiary_id if own is not None else None,
                None,
                now,
            )
            certifications.approve(session, pending, actor.name, attestation_id, now)
            beneficiary_id: str | None = None
            if pending.paying_node_id == self._context.node_id:
                beneficiary_id = self._paying_office.apply_issued(session, attestation, now)
            if pending.request_id is not None:
                self._residence_agency.complete_request(
                    session, pending.request_id, attestation_id, now
                )
            audit.append(
                session,
                actor=actor.label,
                action="certification.approve",
                subject_type="certification",
                subject_id=certification_id,
                details={
                    "attestation_id": attestation_id,
                    "applied_to": beneficiary_id,
                    "also_sent": [other.attestation_id for other in also_sent],
                    "also_sent_to": [other.paying_node_id for other in also_sent],
                },
                now=now,
            )
            # Last: the log head stays locked only until the commit (Issuer.issue).
            issued = [(attestation, beneficiary_id), *((other, None) for other in also_sent)]
            self._issuer.issue(session, issued, now=now)
        self._issuer.issued()
        return pending

    def reject_certification(
        self, actor: Actor, certification_id: str, reason: str
    ) -> Certification:
        require_id(certification_id, "certification_id")
        require_text(reason, "reason", self._context.config.limits, required=True)
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            pending = certifications.get(session, certification_id, for_update=True)
            certifications.reject(session, pending, actor.name, reason, now)
            audit.append(
                session,
                actor=actor.label,
                action="certification.reject",
                subject_type="certification",
                subject_id=certification_id,
                details={},
                now=now,
            )
        return pending


def _born(identity: attestation_pb2.IdentityBundle) -> date | None:
    kind = IDENTITY_KINDS.get(identity.identity_type)
    return birth_date(kind, identity.identity_number) if kind is not None else None


def _finding(pending: Certification, reviewer_id: str) -> Finding:
    """What a clerk recorded and a reviewer approved, as the issuer signs it."""
    return Finding(
        subject_locator=pending.subject_locator,
        paying_node_id=pending.paying_node_id,
        paying_region=pending.paying_region,
        certifying_region=pending.certifying_region,
        method=common_pb2.CertificationMethod.ValueType(pending.method),
        outcome=common_pb2.CertificationOutcome.ValueType(pending.outcome),
        observed_at=pending.observed_at,
        evidence_digests=[bytes.fromhex(digest) for digest in pending.evidence_digests],
        clerk_id=pending.clerk_id,
        reviewer_id=reviewer_id,
        request_id=pending.request_id,
        corrects_attestation_id=pending.corrects_attestation_id,
    )
