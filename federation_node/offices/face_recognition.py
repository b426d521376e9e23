"""Face recognition at the paying office: results from a certification app or kiosk, which the
provider signed and the provider adapter verified (adapters/face_recognition.py), arrive from
the feed account bound to that provider (its source).

For each result, in one transaction for the batch:

* a replay of a result kept before (same provider and provider reference, keyed as a feed's
  record id is) is a duplicate and changes nothing;
* a person this office does not pay is answered UNKNOWN_PERSON and nothing is kept;
* a result a helper did for the person ("certify for another", 给他人认证) whose relation the
  policy does not allow, or with a date the paying office's plausibility check refuses, is
  REFUSED with the reason, and nothing is kept;
* scores below either of the policy's thresholds keep the result and put the person on the
  follow-up list (store/face_recognitions.py) until any channel certifies them;
* scores at or above both issue a face-recognition attestation (method RELATIVE_ASSISTED when a
  helper did it) through `Issuer`, applied through the paying office's one apply path, as a
  feed's alive signal is (data_signals.py): its clerk is the feed account, its reviewer
  `policy:face-recognition`, since the thresholds the office set are what was reviewed;
* a person whose entitlement ended, whose termination awaits review, or whose validity already
  runs past what the result would give, is kept and IGNORED.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import InvalidInputError, PermissionDeniedError, PreconditionError
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.issuing import Finding, Issuer
from federation_node.offices.paying_office import PayingOffice
from federation_node.rules.entitlement import EntitlementState, extended_validity
from federation_node.rules.feed_records import keyed_record_id
from federation_node.rules.policy import HELPER_RELATIONS, MAX_FACE_SCORE
from federation_node.rules.validation import (
    IDENTITY_KINDS,
    identity_kind,
    require_past,
    require_text,
)
from federation_node.store import (
    audit,
    beneficiaries,
    entitlements_store,
    face_recognitions,
    operators,
)
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Beneficiary,
    Entitlement,
    FaceRecognitionOutcome,
    FaceRecognitionRecord,
)
from signing.errors import InvalidIdentityNumberError

log = structlog.get_logger("certfed.face_recognition")

# The reviewer named in a face-recognition attestation: the policy's thresholds.
POLICY_REVIEWER = "policy:face-recognition"
MAX_PROVIDER_LENGTH = 64
MAX_REFERENCE_LENGTH = 128

_OUTCOMES = {
    FaceRecognitionOutcome.CERTIFIED: desk_pb2.FACE_RECOGNITION_OUTCOME_CERTIFIED,
    FaceRecognitionOutcome.BELOW_THRESHOLD: desk_pb2.FACE_RECOGNITION_OUTCOME_BELOW_THRESHOLD,
    FaceRecognitionOutcome.IGNORED: desk_pb2.FACE_RECOGNITION_OUTCOME_IGNORED,
}


@dataclass(frozen=True)
class _CheckedResult:
    provider: str
    reference: str
    locator: bytes
    observed_at: datetime
    liveness_score: float
    match_score: float
    helper_relation: str


class FaceRecognitions:
    """Records a provider's face-recognition results for this office's people."""

    def __init__(self, context: NodeContext, issuer: Issuer, paying_office: PayingOffice) -> None:
        self._context = context
        self._issuer = issuer
        self._paying_office = paying_office

    def record_results(
        self, actor: Actor, results: Sequence[desk_pb2.FaceRecognitionResult]
    ) -> list[desk_pb2.FaceRecognitionAnswer]:
        limits = self._context.config.limits
        if not results:
            raise InvalidInputError("results", "give at least one result")
        if len(results) > limits.max_repeated:
            raise InvalidInputError(
                "results", f"has {len(results)} items; the limit is {limits.max_repeated}"
            )
        now = self._context.now()
        # Every locator of the batch from the registry in a few calls, not one per result.
        self._context.locators.prefetch(
            (kind, result.identity_number)
            for result in results
            if (kind := IDENTITY_KINDS.get(result.identity_type)) is not None
        )
        checked = [self._check(index, result, now) for index, result in enumerate(results)]
        with self._context.session() as session:
            allowed = operators.feed_sources(session, actor.name)
        for index, result in enumerate(checked):
            if result.provider not in allowed:
                raise PermissionDeniedError(
                    f"feed account {actor.name} records results only for the providers "
                    f"{', '.join(sorted(allowed)) or '(none)'}; results[{index}].provider "
                    f"{result.provider!r} is not one of them"
                )
        try:
            return self._record(actor, checked, now)
        except IntegrityError:
            # Another call kept some of these results between our read and our commit: this
            # time they are found and answered as duplicates.
            log.info("face_recognition.concurrent_record_retried", count=len(checked))
            return self._record(actor, checked, now)

    def _check(
        self, index: int, result: desk_pb2.FaceRecognitionResult, now: datetime
    ) -> _CheckedResult:
        name = f"results[{index}]"
        limits = self._context.config.limits
        provider = require_text(result.provider, f"{name}.provider", limits, required=True)
        if len(provider) > MAX_PROVIDER_LENGTH:
            raise InvalidInputError(f"{name}.provider", f"is longer than {MAX_PROVIDER_LENGTH}")
        reference = require_text(
            result.provider_reference, f"{name}.provider_reference", limits, required=True
        )
        if len(reference) > MAX_REFERENCE_LENGTH:
            raise InvalidInputError(
                f"{name}.provider_reference", f"is longer than {MAX_REFERENCE_LENGTH}"
            )
        bundle = attestation_pb2.IdentityBundle(
            identity_type=result.identity_type, identity_number=result.identity_number
        )
        kind = identity_kind(bundle, name)
        try:
            _, locator = self._context.locators.locate(kind, result.identity_number)
        except InvalidIdentityNumberError as error:
            raise InvalidInputError(f"{name}.identity_number", str(error)) from None
        if not result.HasField("observed_at"):
            raise InvalidInputError(f"{name}.observed_at", "is required")
        observed_at = require_past(
            to_datetime(result.observed_at), f"{name}.observed_at", now, limits
        )
        for field_name, score in (
            ("liveness_score", result.liveness_score),
            ("match_score", result.match_score),
        ):
            if not (math.isfinite(score) and 0 <= score <= MAX_FACE_SCORE):
                raise InvalidInputError(
                    f"{name}.{field_name}", f"must be a score from 0 to {MAX_FACE_SCORE}"
                )
        relation = result.helper_relation.strip()
        if relation and relation not in HELPER_RELATIONS:
            raise InvalidInputError(
                f"{name}.helper_relation",
                f"is not a known relation; use {', '.join(HELPER_RELATIONS)} or leave it empty",
            )
        return _CheckedResult(
            provider,
            keyed_record_id(self._context.keys.hpke, provider, reference),
            locator,
            observed_at,
            result.liveness_score,
            result.match_score,
            relation,
        )

    def _record(
        self, actor: Actor, checked: list[_CheckedResult], now: datetime
    ) -> list[desk_pb2.FaceRecognitionAnswer]:
        answers: list[desk_pb2.FaceRecognitionAnswer] = []
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
            people = entitlements_store.by_locators(
                session, sorted({result.locator for result in checked})
            )
            for result in checked:
                answer, attestation = self._one(session, actor, result, people, now)
                if attestation is not None:
                    issued.append((attestation, answer.beneficiary_id))
                answers.append(answer)
            counts = Counter(
                desk_pb2.FaceRecognitionOutcome.Name(answer.outcome)
                .removeprefix("FACE_RECOGNITION_OUTCOME_")
                .lower()
                for answer in answers
            )
            audit.append(
                session,
                actor=actor.label,
                action="face_recognition.record",
                subject_type="face_recognition_batch",
                subject_id=new_id(),
                details={**dict(sorted(counts.items())), "attestations": len(issued)},
                now=now,
            )
            # Last, and all at once: one append to the log for the batch (Issuer.issue).
            self._issuer.issue(session, issued, now=now)
        if issued:
            self._issuer.issued()
        return answers

    def _one(
        self,
        session: Session,
        actor: Actor,
        result: _CheckedResult,
        people: dict[bytes, tuple[Beneficiary, Entitlement]],
        now: datetime,
    ) -> tuple[desk_pb2.FaceRecognitionAnswer, attestation_pb2.CertificationAttestation | None]:
        earlier = face_recognitions.recorded(session, result.provider, result.reference)
        if earlier is not None:
            return _answer(
                desk_pb2.FACE_RECOGNITION_OUTCOME_DUPLICATE,
                earlier.beneficiary_id,
                earlier.attestation_id,
                "recorded before (a replayed result); nothing changed",
            ), None
        person = people.get(result.locator)
        if person is None:
            return _answer(
                desk_pb2.FACE_RECOGNITION_OUTCOME_UNKNOWN_PERSON,
                None,
                None,
                "no beneficiary of this office",
            ), None
        beneficiary, entitlement = person
        policy = self._context.policy
        if result.helper_relation and result.helper_relation not in policy.face_helper_relations:
            allowed = ", ".join(sorted(policy.face_helper_relations)) or "none"
            return _answer(
                desk_pb2.FACE_RECOGNITION_OUTCOME_REFUSED,
                beneficiary.beneficiary_id,
                None,
                f"this office's policy does not accept certification by a helper who is the "
                f"person's {result.helper_relation} (accepted: {allowed}); nothing recorded",
            ), None
        try:
            self._paying_office.require_plausible_observation(
                session, beneficiary, result.observed_at, issued_at=now
            )
        except (InvalidInputError, PreconditionError) as error:
            return _answer(
                desk_pb2.FACE_RECOGNITION_OUTCOME_REFUSED,
                beneficiary.beneficiary_id,
                None,
                f"{error}; nothing recorded",
            ), None
        outcome, attestation, message = self._decide(actor, result, beneficiary, entitlement, now)
        if attestation is not None:
            self._paying_office.apply_attestation(session, beneficiary, attestation, now)
        face_recognitions.add(
            session,
            provider=result.provider,
            provider_reference=result.reference,
            beneficiary=beneficiary,
            observed_at=result.observed_at,
            liveness_score=result.liveness_score,
            match_score=result.match_score,
            helper_relation=result.helper_relation,
            outcome=outcome,
            attestation_id=attestation.attestation_id if attestation else None,
            recorded_by=actor.name,
            now=now,
        )
        return _answer(
            _OUTCOMES[outcome],
            beneficiary.beneficiary_id,
            attestation.attestation_id if attestation else None,
            message,
        ), attestation

    def _decide(
        self,
        actor: Actor,
        result: _CheckedResult,
        beneficiary: Beneficiary,
        entitlement: Entitlement,
        now: datetime,
    ) -> tuple[FaceRecognitionOutcome, attestation_pb2.CertificationAttestation | None, str]:
        policy = self._context.policy
        if entitlement.state is EntitlementState.TERMINATED:
            return FaceRecognitionOutcome.IGNORED, None, "entitlement has ended"
        if entitlement.termination_pending_review:
            return FaceRecognitionOutcome.IGNORED, None, "a termination awaits review"
        if (
            result.liveness_score < policy.face_min_liveness_score
            or result.match_score < policy.face_min_match_score
        ):
            return (
                FaceRecognitionOutcome.BELOW_THRESHOLD,
                None,
                f"scores below this office's thresholds (liveness "
                f"{policy.face_min_liveness_score}, match {policy.face_min_match_score}); "
                "listed for certification by another channel",
            )
        if extended_validity(beneficiary.valid_until, result.observed_at, policy) is None:
            return (
                FaceRecognitionOutcome.IGNORED,
                None,
                "validity already runs past what this result would give",
            )
        # The evidence is the provider's result, named by provider, keyed reference and scores.
        evidence = hashlib.sha256(
            f"{result.provider}\n{result.reference}\n{result.liveness_score!r}\n"
            f"{result.match_score!r}\n{result.helper_relation}".encode()
        ).digest()
        method = (
            common_pb2.CERTIFICATION_METHOD_RELATIVE_ASSISTED
            if result.helper_relation
            else common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION
        )
        finding = Finding(
            subject_locator=beneficiary.subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=beneficiary.paying_region,
            certifying_region=beneficiary.paying_region,
            method=method,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=result.observed_at,
            evidence_digests=[evidence],
            clerk_id=actor.name,
            reviewer_id=POLICY_REVIEWER,
        )
        attestation = self._issuer.attestation(finding, now)
        return FaceRecognitionOutcome.CERTIFIED, attestation, "validity extended"

    def list_follow_ups(
        self, page_size: int, page_token: str
    ) -> tuple[list[desk_pb2.FaceRecognitionFollowUp], str]:
        with self._context.session() as session:
            rows, token = face_recognitions.follow_ups(session, page_size, page_token)
            people = beneficiaries.by_ids(session, (row.beneficiary_id for row in rows))
            views = [
                follow_up_view(row, people[row.beneficiary_id].masked_identity_number)
                for row in rows
            ]
            return views, token


def follow_up_view(
    record: FaceRecognitionRecord, masked_identity_number: str
) -> desk_pb2.FaceRecognitionFollowUp:
    return desk_pb2.FaceRecognitionFollowUp(
        masked_identity_number=masked_identity_number,
        follow_up_id=record.face_recognition_id,
        beneficiary_id=record.beneficiary_id,
        provider=record.provider,
        observed_at=to_timestamp(record.observed_at),
        liveness_score=record.liveness_score,
        match_score=record.match_score,
        helper_relation=record.helper_relation,
        recorded_at=to_timestamp(record.recorded_at),
    )


def _answer(
    outcome: desk_pb2.FaceRecognitionOutcome.ValueType,
    beneficiary_id: str | None,
    attestation_id: str | None,
    message: str,
) -> desk_pb2.FaceRecognitionAnswer:
    return desk_pb2.FaceRecognitionAnswer(
        outcome=outcome,
        beneficiary_id=beneficiary_id or "",
        attestation_id=attestation_id or "",
        message=message,
    )
