"""Employers' batch lists at the paying office: a unit confirms its civil-service retirees alive
in one list, a clerk uploads it (`certfed adapter employer-batch upload`), and a reviewer who did
not upload it approves the batch whole (every row's attestation is issued) or rejects it with a
reason (nothing changes).

The pages: the batches (awaiting a decision, or all; paged), a page per batch (the unit, the
file, who uploaded it and when, how many people it names and, once approved, how many were
certified), and the reviewer's decision, checked before it is sent and confirmed with the
reference. The uploader is not offered the decision; the node refuses it anyway (four eyes), and
the page then says so in the operator's language.

A batch's page lists its rows, paged: the line of the unit's file, the person by the masked
number, the day the unit saw them and, once approved, whether the row was certified or why not.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import Paged, paged
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.errors import status_of
from federation.timestamps import optional_datetime

REASON_MAX = 500
ID_MAX = 64
DECISIONS = ("approve", "reject")
# The id of the page's notice to the uploader, where the error summary's link leads.
FOUR_EYES = "four-eyes"


def _show_all(page: Page) -> bool:
    return page.query("show") == "all"


def batches(page: Page) -> Response:
    show_all = _show_all(page)
    state = (
        desk_pb2.EMPLOYER_BATCH_STATE_UNSPECIFIED
        if show_all
        else desk_pb2.EMPLOYER_BATCH_STATE_PENDING
    )

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.EmployerBatch], str]:
        answer = page.node.stub.ListEmployerBatches(
            desk_pb2.ListEmployerBatchesRequest(state=state, page_size=size, page_token=token)
        )
        return answer.batches, answer.next_page_token

    return page.render(
        "employer_batches.html",
        paged=paged(page, "employer-batches:all" if show_all else "employer-batches", fetch),
        show_all=show_all,
        labels=labels,
        when=optional_datetime,
    )


def find_batch(page: Page, batch_id: str) -> desk_pb2.EmployerBatch | None:
    """The batch, decided or not; None when the node keeps none by that id."""
    if not batch_id or len(batch_id) > ID_MAX:
        return None
    try:
        return page.node.stub.GetEmployerBatch(
            desk_pb2.GetEmployerBatchRequest(batch_id=batch_id, page_size=1)
        ).batch
    except grpc.RpcError as error:
        # An id the node cannot read is a batch it does not keep, like an unknown one.
        if status_of(error) in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


def _entries(page: Page, batch_id: str) -> Paged[desk_pb2.EmployerBatchEntry]:
    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.EmployerBatchEntry], str]:
        answer = page.node.stub.GetEmployerBatch(
            desk_pb2.GetEmployerBatchRequest(batch_id=batch_id, page_size=size, page_token=token)
        )
        return answer.entries, answer.next_page_token

    return paged(page, f"employer-batch:{batch_id}", fetch)


def _not_found(page: Page) -> Response:
    return page.render(
        "problem.html",
        status=404,
        title=page._("Employer batch not found"),
        message=page._("This office keeps no employer batch by that reference."),
        details="",
    )


def _uploaded_by_me(page: Page, batch: desk_pb2.EmployerBatch) -> bool:
    return batch.uploaded_by == page.me.operator_id


def _four_eyes(page: Page) -> str:
    return page._("You uploaded this batch: a different reviewer must approve or reject it.")


def _show(
    page: Page,
    batch: desk_pb2.EmployerBatch,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "employer_batch.html",
        status=status,
        b=batch,
        errors=errors or {},
        decision=page.text("decision"),
        reason=page.text("reason"),
        pending=batch.state == desk_pb2.EMPLOYER_BATCH_STATE_PENDING,
        approved=batch.state == desk_pb2.EMPLOYER_BATCH_STATE_APPROVED,
        uploaded_by_me=_uploaded_by_me(page, batch),
        entries=_entries(page, batch.batch_id),
        labels=labels,
        when=optional_datetime,
    )


def batch_page(page: Page) -> Response:
    batch = find_batch(page, page.request.path_params["batch_id"])
    if batch is None:
        return _not_found(page)
    return _show(page, batch)


def decide(page: Page) -> Response:
    batch = find_batch(page, page.request.path_params["batch_id"])
    if batch is None:
        return _not_found(page)
    decision, reason, step = page.text("decision"), page.text("reason"), page.text("step")
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = page._("Choose whether to approve or reject the batch")
    elif _uploaded_by_me(page, batch) and step == "check":
        errors[FOUR_EYES] = _four_eyes(page)
    if decision == "reject" and not reason:
        errors["reason"] = page._("Say why you reject the batch")
    elif len(reason) > REASON_MAX:
        errors["reason"] = page._("The reason must be 500 characters or fewer")
    if errors or step not in ("check", "confirm"):
        return _show(page, batch, errors, status=400 if errors else 200)
    if step == "check":
        return page.render(
            "employer_batch_check.html",
            b=batch,
            decision=decision,
            reason=reason,
            when=optional_datetime,
        )
    try:
        decided = page.node.stub.DecideEmployerBatch(
            desk_pb2.DecideEmployerBatchRequest(
                batch_id=batch.batch_id, approve=decision == "approve", reason=reason
            )
        ).batch
    except grpc.RpcError as error:
        code = status_of(error)
        _field, message, details = page.refusal(error)
        # The node's words on the four-eyes rule say no more than the desk's, in English.
        refused = (
            {FOUR_EYES: _four_eyes(page)}
            if code is grpc.StatusCode.PERMISSION_DENIED and _uploaded_by_me(page, batch)
            else {"decision": f"{message} {details}".strip()}
        )
        return _show(page, batch, refused, status=labels.HTTP_STATUSES.get(code, 409))
    if decided.state == desk_pb2.EMPLOYER_BATCH_STATE_APPROVED:
        title = page._("Employer batch approved")
        lines = [
            page._(
                "%(issued)s of the %(rows)s people on the batch are certified: their "
                "attestations are signed and their validity extended.",
                issued=decided.issued,
                rows=decided.rows,
            )
        ]
        if decided.skipped:
            lines.append(
                page._(
                    "%(skipped)s could no longer be certified by this batch (their entitlement "
                    "ended, or another channel certified them later).",
                    skipped=decided.skipped,
                )
            )
    else:
        title = page._("Employer batch rejected")
        lines = [
            page._("Nothing changes for the people on the batch."),
            page._("The clerk who uploaded it sees your reason."),
        ]
    return page.render(
        "confirmation.html",
        title=title,
        reference=decided.batch_id,
        lines=lines,
        back="/employer-batches",
        back_label=page._("Back to the employer batches"),
    )
