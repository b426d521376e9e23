"""The paying office's attestations: those it applies, received from a peer or issued here
(registering the people it pays is registration.py, its roll roll.py, the assistance requests
it sends outbound_requests.py).

Applying an attestation has one path, `apply_attestation`, whatever issued it: a peer's
attestation as it is received, one this node issued for a person it pays (its own counter, a
walk-in of its own retiree, a data match) in the transaction that issues it. Validity is this
office's rule: an alive attestation moves validity to its `observed_at` plus this office's
`validity.period_months`, never further, whatever `valid_until` the issuer signed (that stays
the issuer's statement, kept with the attestation).

No member can change this office's payments by itself (docs/security.md):

* a peer's attestation is refused unless its `observed_at` is plausible by this office's policy
  (rules/plausibility.py: not in the future, not before the birth date the identity number
  carries, not more than `certifications.max_age_days` before it was issued, not before the
  person's last certification here);
* it is applied only when it answers a request this office sent to that issuer about that
  person, or is an alive walk-in from a node whose role and region let it certify one; anything
  else is stored and kept for this office's reviewer (attestation_review.py), never applied;
* attestations are kept per issuer (store/attestations_store.py): a member delivering its own
  attestation under an id another node used is stored beside the genuine one and never touches
  it; an issuer reusing one of its own ids for another attestation is refused (ALREADY_EXISTS),
  audited and counted (`certfed_attestation_id_reuses_total`), and the first one kept;
* it is applied only once it is proven in its issuer's transparency log, against a checkpoint
  cosigned by the witnesses this office's policy requires (tlog/inclusion.py,
  tlog/witness_policy.py): until then it is stored and waits, unapplied, and the node's
  inclusion prover applies it (`apply_proven`) when the issuer can prove it;
* a death, imprisonment or disappearance a peer reports only suspends payment and proposes the
  termination; this office's reviewer confirms it and its date (`Lifecycle.review_termination`),
  and only then is the overpayment counted. One recorded and approved at this office's own desk
  was reviewed here already, and ends entitlement on approval.

Each operation validates what the store cannot, then runs in one transaction that writes the state
change, the outbox message announcing it and the audit record together (transactional outbox), so
a crash at any point leaves either all of it or none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlmodel import Session

from certfed.v1 import (
    attestation_pb2,
    common_pb2,
    federation_pb2,
)
from federation.directory import CERTIFYING_ROLES
from federation.envelopes import envelope_from_proto
from federation.errors import (
    CertfedError,
    InvalidInputError,
    NotFoundError,
    NotOurBeneficiaryError,
    PermissionDeniedError,
    UnknownSigningKeyError,
)
from federation.regions import coverage
from federation.timestamps import to_datetime
from federation_node.offices import (
    attestation_review,
    corrections,
    lifecycle,
    restoration,
    revocation_review,
    roll,
)
from federation_node.offices.context import Actor, NodeContext, payload_digest
from federation_node.rules.entitlement import EntitlementState, extended_validity, month_start
from federation_node.rules.plausibility import (
    ObservationBounds,
    birth_date,
    last_certification,
    require_plausible_observation,
)
from federation_node.rules.validation import (
    IDENTITY_KINDS,
    require_digests,
    require_enum,
    require_id,
    require_locator,
    require_node_id,
    require_past,
    require_text,
)
from federation_node.store import (
    assistance,
    attestations_store,
    audit,
    beneficiaries,
    entitlements_store,
    inclusion_waits,
)
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Attestation,
    AttestationReview,
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    HoldDecision,
    HoldReason,
    RequestDirection,
)
from federation_node.tlog.attestation import verify_attestation_envelope
from federation_node.tlog.bundle import MAX_PROOF_HASHES, Bundle
from federation_node.tlog.inclusion import prove_inclusion
from federation_node.tlog.witness_policy import WitnessPolicy
from signing import dsse, merkle

log = structlog.get_logger("certfed.node")

OUTCOME_STATES = {
    common_pb2.CERTIFICATION_OUTCOME_DECEASED: BeneficiaryState.DECEASED,
    common_pb2.CERTIFICATION_OUTCOME_IMPRISONED: BeneficiaryState.IMPRISONED,
    common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING: BeneficiaryState.DECLARED_MISSING,
}


@dataclass(frozen=True)
class ReceivedAttestation:
    attestation: Attestation
    duplicate: bool
    valid_until: datetime | None
    # Why it was kept for this office's reviewer instead of applied; None when applied.
    held: HoldReason | None = None
    # Stored, and applied once proven in its issuer's witnessed log (tlog/inclusion.py).
    awaiting_inclusion: bool = False


class PayingOffice:
    """A paying office (or partner liaison desk) of this node: the attestations it applies."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context
        # Told the issuer of each attestation id reuse refused (the server counts them).
        self.on_id_reused: Callable[[str], None] = lambda issuing_node_id: None
        # Told when a received attestation starts waiting for its inclusion proof.
        self.on_awaiting_inclusion: Callable[[], None] = lambda: None
        # The witnesses this office requires on a peer's checkpoint (set by the server; None:
        # a proof carried with a delivery is not read, the inclusion prover fetches one).
        self.witness_policy: Callable[[], WitnessPolicy] | None = None

    # Flows 1 and 2: verify and apply a delivered attestation.

    def verify_attestation(
        self, envelope: dsse.Envelope
    ) -> tuple[attestation_pb2.CertificationAttestation, str]:
        """Check an attestation envelope against the current directory; a key it does not list
        (rotated in since the last refresh, or ended long ago) triggers one refresh and one fetch of
        the key history before the refusal stands."""
        context = self._context
        skew = timedelta(seconds=context.config.limits.max_clock_skew_s)
        try:
            return verify_attestation_envelope(
                envelope, context.directory.current(), now=context.now(), max_clock_skew=skew
            )
        except UnknownSigningKeyError:
            context.directory.refresh_if_due()
            # A key the live directory no longer lists may be in the registry's key history.
            context.directory.load_key_history()
        return verify_attestation_envelope(
            envelope, context.directory.current(), now=context.now(), max_clock_skew=skew
        )

    def receive_attestation(
        self, caller_node_id: str, message: federation_pb2.DeliverAttestationRequest
    ) -> ReceivedAttestation:
        try:
            return self._receive_attestation(caller_node_id, message)
        except attestations_store.AttestationIdReusedError as reused:
            self._record_id_reuse(reused)
            raise

    def _receive_attestation(
        self, caller_node_id: str, message: federation_pb2.DeliverAttestationRequest
    ) -> ReceivedAttestation:
        limits = self._context.config.limits
        if not message.HasField("envelope"):
            raise InvalidInputError("envelope", "is required")
        envelope = envelope_from_proto(message.envelope)
        attestation, key_id = self.verify_attestation(envelope)
        if attestation.issuing_node_id != caller_node_id:
            raise PermissionDeniedError(
                f"node {caller_node_id} delivered an attestation issued by "
                f"{attestation.issuing_node_id}; issuers deliver their own attestations"
            )
        require_id(attestation.attestation_id, "attestation_id")
        if attestation.paying_node_id != self._context.node_id:
            raise NotOurBeneficiaryError(
                f"attestation {attestation.attestation_id} is addressed to paying node "
                f"{attestation.paying_node_id}, not this node"
            )
        locator = require_locator(attestation.subject_locator)
        outcome = require_enum(attestation.outcome, common_pb2.CertificationOutcome, "outcome")
        method = require_enum(attestation.method, common_pb2.CertificationMethod, "method")
        now = self._context.now()
        # A signed attestation is still checked: a peer's bug must not become our record. Its
        # observed_at is bounded below in the transaction, against the person's records.
        observed_at = require_past(
            to_datetime(attestation.observed_at, "observed_at"), "observed_at", now, limits
        )
        # The issuer's statement, kept with the attestation; validity here is this office's rule.
        attested_until = to_datetime(attestation.valid_until, "valid_until")
        if attested_until < observed_at:
            raise InvalidInputError("valid_until", "is before observed_at")
        if attestation.assistance_request_id:
            require_id(attestation.assistance_request_id, "assistance_request_id")
        if attestation.corrects_attestation_id:
            require_id(attestation.corrects_attestation_id, "corrects_attestation_id")
        require_digests(list(attestation.evidence_digests), limits)
        carried = self._carried_proof(envelope.to_json(), caller_node_id, message)
        held: HoldReason | None = None
        awaiting = False
        with session_scope(self._context.engine) as session:
            beneficiary = beneficiaries.by_locator(session, locator)
            if beneficiary is None:
                raise NotOurBeneficiaryError(
                    f"attestation {attestation.attestation_id} names a person this office does "
                    "not pay; it was not stored"
                )
            stored, duplicate = attestations_store.store_received(
                session,
                attestations_store.AttestationFacts(
                    attestation_id=attestation.attestation_id,
                    envelope_json=envelope.to_json(),
                    issuing_node_id=attestation.issuing_node_id,
                    paying_node_id=self._context.node_id,
                    subject_locator=locator,
                    beneficiary_id=beneficiary.beneficiary_id,
                    request_id=attestation.assistance_request_id or None,
                    method=method,
                    outcome=outcome,
                    observed_at=observed_at,
                    valid_until=attested_until,
                    signing_key_id=key_id,
                    payload_sha256=payload_digest(envelope.payload),
                    corrects_attestation_id=attestation.corrects_attestation_id or None,
                ),
                now,
            )
            if not duplicate and attestation.corrects_attestation_id:
                # A correction of something this office never received is refused, and retried
                # by its issuer until the corrected attestation has arrived.
                corrections.corrected_by(session, attestation, beneficiary.beneficiary_id)
            if not duplicate:
                # Raising here rolls the whole receipt back: an implausible attestation is
                # refused and nothing of it is kept.
                self.require_plausible_observation(
                    session,
                    beneficiary,
                    observed_at,
                    issued_at=to_datetime(attestation.issued_at, "issued_at"),
                    exclude_attestation=(attestation.attestation_id, caller_node_id),
                )
                actor = f"node:{caller_node_id}"
                held = self._hold_reason(session, beneficiary, attestation)
                if held is None:
                    # Applied once proven in the issuer's witnessed log: now, with a proof the
                    # delivery carried, else when the inclusion prover has one (`apply_proven`).
                    if carried is not None:
                        self.apply_attestation(session, beneficiary, attestation, now)
                    else:
                        awaiting = True
                    inclusion_waits.add(
                        session, caller_node_id, attestation.attestation_id, now, proven=carried
                    )
                else:
                    attestation_review.hold(session, stored, held, actor, now)
                    log.warning(
                        "attestation.held_for_review",
                        attestation_id=attestation.attestation_id,
                        issuing_node_id=attestation.issuing_node_id,
                        reason=held.value,
                    )
                audit.append(
                    session,
                    actor=actor,
                    action="attestation.receive",
                    subject_type="attestation",
                    subject_id=attestation.attestation_id,
                    details={
                        "beneficiary_id": beneficiary.beneficiary_id,
                        "outcome": common_pb2.CertificationOutcome.Name(
                            common_pb2.CertificationOutcome.ValueType(outcome)
                        ),
                        "held": held.value if held is not None else None,
                        "awaiting_inclusion": awaiting,
                    },
                    now=now,
                )
                revocation_review.flag_if_revoked(
                    session, stored, self._context.directory.current(), now
                )
            valid_until = beneficiary.valid_until
        if awaiting:
            self.on_awaiting_inclusion()
        return ReceivedAttestation(stored, duplicate, valid_until, held, awaiting)

    def _carried_proof(
        self,
        envelope_json: bytes,
        issuer: str,
        message: federation_pb2.DeliverAttestationRequest,
    ) -> tuple[int, bytes] | None:
        """(tree size, checkpoint note) when the delivery carries a proof of the attestation
        in its issuer's log against a checkpoint this office's witnesses cosigned; None when it
        carries none, or one that does not (yet) satisfy this office: it then waits."""
        if not message.HasField("inclusion") or self.witness_policy is None:
            return None
        inclusion = message.inclusion
        if len(inclusion.hashes) > MAX_PROOF_HASHES or any(
            len(value) != merkle.HASH_SIZE for value in inclusion.hashes
        ):
            raise InvalidInputError(
                "inclusion.hashes",
                f"an audit path has at most {MAX_PROOF_HASHES} hashes of {merkle.HASH_SIZE} bytes",
            )
        bundle = Bundle(
            envelope_json=envelope_json,
            leaf_index=inclusion.leaf_index,
            tree_size=inclusion.tree_size,
            inclusion_proof=tuple(inclusion.hashes),
            checkpoint_note=bytes(inclusion.checkpoint.note),
        )
        try:
            tree_size = prove_inclusion(
                bundle, issuer, self._context.directory.current(), self.witness_policy()
            )
        except CertfedError as error:
            log.warning(
                "attestation.carried_proof_refused", issuing_node_id=issuer, reason=str(error)
            )
            return None
        return tree_size, bundle.checkpoint_note

    def apply_proven(
        self, issuing_node_id: str, attestation_id: str, tree_size: int, checkpoint_note: bytes
    ) -> None:
        """Apply a received attestation now proven in its issuer's witnessed log (tlog/
        inclusion.py), by the one apply path, in one transaction with the proof's record. Its
        plausibility is checked again (the person's records may have moved on since receipt);
        a refusal leaves it stored and unapplied."""
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            wait = inclusion_waits.get(session, issuing_node_id, attestation_id)
            if wait is None or wait.proven_at is not None:
                return
            stored = attestations_store.get(session, attestation_id, issuing_node_id)
            envelope = dsse.Envelope.from_json(
                stored.envelope_json, max_bytes=len(stored.envelope_json)
            )
            attestation = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
            if stored.beneficiary_id is None:
                raise NotOurBeneficiaryError(
                    f"attestation {attestation_id} no longer names a person this office pays"
                )
            beneficiary = beneficiaries.get(session, stored.beneficiary_id)
            self.require_plausible_observation(
                session,
                beneficiary,
                to_datetime(attestation.observed_at, "observed_at"),
                issued_at=to_datetime(attestation.issued_at, "issued_at"),
                exclude_attestation=(attestation_id, issuing_node_id),
            )
            self.apply_attestation(session, beneficiary, attestation, now)
            inclusion_waits.record_proven(session, wait, tree_size, checkpoint_note, now)
            audit.append(
                session,
                actor=f"node:{issuing_node_id}",
                action="attestation.apply_proven",
                subject_type="attestation",
                subject_id=attestation_id,
                details={
                    "beneficiary_id": beneficiary.beneficiary_id,
                    "issuing_node_id": issuing_node_id,
                    "tree_size": tree_size,
                },
                now=now,
            )

    def _record_id_reuse(self, reused: attestations_store.AttestationIdReusedError) -> None:
        """An issuer reused one of its attestation ids for another attestation: a recorded
        incident (audit trail, metric, log), in its own transaction, since the delivery's is
        rolled back. The attestation first stored under the id stays as it was."""
        with session_scope(self._context.engine) as session:
            audit.append(
                session,
                actor=f"node:{reused.issuing_node_id}",
                action="attestation.id_reused",
                subject_type="attestation",
                subject_id=reused.attestation_id,
                details={
                    "issuing_node_id": reused.issuing_node_id,
                    "kept_payload_sha256": reused.kept_sha256,
                    "refused_payload_sha256": reused.refused_sha256,
                },
                now=self._context.now(),
            )
        log.warning(
            "attestation.id_reused",
            attestation_id=reused.attestation_id,
            issuing_node_id=reused.issuing_node_id,
        )
        self.on_id_reused(reused.issuing_node_id)

    def require_plausible_observation(
        self,
        session: Session,
        beneficiary: Beneficiary,
        observed_at: datetime,
        *,
        issued_at: datetime,
        field_name: str = "observed_at",
        exclude_attestation: tuple[str, str] | None = None,
    ) -> datetime:
        """Refuse an observation of one of this office's beneficiaries that this office's policy
        finds implausible (rules/plausibility.py), naming `field_name`."""
        context = self._context
        identity = roll.open_identity(
            self._context, beneficiary.sealed_identity, beneficiary.subject_locator
        )
        kind = IDENTITY_KINDS.get(identity.identity_type)
        last = last_certification(
            attestation_review.last_certified(
                session, beneficiary.beneficiary_id, exclude=exclude_attestation
            ),
            beneficiary.valid_until,
            context.policy.validity_months,
        )
        bounds = ObservationBounds(
            issued_at=issued_at,
            max_age=timedelta(days=context.policy.certification_max_age_days),
            clock_skew=timedelta(seconds=context.config.limits.max_clock_skew_s),
            now=context.now(),
            born=birth_date(kind, identity.identity_number) if kind is not None else None,
            last_certified=last,
        )
        return require_plausible_observation(observed_at, field_name, bounds)

    def _hold_reason(
        self,
        session: Session,
        beneficiary: Beneficiary,
        attestation: attestation_pb2.CertificationAttestation,
    ) -> HoldReason | None:
        """Why a received attestation must wait for this office's reviewer; None if it may be
        applied: it answers a request this office sent to its issuer about this person, or it is
        an alive walk-in certified by a node that certifies in the region it names. A correction
        always waits: a peer's correction never changes payments by itself."""
        if attestation.corrects_attestation_id:
            return HoldReason.CORRECTION
        if (
            attestation.outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE
            and beneficiary.status in restoration.RETURNS
        ):
            return HoldReason.RESTORES_ENTITLEMENT
        request_id = attestation.assistance_request_id
        if request_id:
            try:
                outbound = assistance.get(session, request_id, RequestDirection.OUTBOUND)
            except NotFoundError:
                return HoldReason.NOT_OUR_REQUEST
            if (
                outbound.peer_node_id != attestation.issuing_node_id
                or outbound.beneficiary_id != beneficiary.beneficiary_id
            ):
                return HoldReason.NOT_OUR_REQUEST
            return None
        if attestation.outcome != common_pb2.CERTIFICATION_OUTCOME_ALIVE:
            return HoldReason.NEGATIVE_WITHOUT_REQUEST
        issuer = self._context.directory.current().find(attestation.issuing_node_id)
        walk_in_allowed = (
            issuer is not None
            and bool(CERTIFYING_ROLES.intersection(issuer.roles))
            and any(coverage(code, attestation.certifying_region) for code in issuer.region_codes)
            # A data match is a paying office's own record of its own people, never a walk-in.
            and attestation.method != common_pb2.CERTIFICATION_METHOD_DATA_MATCH
        )
        return None if walk_in_allowed else HoldReason.WALK_IN_NOT_ALLOWED

    def decide_held_attestation(
        self,
        actor: Actor,
        attestation_id: str,
        apply: bool,
        reason: str,
        *,
        issuing_node_id: str = "",
    ) -> tuple[AttestationReview, Beneficiary]:
        """A reviewer applies a held attestation (by the one apply path: a negative outcome
        still only proposes a termination, which another reviewer confirms) or dismisses it."""
        require_id(attestation_id, "attestation_id")
        if issuing_node_id:
            require_node_id(issuing_node_id, "issuing_node_id")
        require_text(reason, "reason", self._context.config.limits, required=True)
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            review, stored = attestation_review.pending(session, attestation_id, issuing_node_id)
            beneficiary = beneficiaries.get(session, review.beneficiary_id)
            if apply:
                envelope = dsse.Envelope.from_json(
                    stored.envelope_json, max_bytes=len(stored.envelope_json)
                )
                attestation = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
                # Checked again: the person's records may have moved on since it was held.
                self.require_plausible_observation(
                    session,
                    beneficiary,
                    to_datetime(attestation.observed_at, "observed_at"),
                    issued_at=to_datetime(attestation.issued_at, "issued_at"),
                    exclude_attestation=(attestation_id, review.issuing_node_id),
                )
                self.apply_attestation(session, beneficiary, attestation, now)
            decision = HoldDecision.APPLIED if apply else HoldDecision.DISMISSED
            attestation_review.decide(session, review, decision, actor.name, reason, now)
            audit.append(
                session,
                actor=actor.label,
                action=f"attestation.review_{decision.value}",
                subject_type="attestation",
                subject_id=attestation_id,
                details={
                    "beneficiary_id": beneficiary.beneficiary_id,
                    "issuing_node_id": review.issuing_node_id,
                    "reason_given": True,
                },
                now=now,
            )
        return review, beneficiary

    def apply_issued(
        self,
        session: Session,
        attestation: attestation_pb2.CertificationAttestation,
        now: datetime,
    ) -> str:
        """Apply an attestation this node is issuing about a person it pays, in the issuing
        transaction; returns the beneficiary's id, stored with the attestation."""
        beneficiary = beneficiaries.by_locator(session, attestation.subject_locator)
        if beneficiary is None:
            raise NotOurBeneficiaryError(
                "this office no longer has the certified person among its beneficiaries"
            )
        # Recorded by a clerk and approved by a reviewer of this office: reviewed here.
        self.apply_attestation(session, beneficiary, attestation, now, reviewed_here=True)
        return beneficiary.beneficiary_id

    def apply_attestation(
        self,
        session: Session,
        beneficiary: Beneficiary,
        attestation: attestation_pb2.CertificationAttestation,
        now: datetime,
        *,
        reviewed_here: bool = False,
    ) -> None:
        """Apply a verified attestation to the beneficiary's record, in the caller's
        transaction: the one path for attestations received and issued here (module docstring).

        Alive: validity moves to observed_at plus this office's period if that is later, and a
        suspended entitlement resumes with back pay (lifecycle.certified). Any other outcome
        suspends payment and proposes the termination to this office's reviewer, unless
        `reviewed_here` (recorded and approved at this office's own desk), which ends
        entitlement now.
        """
        observed_at = to_datetime(attestation.observed_at)
        entitlement = entitlements_store.get(session, beneficiary.beneficiary_id)
        if attestation.corrects_attestation_id:
            # First undo what the superseded attestation did (corrections.py).
            corrected = corrections.corrected_by(session, attestation, beneficiary.beneficiary_id)
            corrections.reverse(
                session,
                self._context.policy,
                beneficiary,
                entitlement,
                corrected,
                OUTCOME_STATES.get(common_pb2.CertificationOutcome.ValueType(corrected.outcome)),
                attestation.attestation_id,
                now,
            )
        if attestation.outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE:
            policy = self._context.policy
            # A person back from prison or reappearing (restoration.py).
            restoration.restore(session, policy, beneficiary, entitlement, observed_at, now)
            valid_until = extended_validity(beneficiary.valid_until, observed_at, policy)
            if valid_until is not None:
                beneficiaries.extend_validity(session, beneficiary, valid_until, now)
                lifecycle.certified(session, policy, entitlement, observed_at, now)
        elif reviewed_here:
            lifecycle.terminate(
                session,
                beneficiary,
                entitlement,
                OUTCOME_STATES[attestation.outcome],
                observed_at,
                now,
            )
        else:
            _propose_termination(
                session, entitlement, OUTCOME_STATES[attestation.outcome], observed_at, now
            )
        request_id = attestation.assistance_request_id
        if request_id:
            try:
                outbound = assistance.get(
                    session, request_id, RequestDirection.OUTBOUND, for_update=True
                )
            except NotFoundError:
                log.warning("attestation.unknown_request", request_id=request_id)
                return
            # Only the node the request went to, certifying the person it was about, answers it:
            # another member naming our request id must not close it.
            if (
                outbound.peer_node_id != attestation.issuing_node_id
                or outbound.beneficiary_id != beneficiary.beneficiary_id
            ):
                log.warning(
                    "attestation.request_mismatch",
                    request_id=request_id,
                    attestation_id=attestation.attestation_id,
                    issuing_node_id=attestation.issuing_node_id,
                )
                return
            assistance.complete(session, outbound, attestation.attestation_id, now)


def _propose_termination(
    session: Session,
    entitlement: Entitlement,
    status: BeneficiaryState,
    effective_at: datetime,
    now: datetime,
) -> None:
    """A death, imprisonment or disappearance reported by a peer: payment is withheld from this
    month and the termination waits for this office's reviewer (`Lifecycle.review_termination`),
    who confirms it and its date; only then is the overpayment counted. Nothing changes for an
    ended entitlement or one whose termination already awaits review."""
    if entitlement.state is EntitlementState.TERMINATED or entitlement.termination_pending_review:
        return
    entitlement.state = EntitlementState.SUSPENDED
    entitlement.state_since = now
    entitlement.termination_pending_review = True
    entitlement.pending_status = status
    entitlement.pending_effective_at = effective_at
    lifecycle.withhold(session, entitlement, month_start(now.date()), now)
    lifecycle.entitlement_updated(session, entitlement, now)
