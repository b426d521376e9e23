"""`certfed desk held ...`: received attestations this node kept for a reviewer instead of
applying them, and the reviewer's decision.

    certfed desk --config F held list [--all-decisions] [--page-size N] [--all] [--csv FILE]
    certfed desk --config F held apply ATTESTATION_ID --reason TEXT
    certfed desk --config F held dismiss ATTESTATION_ID --reason TEXT

`list` shows those still awaiting a decision unless `--all-decisions` is given. Applying goes
through the paying office's one apply path (a negative outcome still only proposes a termination,
which another reviewer confirms); both decisions need a reason, which goes into the audit trail.
"""

from __future__ import annotations

import argparse

from certfed.v1 import desk_pb2
from cli.desk import desk_client
from cli.listing import Page, add_listing_arguments, message_rows, show_listing
from cli.output import print_one

HELD_COLUMNS = [
    "attestation_id", "issuing_node_id", "beneficiary_id", "reason", "outcome", "method",
    "observed_at", "held_at", "decision", "decided_by",
]  # fmt: skip


def held_list_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListHeldAttestations(
                desk_pb2.ListHeldAttestationsRequest(
                    page_size=size, page_token=token, pending_only=not args.all_decisions
                )
            )
            return Page(message_rows(response.attestations, HELD_COLUMNS), response.next_page_token)

        return show_listing(args, "attestations held for review", HELD_COLUMNS, fetch)


def held_decide_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        decided = desk.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=args.attestation_id,
                apply=args.held_action == "apply",
                reason=args.reason,
                issuing_node_id=args.issuer,
            )
        )
    print_one(decided.attestation)
    return 0


def add_held_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... held list|apply|dismiss`."""
    held = desk_actions.add_parser(
        "held", help="received attestations kept for review: list, apply or dismiss"
    )
    held_actions = held.add_subparsers(dest="held_action", required=True)
    listed = held_actions.add_parser("list", help="those awaiting a decision")
    add_listing_arguments(listed)
    listed.add_argument(
        "--all-decisions", action="store_true", help="also those applied or dismissed"
    )
    listed.set_defaults(handler=held_list_command)
    for name, help_text in (
        ("apply", "apply it to the person's record (reviewer)"),
        ("dismiss", "leave it unapplied (reviewer)"),
    ):
        decide = held_actions.add_parser(name, help=help_text)
        decide.add_argument("attestation_id")
        decide.add_argument("--reason", required=True, help="why; kept in the audit trail")
        decide.add_argument(
            "--issuer", default="", help="the issuing node, when several nodes used the id"
        )
        decide.set_defaults(handler=held_decide_command)
