"""Stored records as the messages clerks and tools see: one mapping per record type."""

from __future__ import annotations

from certfed.v1 import common_pb2, desk_pb2
from federation.timestamps import to_timestamp
from federation_node.offices.assistance_status import STATE_STATUSES
from federation_node.offices.roll import SCHEMES
from federation_node.rules.validation import IDENTITY_TYPES
from federation_node.store import certifications
from federation_node.store.assistance import Listed
from federation_node.store.beneficiaries import Registered
from federation_node.store.models import (
    AssistanceRequest,
    Attestation,
    AttestationDirection,
    Beneficiary,
    BeneficiaryState,
    Certification,
    CertificationState,
    DeliveryState,
    OutboxMessage,
    RequestDirection,
)
from signing.identity import IdentityKind

BENEFICIARY_STATUSES = {
    BeneficiaryState.ACTIVE: desk_pb2.BENEFICIARY_STATUS_ACTIVE,
    BeneficiaryState.DECEASED: desk_pb2.BENEFICIARY_STATUS_DECEASED,
    BeneficiaryState.IMPRISONED: desk_pb2.BENEFICIARY_STATUS_IMPRISONED,
    BeneficiaryState.DECLARED_MISSING: desk_pb2.BENEFICIARY_STATUS_DECLARED_MISSING,
}
CERTIFICATION_STATUSES = {
    CertificationState.AWAITING_REVIEW: desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW,
    CertificationState.APPROVED: desk_pb2.CERTIFICATION_STATUS_APPROVED,
    CertificationState.REJECTED: desk_pb2.CERTIFICATION_STATUS_REJECTED,
}
REQUEST_DIRECTIONS = {
    RequestDirection.OUTBOUND: desk_pb2.DIRECTION_OUTBOUND,
    RequestDirection.INBOUND: desk_pb2.DIRECTION_INBOUND,
}
ATTESTATION_DIRECTIONS = {
    AttestationDirection.ISSUED: desk_pb2.DIRECTION_OUTBOUND,
    AttestationDirection.RECEIVED: desk_pb2.DIRECTION_INBOUND,
}
DELIVERY_STATES = {
    DeliveryState.PENDING: desk_pb2.DELIVERY_STATE_PENDING,
    DeliveryState.DELIVERED: desk_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryState.DEAD: desk_pb2.DELIVERY_STATE_DEAD,
}


SCHEME_VALUES = {scheme: value for value, scheme in SCHEMES.items()}


def _delivery(state: DeliveryState | None) -> desk_pb2.DeliveryState.ValueType:
    return DELIVERY_STATES[state] if state else desk_pb2.DELIVERY_STATE_UNSPECIFIED


def beneficiary_view(record: Beneficiary | Registered) -> desk_pb2.Beneficiary:
    view = desk_pb2.Beneficiary(
        beneficiary_id=record.beneficiary_id,
        identity_type=IDENTITY_TYPES[IdentityKind(record.identity_type)],
        masked_identity_number=record.masked_identity_number,
        residence_region=record.residence_region,
        paying_region=record.paying_region,
        status=BENEFICIARY_STATUSES[record.status],
        possible_duplicate=record.possible_duplicate,
        subject_locator=record.subject_locator,
        scheme=SCHEME_VALUES[record.scheme]
        if record.scheme is not None
        else desk_pb2.PENSION_SCHEME_UNSPECIFIED,
        payment_start_month=record.payment_start_month or "",
    )
    if record.valid_until is not None:
        view.valid_until.CopyFrom(to_timestamp(record.valid_until))
    if record.status_effective_at is not None:
        view.status_effective_at.CopyFrom(to_timestamp(record.status_effective_at))
    return view


def request_view(
    record: AssistanceRequest | Listed, delivery: DeliveryState | None = None
) -> desk_pb2.AssistanceRequestSummary:
    view = desk_pb2.AssistanceRequestSummary(
        request_id=record.request_id,
        direction=REQUEST_DIRECTIONS[record.direction],
        peer_node_id=record.peer_node_id,
        beneficiary_id=record.beneficiary_id or "",
        residence_region=record.residence_region,
        paying_region=record.paying_region,
        status=STATE_STATUSES[record.status],
        status_reason=record.status_reason,
        deadline=to_timestamp(record.deadline),
        created_at=to_timestamp(record.created_at),
        updated_at=to_timestamp(record.updated_at),
        attestation_id=record.attestation_id or "",
        delivery_state=DELIVERY_STATES[delivery]
        if delivery
        else desk_pb2.DELIVERY_STATE_UNSPECIFIED,
    )
    if record.scheduled_for is not None:
        view.scheduled_for.CopyFrom(to_timestamp(record.scheduled_for))
    return view


def certification_view(record: Certification) -> desk_pb2.Certification:
    return desk_pb2.Certification(
        certification_id=record.certification_id,
        status=CERTIFICATION_STATUSES[record.status],
        request_id=record.request_id or "",
        paying_node_id=record.paying_node_id,
        method=common_pb2.CertificationMethod.ValueType(record.method),
        outcome=common_pb2.CertificationOutcome.ValueType(record.outcome),
        observed_at=to_timestamp(record.observed_at),
        clerk_id=record.clerk_id,
        reviewer_id=record.reviewer_id or "",
        attestation_id=record.attestation_id or "",
        recorded_at=to_timestamp(record.recorded_at),
        rejection_reason=record.rejection_reason or "",
        subject_locator=record.subject_locator,
        evidence_digests=[bytes.fromhex(digest) for digest in record.evidence_digests],
        paying_node_ids=certifications.paying_node_ids(record),
        several_paying_offices=bool(record.also_paying),
        corrects_attestation_id=record.corrects_attestation_id or "",
    )


def attestation_view(
    record: Attestation, delivery: DeliveryState | None = None
) -> desk_pb2.AttestationSummary:
    return desk_pb2.AttestationSummary(
        attestation_id=record.attestation_id,
        direction=ATTESTATION_DIRECTIONS[record.direction],
        issuing_node_id=record.issuing_node_id,
        paying_node_id=record.paying_node_id,
        method=common_pb2.CertificationMethod.ValueType(record.method),
        outcome=common_pb2.CertificationOutcome.ValueType(record.outcome),
        observed_at=to_timestamp(record.observed_at),
        valid_until=to_timestamp(record.valid_until),
        beneficiary_id=record.beneficiary_id or "",
        request_id=record.request_id or "",
        delivery_state=DELIVERY_STATES[delivery]
        if delivery
        else desk_pb2.DELIVERY_STATE_UNSPECIFIED,
        corrects_attestation_id=record.corrects_attestation_id or "",
    )


def outbox_view(record: OutboxMessage) -> desk_pb2.OutboxMessage:
    return desk_pb2.OutboxMessage(
        message_id=record.message_id,
        kind=record.kind.value,
        destination=record.destination,
        state=DELIVERY_STATES[record.state],
        attempts=record.attempts,
        next_attempt_at=to_timestamp(record.next_attempt_at),
        last_error=record.last_error or "",
        created_at=to_timestamp(record.created_at),
        subject_id=record.subject_id,
    )
