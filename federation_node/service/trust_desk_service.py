"""The desk methods about trust over time: how fresh the directory is, and what needs review
because a signing key was revoked. Mixed into `DeskServicer`; thin, like the rest of it."""

from __future__ import annotations

from datetime import datetime

import grpc

from certfed.v1 import desk_pb2
from federation.timestamps import to_timestamp
from federation.transport import pem_certificate_sha256
from federation_node.offices import revocation_review
from federation_node.offices.node import Node
from federation_node.rules.validation import page_size
from federation_node.store.models import RevocationFinding, RevocationReview

FINDINGS = {
    RevocationFinding.REFUSED_AFTER_REVOCATION: (
        desk_pb2.REVOCATION_FINDING_REFUSED_AFTER_REVOCATION
    ),
    RevocationFinding.SIGNED_BY_SINCE_REVOKED_KEY: (
        desk_pb2.REVOCATION_FINDING_SIGNED_BY_SINCE_REVOKED_KEY
    ),
}


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
                review_view(
                    review, revocation_review.beneficiary_of(session, review.attestation_id)
                )
                for review in reviews
            ]
        return desk_pb2.ListRevocationReviewsResponse(reviews=views, next_page_token=token)
