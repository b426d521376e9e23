"""`certfed desk due|warning|suspended|report|overpayments|duplicates [--csv FILE]` and
`certfed node cycle [--day YYYY-MM-DD]`: the paying office's year from a terminal.

Every view is a table on the terminal and, with `--csv FILE`, the same rows as CSV (UTF-8 with a
header row) for the office's spreadsheets. They go through the DeskService with the operator
token in CERTFED_OPERATOR_TOKEN; `node cycle` needs an administrator's token.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from certfed.v1 import common_pb2, desk_pb2
from cli.desk import add_connection_arguments, desk_client
from cli.output import console
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError
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
STATE_VIEWS = {
    "due": desk_pb2.ENTITLEMENT_STATE_DUE,
    "warning": desk_pb2.ENTITLEMENT_STATE_WARNING,
    "suspended": desk_pb2.ENTITLEMENT_STATE_SUSPENDED,
}


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


def entitlements(
    desk: DeskClient, state: desk_pb2.EntitlementState.ValueType
) -> Iterator[desk_pb2.Entitlement]:
    """Every entitlement in `state` (all of them for UNSPECIFIED), page by page."""
    token = ""
    while True:
        response = desk.stub.ListEntitlements(
            desk_pb2.ListEntitlementsRequest(state=state, page_token=token, page_size=500),
        )
        yield from response.entitlements
        token = response.next_page_token
        if not token:
            return


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


def _entitlement_view(
    state: desk_pb2.EntitlementState.ValueType,
    keep: Callable[[desk_pb2.Entitlement], bool],
    title: str,
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        with desk_client(args) as desk:
            rows = [entitlement_row(e) for e in entitlements(desk, state) if keep(e)]
        show(ENTITLEMENT_COLUMNS, rows, args.csv, title)
        return 0

    return command


def _day(text: str, field: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(field, f"{text!r} is not a date in the form YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def report_command(args: argparse.Namespace) -> int:
    request = desk_pb2.GetReportRequest()
    if args.start:
        getattr(request, "from").CopyFrom(to_timestamp(_day(args.start, "--from")))
    if args.end:
        request.to.CopyFrom(to_timestamp(_day(args.end, "--to")))
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


def cycle_command(args: argparse.Namespace) -> int:
    request = desk_pb2.RunCycleRequest()
    if args.day:
        request.day.CopyFrom(to_timestamp(_day(args.day, "--day")))
    with desk_client(args) as desk:
        outcome = desk.stub.RunCycle(request)
    if not outcome.ran:
        console.print("the cycle had already run for that day; nothing changed")
        return 0
    console.print(
        f"became due {outcome.became_due}, assistance requests sent {outcome.requests_sent}, "
        f"reminders queued {outcome.reminders_queued}, warned {outcome.warned}, "
        f"suspended {outcome.suspended}"
    )
    return 0


def add_lifecycle_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The desk views: mounted under `certfed desk`."""
    views: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        name: (_entitlement_view(state, lambda _e: True, name), f"beneficiaries {name}")
        for name, state in STATE_VIEWS.items()
    }
    views["overpayments"] = (
        _entitlement_view(
            desk_pb2.ENTITLEMENT_STATE_TERMINATED, lambda e: e.overpayment_fen > 0, "overpayments"
        ),
        "ended entitlements with payments to recover",
    )
    views["duplicates"] = (
        _entitlement_view(
            desk_pb2.ENTITLEMENT_STATE_UNSPECIFIED,
            lambda e: e.beneficiary.possible_duplicate,
            "possible duplicates",
        ),
        "beneficiaries another paying office also pays",
    )
    views["report"] = (report_command, "certification rate by method, overpayments, duplicates")
    for name, (handler, help_text) in views.items():
        sub = desk_actions.add_parser(name, help=help_text)
        sub.add_argument("--csv", help="write the rows to this CSV file instead of a table")
        if name == "report":
            sub.add_argument("--from", dest="start", help="first day (YYYY-MM-DD)")
            sub.add_argument("--to", dest="end", help="day after the last (YYYY-MM-DD)")
        sub.set_defaults(handler=handler)


def add_lifecycle_node_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed node cycle`: mounted under `certfed node`."""
    cycle = node_actions.add_parser("cycle", help="run the daily cycle now (administrator)")
    add_connection_arguments(cycle)
    cycle.add_argument("--day", help="the day to run for (YYYY-MM-DD); today if not given")
    cycle.set_defaults(handler=cycle_command)
