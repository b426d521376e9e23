"""A reviewer's approval of many monthly amount changes through the desk API: the changes
named, or every change awaiting review, a page at a time (a roll's yearly adjustment proposes
one for most of the roll). The CLI's `desk approve-amounts` and the web desk's approval of
every change awaiting review both go through here.

The node decides each call on its own terms (awaiting review, proposed by another operator,
moving the amount by no more than its policy allows for changes approved together) and leaves
the others; this module only pages. The list of changes awaiting review is read in keyset pages
by change id: those approved drop out of it and those left stay behind the page token, so every
change awaiting review is asked about once however the walk is split into calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient


@dataclass
class Approval:
    """What the node approved and what it left, and where the walk through the changes
    awaiting review goes on (`next_page_token`, empty once it reached the end)."""

    decided: int = 0
    left: list[desk_pb2.LeftAmountChange] = field(default_factory=list)
    next_page_token: str = ""


def _review(desk: DeskClient, change_ids: Sequence[str], reason: str, into: Approval) -> None:
    answer = desk.stub.ReviewMonthlyAmounts(
        desk_pb2.ReviewMonthlyAmountsRequest(change_ids=change_ids, approve=True, reason=reason)
    )
    into.decided += answer.decided
    into.left.extend(answer.left)


def approve_changes(desk: DeskClient, change_ids: Sequence[str], reason: str) -> Approval:
    """Approve the changes named, as many a call as the node takes."""
    approval = Approval()
    limit = desk.limits.max_repeated
    for start in range(0, len(change_ids), limit):
        _review(desk, change_ids[start : start + limit], reason, approval)
    return approval


def approve_awaiting_page(
    desk: DeskClient, reason: str, page_token: str = "", into: Approval | None = None
) -> Approval:
    """Approve one page of the changes awaiting review, the page after `page_token` (the
    first without one); added to `into` when given."""
    approval = into if into is not None else Approval()
    limits = desk.limits
    page = desk.stub.ListAmountChanges(
        desk_pb2.ListAmountChangesRequest(
            status=desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED,
            page_size=min(limits.max_repeated, limits.max_page_size),
            page_token=page_token,
        )
    )
    if page.changes:
        _review(desk, [change.change_id for change in page.changes], reason, approval)
    approval.next_page_token = page.next_page_token
    return approval


def approve_every_awaiting(desk: DeskClient, reason: str) -> Approval:
    """Approve every change awaiting review the node lets a reviewer approve together."""
    approval = approve_awaiting_page(desk, reason)
    while approval.next_page_token:
        approve_awaiting_page(desk, reason, approval.next_page_token, into=approval)
    return approval


def awaiting_review(desk: DeskClient) -> int:
    """How many changes await review."""
    first = desk.stub.ListAmountChanges(
        desk_pb2.ListAmountChangesRequest(
            status=desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED, page_size=1
        )
    )
    return first.total_size
