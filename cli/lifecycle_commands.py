"""`certfed desk due|warning|suspended|overpayments|duplicates|payments|report`,
`certfed desk review-termination <beneficiary-id> confirm|overturn` and
`certfed node cycle [--day YYYY-MM-DD]`: the paying office's year from a terminal.

Every list prints one page with how many more there are, `--all` prints every page and
`--csv FILE` writes all of them as CSV (UTF-8 with a header row) for the office's spreadsheets
(cli/listing.py). The node filters (state, overpayment, possible duplicate), never the terminal.
The report is one summary (a row per certification method and the office's figures), printed
or written with `--csv`. They go through the DeskService with the operator token in
CERTFED_OPERATOR_TOKEN; `node cycle` and `payments` need an administrator's token.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from certfed.v1 import common_pb2, desk_pb2
from cli.arguments import month, utc_day
from cli.desk import add_connection_arguments, desk_client
from cli.listing import Page, add_listing_arguments, first_page_total, message_rows, show_listing
from cli.output import console
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp

ENTITLEMENT_COLUMNS = (
    "beneficiary_id",
    "masked_identity_number",
    "residence_region",
    "state",
    "state_since",
    "valid_until",
    "monthly_amount_fen",
    "termination_pending_review",
    "overpayment_fen",
    "possible_duplicate",
)
INSTRUCTION_COLUMNS = [
    "instruction_id", "beneficiary_id", "masked_identity_number", "action", "effective_month",
    "back_pay_months", "back_pay_fen", "overpayment_fen",
]  # fmt: skip


def _when(message: Any, field: str) -> str:
    if not message.HasField(field):
        return ""
    return to_datetime(getattr(message, field)).date().isoformat()


def entitlement_row(entitlement: desk_pb2.Entitlement) -> list[str]:
    person = entitlement.beneficiary
    state = desk_pb2.EntitlementState.Name(entitlement.state).removeprefix("ENTITLEMENT_STATE_")
    return [
        person.beneficiary_id,
        person.masked_identity_number,
        person.residence_region,
        state.lower(),
        _when(entitlement, "state_since"),
        _when(person, "valid_until"),
        str(entitlement.monthly_amount_fen),
        "yes" if entitlement.termination_pending_review else "",
        str(entitlement.overpayment_fen),
        "yes" if person.possible_duplicate else "",
    ]


# The entitlement views: which entitlements each lists, as the node's filter.
ENTITLEMENT_VIEWS: dict[str, tuple[desk_pb2.ListEntitlementsRequest, str]] = {
    "due": (
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_DUE),
        "beneficiaries due",
    ),
    "warning": (
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_WARNING),
        "beneficiaries in warning",
    ),
    "suspended": (
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_SUSPENDED),
        "beneficiaries suspended",
    ),
    "overpayments": (
        desk_pb2.ListEntitlementsRequest(
            state=desk_pb2.ENTITLEMENT_STATE_TERMINATED, with_overpayment=True
        ),
        "ended entitlements with payments to recover",
    ),
    "duplicates": (
        desk_pb2.ListEntitlementsRequest(possible_duplicate=True),
        "beneficiaries another paying office also pays",
    ),
}


def _entitlements(
    desk: DeskClient, which: desk_pb2.ListEntitlementsRequest
) -> Callable[[int, str], Page]:
    def fetch(size: int, token: str) -> Page:
        request = desk_pb2.ListEntitlementsRequest()
        request.CopyFrom(which)
        request.page_size = size
        request.page_token = token
        response = desk.stub.ListEntitlements(request)
        return Page(
            [entitlement_row(e) for e in response.entitlements],
            response.next_page_token,
            first_page_total(token, response.total_size),
        )

    return fetch


def _entitlement_view(name: str) -> Callable[[argparse.Namespace], int]:
    which, title = ENTITLEMENT_VIEWS[name]

    def command(args: argparse.Namespace) -> int:
        with desk_client(args) as desk:
            return show_listing(args, title, ENTITLEMENT_COLUMNS, _entitlements(desk, which))

    return command


def payments_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListPaymentInstructions(
                desk_pb2.ListPaymentInstructionsRequest(
                    month=args.month, page_size=size, page_token=token
                )
            )
            return Page(
                message_rows(response.instructions, INSTRUCTION_COLUMNS),
                response.next_page_token,
                first_page_total(token, response.total_size),
            )

        return show_listing(
            args, f"payment instructions for {args.month}", INSTRUCTION_COLUMNS, fetch
        )


def show(columns: Sequence[str], rows: list[list[str]], csv_path: str | None, title: str) -> None:
    if csv_path:
        with Path(csv_path).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
        console.print(f"wrote {len(rows)} rows to {csv_path}")
        return
    table = Table(title=f"{title} ({len(rows)})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def report_command(args: argparse.Namespace) -> int:
    request = desk_pb2.GetReportRequest()
    if args.start is not None:
        getattr(request, "from").CopyFrom(to_timestamp(args.start))
    if args.end is not None:
        request.to.CopyFrom(to_timestamp(args.end))
    with desk_client(args) as desk:
        report = desk.stub.GetReport(request)
    total = sum(share.count for share in report.by_method) or 1
    rows = [
        [
            common_pb2.CertificationMethod.Name(share.method)
            .removeprefix("CERTIFICATION_METHOD_")
            .lower(),
            str(share.count),
            f"{100 * share.count / total:.1f}%",
        ]
        for share in report.by_method
    ]
    rate = 100 * report.certified / max(1, report.beneficiaries)
    rows += [
        ["beneficiaries", str(report.beneficiaries), ""],
        ["certified", str(report.certified), f"{rate:.1f}%"],
        ["overpayments_fen", str(report.overpayments_fen), ""],
        ["possible_duplicates", str(report.possible_duplicates), ""],
    ]
    show(("method or figure", "count", "share"), rows, args.csv, "certification report")
    return 0


# Seconds `certfed node cycle` waits for the day's run.
CYCLE_CALL_TIMEOUT_S = 3_600.0


def cycle_command(args: argparse.Namespace) -> int:
    request = desk_pb2.RunCycleRequest()
    if args.day is not None:
        request.day.CopyFrom(to_timestamp(args.day))
    with desk_client(args) as desk:
        # The whole day is one call: minutes for a roll of millions, not a clerk's deadline.
        outcome = desk.stub.RunCycle(request, timeout=CYCLE_CALL_TIMEOUT_S)
    if not outcome.ran:
        console.print("the cycle had already run for that day; nothing changed")
        return 0
    console.print(
        f"became due {outcome.became_due}, assistance requests sent {outcome.requests_sent}, "
        f"reminders queued {outcome.reminders_queued}, warned {outcome.warned}, "
        f"suspended {outcome.suspended}"
    )
    for beneficiary_id in outcome.skipped_beneficiary_ids:
        console.print(
            f"[red]skipped {beneficiary_id}: its dates cannot be computed; correct the record "
            "(certfed desk ... show) and run the cycle again[/red]"
        )
    return 0


def review_termination_command(args: argparse.Namespace) -> int:
    """A reviewer confirms a proposed termination (announced to the other offices paying the
    person, docs/life_events.md) or overturns it."""
    with desk_client(args) as desk:
        response = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=args.beneficiary_id,
                confirm=args.decision == "confirm",
                reason=args.reason,
            )
        )
    show(ENTITLEMENT_COLUMNS, [entitlement_row(response.entitlement)], None, "entitlement")
    return 0


def add_lifecycle_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The desk views: mounted under `certfed desk`."""
    for name, (_which, help_text) in ENTITLEMENT_VIEWS.items():
        sub = desk_actions.add_parser(name, help=help_text)
        add_listing_arguments(sub)
        sub.set_defaults(handler=_entitlement_view(name))
    payments = desk_actions.add_parser(
        "payments", help="a month's payment instructions (administrator)"
    )
    payments.add_argument("--month", required=True, type=month, help="YYYY-MM")
    add_listing_arguments(payments)
    payments.set_defaults(handler=payments_command)
    report = desk_actions.add_parser(
        "report", help="certification rate by method, overpayments, duplicates"
    )
    report.add_argument("--csv", help="write the rows to this CSV file instead of a table")
    report.add_argument("--from", dest="start", type=utc_day, help="first day (YYYY-MM-DD)")
    report.add_argument("--to", dest="end", type=utc_day, help="day after the last (YYYY-MM-DD)")
    report.set_defaults(handler=report_command)
    review = desk_actions.add_parser(
        "review-termination",
        help="confirm or overturn a proposed termination (reviewer; not who recorded it)",
    )
    review.add_argument("beneficiary_id")
    review.add_argument("decision", choices=("confirm", "overturn"))
    review.add_argument("--reason", default="", help="required to overturn; audited")
    review.set_defaults(handler=review_termination_command)


def add_lifecycle_node_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed node cycle`: mounted under `certfed node`."""
    cycle = node_actions.add_parser("cycle", help="run the daily cycle now (administrator)")
    add_connection_arguments(cycle)
    cycle.add_argument(
        "--day", type=utc_day, help="the day to run for (YYYY-MM-DD); today if not given"
    )
    cycle.set_defaults(handler=cycle_command)
