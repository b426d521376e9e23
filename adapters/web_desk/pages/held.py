"""Attestations a peer delivered that the node kept for a reviewer instead of applying them (one
that answers no request of this office, a death nobody here asked about, a walk-in from a node
that may not certify one): the list, a page per attestation with what it claims and why it was
held, and the reviewer's decision to apply or dismiss it with a reason, checked before it is
sent, confirmed with the reference.

The node has no call for one held attestation: its page finds it in the node's list, a page of
the largest size at a time. Held attestations are the exceptions of an office's year, so this is
a call or two; `listing.MAX_SCAN_PAGES` bounds it all the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import find_in, paged
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.timestamps import optional_datetime

REASON_MAX = 500
ID_MAX = 64
DECISIONS = ("apply", "dismiss")


def _show_all(page: Page) -> bool:
    return page.query("show") == "all"


def held_list(page: Page) -> Response:
    show_all = _show_all(page)

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.HeldAttestation], str]:
        answer = page.node.stub.ListHeldAttestations(
            desk_pb2.ListHeldAttestationsRequest(
                page_size=size, page_token=token, pending_only=not show_all
            )
        )
        return answer.attestations, answer.next_page_token

    return page.render(
        "held_list.html",
        paged=paged(page, "held:all" if show_all else "held:pending", fetch),
        show_all=show_all,
        labels=labels,
        when=optional_datetime,
    )


def find_held(page: Page, attestation_id: str) -> desk_pb2.HeldAttestation | None:
    """The held attestation, decided or not; None when the node keeps none by that id.

    Ids are unique per issuer only, so the page's links name the issuer too (`?issuer=`, a
    node id, never personal data); without it, the first attestation by that id is shown."""
    issuer = page.request.query_params.get("issuer", "")
    if not attestation_id or len(attestation_id) > ID_MAX or len(issuer) > ID_MAX:
        return None

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.HeldAttestation], str]:
        answer = page.node.stub.ListHeldAttestations(
            desk_pb2.ListHeldAttestationsRequest(page_size=size, page_token=token)
        )
        return answer.attestations, answer.next_page_token

    return find_in(
        fetch,
        lambda held: held.attestation_id == attestation_id and issuer in ("", held.issuing_node_id),
    )


def _not_found(page: Page) -> Response:
    return page.render(
        "problem.html",
        status=404,
        title=page._("Held attestation not found"),
        message=page._("This office keeps no attestation by that reference for review."),
        details="",
    )


def _show(
    page: Page,
    held: desk_pb2.HeldAttestation,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "held.html",
        status=status,
        h=held,
        errors=errors or {},
        decision=page.text("decision"),
        reason=page.text("reason"),
        awaiting=held.decision == desk_pb2.HOLD_DECISION_PENDING,
        labels=labels,
        when=optional_datetime,
    )


def held_page(page: Page) -> Response:
    held = find_held(page, page.request.path_params["attestation_id"])
    if held is None:
        return _not_found(page)
    return _show(page, held)


def decide(page: Page) -> Response:
    held = find_held(page, page.request.path_params["attestation_id"])
    if held is None:
        return _not_found(page)
    decision, reason, step = page.text("decision"), page.text("reason"), page.text("step")
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = page._("Choose whether to apply or dismiss the attestation")
    if not reason:
        errors["reason"] = page._("Say why you decide so")
    elif len(reason) > REASON_MAX:
        errors["reason"] = page._("The reason must be 500 characters or fewer")
    if errors or step not in ("check", "confirm"):
        return _show(page, held, errors, status=400 if errors else 200)
    if step == "check":
        return page.render(
            "held_check.html",
            h=held,
            decision=decision,
            reason=reason,
            labels=labels,
            when=optional_datetime,
        )
    try:
        decided = page.node.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=held.attestation_id,
                issuing_node_id=held.issuing_node_id,
                apply=decision == "apply",
                reason=reason,
            )
        ).attestation
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        code = error.code() if isinstance(error, grpc.Call) else None
        return _show(
            page,
            held,
            {"decision": f"{message} {details}".strip()},
            status=labels.HTTP_STATUSES.get(code, 409) if code is not None else 409,
        )
    applied = decided.decision == desk_pb2.HOLD_DECISION_APPLIED
    lines = (
        [
            page._("The attestation now counts in the person's record."),
            page._(
                "If it reports a death, imprisonment or disappearance, it only proposes to end "
                "the payments: another reviewer confirms it."
            ),
        ]
        if applied
        else [page._("The attestation stays unapplied; the person's record does not change.")]
    )
    return page.render(
        "confirmation.html",
        title=page._("Attestation applied") if applied else page._("Attestation dismissed"),
        reference=decided.attestation_id,
        lines=lines,
        back="/held",
        back_label=page._("Back to the held attestations"),
    )
