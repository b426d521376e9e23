"""`certfed desk signals ...`: alive signals a person entered, held until a second person
approves them, and that person's decision.

    certfed desk --config F signals pending [--all-decisions] [--page-size N] [--all] [--csv FILE]
    certfed desk --config F signals approve PENDING_SIGNAL_ID [--reason TEXT]
    certfed desk --config F signals reject PENDING_SIGNAL_ID --reason TEXT

`pending` shows those still awaiting a decision unless `--all-decisions` is given. Only a
reviewer who did not enter the signal decides it; approving applies it as a feed's signal would
be, rejecting needs a reason. Both go into the audit trail.
"""

from __future__ import annotations

import argparse

from certfed.v1 import desk_pb2
from cli.desk import desk_client
from cli.listing import Page, add_listing_arguments, message_rows, show_listing
from cli.output import print_one

PENDING_COLUMNS = [
    "pending_signal_id", "source", "kind", "beneficiary_id", "observed_at", "entered_by",
    "entered_at", "decision", "decided_by", "outcome", "attestation_id",
]  # fmt: skip


def signals_pending_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListPendingSignals(
                desk_pb2.ListPendingSignalsRequest(
                    page_size=size, page_token=token, pending_only=not args.all_decisions
                )
            )
            return Page(message_rows(response.signals, PENDING_COLUMNS), response.next_page_token)

        return show_listing(args, "alive signals awaiting a second person", PENDING_COLUMNS, fetch)


def signals_decide_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        decided = desk.stub.DecidePendingSignal(
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=args.pending_signal_id,
                approve=args.signals_action == "approve",
                reason=args.reason or "",
            )
        )
    print_one(decided.signal)
    return 0


def add_signal_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... signals pending|approve|reject`."""
    signals = desk_actions.add_parser(
        "signals", help="alive signals a person entered: list, approve or reject (four eyes)"
    )
    actions = signals.add_subparsers(dest="signals_action", required=True)
    listed = actions.add_parser("pending", help="those awaiting a second person")
    add_listing_arguments(listed)
    listed.add_argument(
        "--all-decisions", action="store_true", help="also those approved or rejected"
    )
    listed.set_defaults(handler=signals_pending_command)
    approve = actions.add_parser("approve", help="apply it (a reviewer who did not enter it)")
    approve.add_argument("pending_signal_id")
    approve.add_argument("--reason", help="kept in the audit trail")
    approve.set_defaults(handler=signals_decide_command)
    reject = actions.add_parser("reject", help="leave it unapplied (a reviewer)")
    reject.add_argument("pending_signal_id")
    reject.add_argument("--reason", required=True, help="why; kept in the audit trail")
    reject.set_defaults(handler=signals_decide_command)
