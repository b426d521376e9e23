"""Monthly amount changes at the paying office: proposed by a clerk (or by a roll import, a
year's adjustment for most of the roll) and decided by a reviewer who did not propose them.

The pages: the changes (awaiting review, or all; paged), with the amount before and after and
how much it moves; a reviewer approves the changes shown on a page of the list at once,
checked before it is sent, and the node approves those it may (awaiting review, not the
reviewer's own proposal, a move within the policy's bound for approving many at once) and
leaves the others, which the result lists with why. A page per change, where a reviewer
approves or rejects it on its own, with a reason to reject.

A year's adjustment proposes a change for most of the roll, too many for pages of the list:
a reviewer may also approve every change awaiting review on the same terms, checked first.
Each request approves one page of the node's list (`federation.amount_reviews`) and answers
with how far it got and a form for the next page, which desk.js sends at once; without it
the reviewer presses the button. Nothing is kept between requests but the node's page token
and the running count in the form, so stopping, a closed tab or another replica of the desk
loses nothing: what was approved stays approved, and the rest still awaits review, which the
last page counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import paged
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.amount_reviews import approve_awaiting_page, awaiting_review
from federation.errors import status_of
from federation.timestamps import optional_datetime

REASON_MAX = 500
ID_MAX = 64
DECISIONS = ("approve", "reject")
BACK = "/amount-changes"
APPROVE_ALL = "/amount-changes/approve-all"
# A page token of the node's, and the running count a form carries between requests.
TOKEN_MAX = 512
COUNT_MAX = 100_000_000


def _show_all(page: Page) -> bool:
    return page.query("show") == "all"


def moved_percent(change: desk_pb2.AmountChange) -> float | None:
    """How much the change moves the amount, in percent of the amount before (None from 0)."""
    if change.previous_amount_fen <= 0:
        return None
    moved = change.proposed_amount_fen - change.previous_amount_fen
    return 100.0 * moved / change.previous_amount_fen


def _list(page: Page, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    show_all = _show_all(page)
    wanted = (
        desk_pb2.AMOUNT_CHANGE_STATUS_UNSPECIFIED
        if show_all
        else desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED
    )

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.AmountChange], str]:
        answer = page.node.stub.ListAmountChanges(
            desk_pb2.ListAmountChangesRequest(status=wanted, page_size=size, page_token=token)
        )
        return answer.changes, answer.next_page_token

    return page.render(
        "amount_changes.html",
        status=status,
        paged=paged(page, "amount-changes:all" if show_all else "amount-changes", fetch),
        show_all=show_all,
        errors=errors or {},
        reason=page.text("reason"),
        labels=labels,
        moved=moved_percent,
        when=optional_datetime,
    )


def changes(page: Page) -> Response:
    return _list(page)


def _reason_error(page: Page, reason: str, required: bool) -> dict[str, str]:
    if required and not reason:
        return {"reason": page._("Say why you reject the change")}
    if len(reason) > REASON_MAX:
        return {"reason": page._("The reason must be 500 characters or fewer")}
    return {}


def approve_shown(page: Page) -> Response:
    """A reviewer approves the changes a page of the list showed them, checked first."""
    shown = page.texts("change_id")
    reason, step = page.text("reason"), page.text("step")
    errors = _reason_error(page, reason, required=False)
    if not shown or len(shown) > page.settings.page_size or any(len(i) > ID_MAX for i in shown):
        errors["change_id"] = page._("Open the list of changes awaiting review and approve from it")
    if errors:
        return _list(page, errors, status=400)
    if step != "confirm":
        return page.render("amount_changes_check.html", shown=shown, reason=reason)
    try:
        answer = page.node.stub.ReviewMonthlyAmounts(
            desk_pb2.ReviewMonthlyAmountsRequest(change_ids=shown, approve=True, reason=reason)
        )
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        return _list(
            page,
            {"change_id": f"{message} {details}".strip()},
            status=labels.HTTP_STATUSES.get(status_of(error), 409),
        )
    return page.render(
        "amount_changes_done.html", decided=answer.decided, left=answer.left, labels=labels
    )


def approve_all(page: Page) -> Response:
    """A reviewer approves every change awaiting review that the office may approve together:
    checked first (how many await review, and why), then a page of the list per request."""
    if page.text("step") != "run":
        return _check_all(page, {})
    reason = page.text("reason")
    errors = _reason_error(page, reason, required=False)
    if errors:
        return _check_all(page, errors, reason, status=400)
    token, approved = page.text("token"), _count(page, "approved")
    if len(token) > TOKEN_MAX or approved is None:
        return _list(
            page,
            {"approve_all": page._("Start again from the list of changes awaiting review")},
            status=400,
        )
    error, status = "", 200
    try:
        answer = approve_awaiting_page(page.node, reason, token)
    except grpc.RpcError as refused:
        _field, message, details = page.refusal(refused)
        error = f"{message} {details}".strip()
        status = labels.HTTP_STATUSES.get(status_of(refused), 409)
    else:
        token = answer.next_page_token
        approved += answer.decided
    done = not error and not token
    return page.render(
        "amount_changes_all.html",
        status=status,
        error=error,
        done=done,
        token=token,
        approved=approved,
        # Counted afresh at the end rather than added up: a page sent twice (the browser's
        # back button) asks again about the changes it left.
        still_awaiting=awaiting_review(page.node) if done else None,
        reason=reason,
    )


def _check_all(page: Page, errors: dict[str, str], reason: str = "", status: int = 200) -> Response:
    awaiting = awaiting_review(page.node)
    if not awaiting:
        return _list(page, {"approve_all": page._("No amount change awaits review.")}, 409)
    return page.render(
        "amount_changes_all_check.html",
        status=status,
        awaiting=awaiting,
        reason=reason,
        errors=errors,
    )


def _count(page: Page, name: str) -> int | None:
    """A running count the form carries: digits, at most COUNT_MAX; None otherwise."""
    value = page.text(name)
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    count = int(value)
    return count if count <= COUNT_MAX else None


def find_change(page: Page, change_id: str) -> desk_pb2.AmountChange | None:
    """The change, decided or not; None when the node keeps none by that id."""
    if not change_id or len(change_id) > ID_MAX:
        return None
    try:
        return page.node.stub.GetAmountChange(
            desk_pb2.GetAmountChangeRequest(change_id=change_id)
        ).change
    except grpc.RpcError as error:
        if status_of(error) in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


def _not_found(page: Page) -> Response:
    return page.render(
        "problem.html",
        status=404,
        title=page._("Amount change not found"),
        message=page._("This office keeps no amount change by that reference."),
        details="",
    )


def _proposed_by_me(page: Page, change: desk_pb2.AmountChange) -> bool:
    return change.proposed_by == page.me.operator_id


def _show(
    page: Page,
    change: desk_pb2.AmountChange,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "amount_change.html",
        status=status,
        c=change,
        errors=errors or {},
        decision=page.text("decision"),
        reason=page.text("reason"),
        awaiting=change.status == desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED,
        proposed_by_me=_proposed_by_me(page, change),
        moved=moved_percent(change),
        labels=labels,
        when=optional_datetime,
    )


def change_page(page: Page) -> Response:
    change = find_change(page, page.request.path_params["change_id"])
    if change is None:
        return _not_found(page)
    return _show(page, change)


def decide(page: Page) -> Response:
    change = find_change(page, page.request.path_params["change_id"])
    if change is None:
        return _not_found(page)
    decision, reason, step = page.text("decision"), page.text("reason"), page.text("step")
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = page._("Choose whether to approve or reject the change")
    errors.update(_reason_error(page, reason, required=decision == "reject"))
    if errors or step not in ("check", "confirm"):
        return _show(page, change, errors, status=400 if errors else 200)
    if step == "check":
        return page.render(
            "amount_change_check.html",
            c=change,
            decision=decision,
            reason=reason,
            moved=moved_percent(change),
        )
    try:
        decided = page.node.stub.ReviewMonthlyAmount(
            desk_pb2.ReviewMonthlyAmountRequest(
                change_id=change.change_id, approve=decision == "approve", reason=reason
            )
        ).change
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        return _show(
            page,
            change,
            {"decision": f"{message} {details}".strip()},
            status=labels.HTTP_STATUSES.get(status_of(error), 409),
        )
    approved = decided.status == desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED
    return page.render(
        "confirmation.html",
        title=page._("Amount approved") if approved else page._("Amount change rejected"),
        reference=decided.change_id,
        lines=[
            page._("The new monthly amount applies from now on.")
            if approved
            else page._("The monthly amount stays as it was.")
        ],
        back=BACK,
        back_label=page._("Back to the amount changes"),
    )
