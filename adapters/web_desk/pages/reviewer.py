"""The reviewer: the queue of recorded checks, a certification's page with its evidence and who
recorded it, approve or reject. The approve button is not offered to the operator who recorded
the check; the node refuses it anyway, and the page then shows why."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import paged
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.errors import status_of
from federation.timestamps import optional_datetime

REASON_MAX = 500


def queue(page: Page) -> Response:
    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.Certification], str]:
        answer = page.node.stub.ListCertifications(
            desk_pb2.ListCertificationsRequest(
                status=desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW,
                page_size=size,
                page_token=token,
            )
        )
        return answer.certifications, answer.next_page_token

    return page.render(
        "reviews.html", paged=paged(page, "reviews", fetch), labels=labels, when=optional_datetime
    )


def _find(page: Page, certification_id: str) -> desk_pb2.Certification | None:
    try:
        found: desk_pb2.Certification = page.node.stub.GetCertification(
            desk_pb2.GetCertificationRequest(certification_id=certification_id)
        ).certification
    except grpc.RpcError as error:
        if status_of(error) not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise
        return None
    return found


def certification(page: Page, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    certification_id = page.request.path_params["certification_id"]
    found = _find(page, certification_id)
    if found is None:
        return page.render(
            "problem.html",
            status=404,
            title=page._("Certification not found"),
            message=page._("It is not among this office's certifications."),
            details="",
        )
    evidence: list[tuple[str, bool]] = []
    for digest in found.evidence_digests:
        try:
            kept = page.node.stub.GetEvidence(desk_pb2.GetEvidenceRequest(sha256=digest)).evidence
            evidence.append((digest.hex(), kept.media_type.startswith("image/")))
        except grpc.RpcError:
            evidence.append((digest.hex(), False))
    return page.render(
        "certification.html",
        status=status,
        c=found,
        evidence=evidence,
        errors=errors or {},
        reason=page.text("reason"),
        recorded_by_me=found.clerk_id == page.me.operator_id,
        awaiting=found.status == desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW,
        labels=labels,
        when=optional_datetime,
    )


def approve(page: Page) -> Response:
    certification_id = page.request.path_params["certification_id"]
    try:
        approved = page.node.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
        ).certification
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        status = (
            labels.HTTP_STATUSES.get(error.code(), 409) if isinstance(error, grpc.Call) else 409
        )
        return certification(page, {"approve": f"{message} {details}".strip()}, status=status)
    return page.render(
        "confirmation.html",
        title=page._("Certification approved"),
        reference=approved.attestation_id or approved.certification_id,
        lines=[page._("The attestation is signed and on its way to the paying office.")],
        back="/reviews",
        back_label=page._("Back to the reviews"),
    )


def reject(page: Page) -> Response:
    certification_id = page.request.path_params["certification_id"]
    reason = page.text("reason")
    if not reason or len(reason) > REASON_MAX:
        message = (
            page._("Say why you reject the check")
            if not reason
            else page._("The reason must be 500 characters or fewer")
        )
        return certification(page, {"reason": message}, status=400)
    try:
        page.node.stub.RejectCertification(
            desk_pb2.RejectCertificationRequest(certification_id=certification_id, reason=reason)
        )
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        return certification(page, {"reason": f"{message} {details}".strip()}, status=409)
    return page.render(
        "confirmation.html",
        title=page._("Certification rejected"),
        reference=certification_id,
        lines=[page._("The clerk who recorded it sees your reason.")],
        back="/reviews",
        back_label=page._("Back to the reviews"),
    )


def evidence(page: Page) -> Response:
    evidence_id = page.request.path_params["evidence_id"]
    try:
        digest = bytes.fromhex(evidence_id)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        return page.render(
            "problem.html",
            status=404,
            title=page._("Page not found"),
            message=page._("Check the address."),
            details="",
        )
    kept = page.node.stub.GetEvidence(desk_pb2.GetEvidenceRequest(sha256=digest))
    media_type = kept.evidence.media_type or "application/octet-stream"
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(
        media_type, "bin"
    )
    return Response(
        kept.content,
        media_type=media_type,
        headers={
            "content-disposition": f'inline; filename="evidence-{evidence_id[:12]}.{extension}"'
        },
    )
