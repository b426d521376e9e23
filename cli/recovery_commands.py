"""`certfed desk recoveries ...`: what people owe the office after a death or a fraud, and the
money recovered (docs/life_events.md, "Overpayment recovery").

    certfed desk --config F recoveries list [--page-size N] [--all] [--csv FILE]
    certfed desk --config F recoveries show BENEFICIARY_ID [--csv FILE]
    certfed desk --config F recoveries record BENEFICIARY_ID --amount-fen N --received YYYY-MM-DD
                                              --method bank_return|repayment|withholding
                                              --reference REF
    certfed desk --config F recoveries fraud BENEFICIARY_ID --obtained-fen N --found YYYY-MM-DD
                                             --reference REF

    certfed desk --config F recoveries late-reports [--page-size N] [--all] [--csv FILE]

`late-reports` lists the deaths reported after their report window (a death's reporter is given
with `certfed desk certify ... --outcome deceased --observed DAY --reported-by family`).
`list`, `show` and `late-reports` are for any operator; `record` for a clerk, `fraud` for a
reviewer (the node adds the policy's fine). Amounts are whole fen. CSV files are UTF-8 with a
header row, and a cell a spreadsheet would read as a formula is written as text
(cli/listing.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from certfed.v1 import desk_pb2
from cli.arguments import utc_day
from cli.desk import desk_client
from cli.listing import Page, add_listing_arguments, show_listing, write_csv
from cli.output import console
from federation.timestamps import to_datetime, to_timestamp

DEBT_COLUMNS = (
    "beneficiary_id",
    "masked_identity_number",
    "overpayment_fen",
    "fraud_fen",
    "recovered_fen",
    "balance_fen",
)
ENTRY_COLUMNS = (
    "entry_id",
    "kind",
    "amount_fen",
    "fine_fen",
    "method",
    "occurred_on",
    "reference",
    "recorded_by",
    "recorded_at",
)
DEATH_REPORTERS = {
    "family": desk_pb2.DEATH_REPORTER_FAMILY,
    "unit": desk_pb2.DEATH_REPORTER_UNIT,
    "village": desk_pb2.DEATH_REPORTER_VILLAGE,
}
LATE_REPORT_COLUMNS = (
    "certification_id",
    "beneficiary_id",
    "reporter",
    "died_on",
    "reported_on",
    "days_taken",
    "window_days",
)
METHODS = {
    "bank_return": desk_pb2.RECOVERY_METHOD_BANK_RETURN,
    "repayment": desk_pb2.RECOVERY_METHOD_REPAYMENT,
    "withholding": desk_pb2.RECOVERY_METHOD_WITHHOLDING,
}


def debt_row(debt: desk_pb2.Debt) -> list[str]:
    return [
        debt.beneficiary_id,
        debt.masked_identity_number,
        str(debt.overpayment_fen),
        str(debt.fraud_fen),
        str(debt.recovered_fen),
        str(debt.balance_fen),
    ]


def entry_row(entry: desk_pb2.DebtEntry) -> list[str]:
    kind = desk_pb2.DebtEntryKind.Name(entry.kind).removeprefix("DEBT_ENTRY_KIND_").lower()
    method = (
        desk_pb2.RecoveryMethod.Name(entry.method).removeprefix("RECOVERY_METHOD_").lower()
        if entry.method
        else ""
    )
    return [
        entry.entry_id,
        kind,
        str(entry.amount_fen),
        str(entry.fine_fen),
        method,
        to_datetime(entry.occurred_at).date().isoformat(),
        entry.reference,
        entry.recorded_by,
        to_datetime(entry.recorded_at).isoformat(),
    ]


def list_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListDebts(
                desk_pb2.ListDebtsRequest(page_size=size, page_token=token)
            )
            return Page([debt_row(d) for d in response.debts], response.next_page_token)

        return show_listing(args, "debts: overpayments and frauds to recover", DEBT_COLUMNS, fetch)


def _table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _show_debt(response: desk_pb2.GetDebtResponse, csv_path: str | None) -> None:
    rows = [entry_row(entry) for entry in response.entries]
    if csv_path:
        written = write_csv(Path(csv_path), ENTRY_COLUMNS, iter([Page(rows, "")]))
        console.print(f"wrote {written:,} rows to {csv_path}")
        return
    console.print(_table("debt", DEBT_COLUMNS, [debt_row(response.debt)]))
    console.print(_table("recoveries and fraud findings", ENTRY_COLUMNS, rows))


def show_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        response = desk.stub.GetDebt(desk_pb2.GetDebtRequest(beneficiary_id=args.beneficiary_id))
    _show_debt(response, args.csv)
    return 0


def record_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        response = desk.stub.RecordRecovery(
            desk_pb2.RecordRecoveryRequest(
                beneficiary_id=args.beneficiary_id,
                amount_fen=args.amount_fen,
                received_at=to_timestamp(args.received),
                method=METHODS[args.method],
                reference=args.reference,
            )
        )
    console.print(_table("debt", DEBT_COLUMNS, [debt_row(response.debt)]))
    return 0


def fraud_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        response = desk.stub.RecordFraud(
            desk_pb2.RecordFraudRequest(
                beneficiary_id=args.beneficiary_id,
                obtained_fen=args.obtained_fen,
                found_at=to_timestamp(args.found),
                reference=args.reference,
            )
        )
    console.print(f"fine {response.entry.fine_fen} fen on {response.entry.amount_fen} fen obtained")
    console.print(_table("debt", DEBT_COLUMNS, [debt_row(response.debt)]))
    return 0


def late_report_row(report: desk_pb2.LateDeathReport) -> list[str]:
    reporter = desk_pb2.DeathReporter.Name(report.reporter).removeprefix("DEATH_REPORTER_")
    return [
        report.certification_id,
        report.beneficiary_id,
        reporter.lower(),
        to_datetime(report.died_at).date().isoformat(),
        to_datetime(report.reported_at).date().isoformat(),
        str(report.days_taken),
        str(report.window_days),
    ]


def late_reports_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListLateDeathReports(
                desk_pb2.ListLateDeathReportsRequest(page_size=size, page_token=token)
            )
            return Page([late_report_row(r) for r in response.reports], response.next_page_token)

        return show_listing(args, "deaths reported after their window", LATE_REPORT_COLUMNS, fetch)


def add_recovery_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... recoveries list|show|record|fraud`."""
    recoveries = desk_actions.add_parser(
        "recoveries", help="overpayments and frauds to recover, and the money recovered"
    )
    actions = recoveries.add_subparsers(dest="recovery_action", required=True)
    listed = actions.add_parser("list", help="everyone who owes, or owed, the office")
    add_listing_arguments(listed)
    listed.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="one person's balance and its lines")
    show.add_argument("beneficiary_id")
    show.add_argument("--csv", metavar="FILE", help="write the lines to this CSV file")
    show.set_defaults(handler=show_command)
    record = actions.add_parser("record", help="money recovered (clerk; audited)")
    record.add_argument("beneficiary_id")
    record.add_argument(
        "--amount-fen", type=int, required=True, help="whole fen, at most the balance"
    )
    record.add_argument("--received", type=utc_day, required=True, help="YYYY-MM-DD")
    record.add_argument("--method", choices=sorted(METHODS), required=True)
    record.add_argument("--reference", required=True, help="the bank's or receipt's reference")
    record.set_defaults(handler=record_command)
    fraud = actions.add_parser(
        "fraud", help="a benefit obtained by fraud; the policy's fine is added (reviewer)"
    )
    fraud.add_argument("beneficiary_id")
    fraud.add_argument("--obtained-fen", type=int, required=True, help="whole fen obtained")
    fraud.add_argument("--found", type=utc_day, required=True, help="YYYY-MM-DD")
    fraud.add_argument("--reference", required=True, help="the case file's reference")
    fraud.set_defaults(handler=fraud_command)
    late = actions.add_parser(
        "late-reports", help="deaths reported after their window (family 7 days, unit 3)"
    )
    add_listing_arguments(late)
    late.set_defaults(handler=late_reports_command)
