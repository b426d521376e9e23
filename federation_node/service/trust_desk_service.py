"""The desk methods about trust over time: how fresh the directory is, what needs review
because a signing key was revoked, and the attestations peers delivered that were kept for
review instead of applied. Mixed into `DeskServicer`; thin, like the rest of it."""

from __future__ import annotations

from datetime import datetime

import grpc
from sqlmodel import Session

from certfed.v1 import desk_pb2
from federation.principal import caller
from federation.timestamps import to_timestamp
from federation.transport import pem_certificate_sha256
from federation_node.offices import attestation_review, revocation_review
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.rules.validation import page_size
from federation_node.store import attestations_store
from federation_node.store.models import (
    AttestationReview,
    HoldDecision,
    HoldReason,
    RevocationFinding,
    RevocationReview,
)

FINDINGS = {
    RevocationFinding.REFUSED_AFTER_REVOCATION: (
        desk_pb2.REVOCATION_FINDING_REFUSED_AFTER_REVOCATION
    ),
    RevocationFinding.SIGNED_BY_SINCE_REVOKED_KEY: (
        desk_pb2.REVOCATION_FINDING_SIGNED_BY_SINCE_REVOKED_KEY
    ),
}


HOLD_REASONS = {
    HoldReason.WALK_IN_NOT_ALLOWED: desk_pb2.HOLD_REASON_WALK_IN_NOT_ALLOWED,
    HoldReason.NEGATIVE_WITHOUT_REQUEST: desk_pb2.HOLD_REASON_NEGATIVE_WITHOUT_REQUEST,
    HoldReason.NOT_OUR_REQUEST: desk_pb2.HOLD_REASON_NOT_OUR_REQUEST,
    HoldReason.CORRECTION: desk_pb2.HOLD_REASON_CORRECTION,
    HoldReason.RESTORES_ENTITLEMENT: desk_pb2.HOLD_REASON_RESTORES_ENTITLEMENT,
}
HOLD_DECISIONS = {
    HoldDecision.PENDING: desk_pb2.HOLD_DECISION_PENDING,
    HoldDecision.APPLIED: desk_pb2.HOLD_DECISION_APPLIED,
    HoldDecision.DISMISSED: desk_pb2.HOLD_DECISION_DISMISSED,
}


def held_view(session: Session, review: AttestationReview) -> desk_pb2.HeldAttestation:
    stored = attestations_store.get(session, review.attestation_id, review.issuing_node_id)
    view = desk_pb2.HeldAttestation(
        attestation_id=review.attestation_id,
        issuing_node_id=review.issuing_node_id,
        beneficiary_id=review.beneficiary_id,
        reason=HOLD_REASONS[review.reason],
        outcome=stored.outcome,  # type: ignore[arg-type]
        method=stored.method,  # type: ignore[arg-type]
        observed_at=to_timestamp(stored.observed_at),
        assistance_request_id=stored.request_id or "",
        held_at=to_timestamp(review.held_at),
        decision=HOLD_DECISIONS[review.decision],
        decided_by=review.decided_by or "",
        decision_reason=review.decision_reason,
        corrects_attestation_id=stored.corrects_attestation_id or "",
    )
    _set_time(view, "decided_at", review.decided_at)
    return view


def _set_time(message: object, field: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field).CopyFrom(to_timestamp(moment))


def review_view(review: RevocationReview, beneficiary_id: str) -> desk_pb2.RevocationReview:
    return desk_pb2.RevocationReview(
        attestation_id=review.attestation_id,
        issuing_node_id=review.issuing_node_id,
        signing_key_id=review.signing_key_id,
        finding=FINDINGS[review.finding],
        issued_at=to_timestamp(review.issued_at),
        key_revoked_at=to_timestamp(review.key_revoked_at),
        revocation_reason=review.revocation_reason,
        flagged_at=to_timestamp(review.flagged_at),
        directory_version=review.directory_version,
        beneficiary_id=beneficiary_id,
    )


class TrustDesk:
    """GetDirectoryStatus and ListRevocationReviews, for a servicer holding `_node`."""

    _node: Node

    def GetDirectoryStatus(
        self, request: desk_pb2.GetDirectoryStatusRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetDirectoryStatusResponse:
        node = self._node.context
        freshness = node.directory.freshness()
        response = desk_pb2.GetDirectoryStatusResponse(
            version=freshness.version,
            stale=freshness.stale,
            expired=freshness.expired,
            last_error=freshness.last_error,
            root_key_id=freshness.root_key_id,
            root_version=freshness.root_version,
            signing_key_id=node.keys.signing.key_id,
            tls_certificate_sha256=pem_certificate_sha256(node.keys.tls.certificate_pem),
        )
        _set_time(response, "issued_at", freshness.issued_at)
        _set_time(response, "expires_at", freshness.expires_at)
        _set_time(response, "last_refresh_ok", freshness.last_refresh_ok)
        _set_time(response, "last_attempt", freshness.last_attempt)
        return response

    def ListRevocationReviews(
        self, request: desk_pb2.ListRevocationReviewsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListRevocationReviewsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        with self._node.context.session() as session:
            reviews, token = revocation_review.page(session, size, request.page_token)
            views = [
                review_view(review, revocation_review.beneficiary_of(session, review))
                for review in reviews
            ]
        return desk_pb2.ListRevocationReviewsResponse(reviews=views, next_page_token=token)

    def ListHeldAttestations(
        self, request: desk_pb2.ListHeldAttestationsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListHeldAttestationsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        with self._node.context.session() as session:
            held, token = attestation_review.page(
                session, size, request.page_token, pending_only=request.pending_only
            )
            views = [held_view(session, review) for review in held]
        return desk_pb2.ListHeldAttestationsResponse(attestations=views, next_page_token=token)

    def DecideHeldAttestation(
        self, request: desk_pb2.DecideHeldAttestationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.DecideHeldAttestationResponse:
        review, _ = self._node.paying_office.decide_held_attestation(
            Actor("operator", caller().name),
            request.attestation_id,
            request.apply,
            request.reason,
            issuing_node_id=request.issuing_node_id,
        )
        with self._node.context.session() as session:
            view = held_view(session, review)
        return desk_pb2.DecideHeldAttestationResponse(attestation=view)
