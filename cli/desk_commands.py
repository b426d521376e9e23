"""`certfed desk <action> ...`: a clerk's or reviewer's work at a node's desk from a terminal.

    certfed desk --config node.toml whoami|register|find|update|beneficiaries|request
    certfed desk --config node.toml inbox|sent|show|status
    certfed desk --config node.toml record|walk-in|certify|correct|pending|certifications
    certfed desk --config node.toml approve|reject
    certfed desk --config node.toml attestations|evidence|export
    certfed desk --config node.toml propose-amount|amount-changes|approve-amount|reject-amount
    certfed desk --config node.toml approve-amounts
    certfed desk --config node.toml outbox|retry
    certfed desk --config node.toml held list|apply|dismiss
    certfed desk --config node.toml signals pending|approve|reject

The trust, bundle and lifecycle modules add their own actions (directory-status, export-bundle,
due, ...). Every action talks to the node's DeskService with the operator token in
CERTFED_OPERATOR_TOKEN and prints what the desk returned. Lists print one page and say how many
more there are; `--all` prints every page and `--csv FILE` writes them all (cli/listing.py).
An identity number is never taken on the command line of `find`, where it would stay in the
shell's history: it is read from the terminal without echo, or from standard input.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.arguments import iso_moment, month, positive_int, region_code, utc_day, yuan_as_fen
from cli.bundle_commands import add_bundle_desk_commands
from cli.desk import add_connection_arguments, desk_client
from cli.evidence_commands import add_evidence_desk_commands, upload_evidence
from cli.held_commands import add_held_desk_commands
from cli.lifecycle_commands import add_lifecycle_desk_commands
from cli.listing import Page, add_listing_arguments, first_page_total, message_rows, show_listing
from cli.output import console, print_one
from cli.recovery_commands import DEATH_REPORTERS, add_recovery_desk_commands
from cli.signal_commands import add_signal_desk_commands
from cli.trust_commands import add_trust_desk_commands
from federation.amount_reviews import approve_changes, approve_every_awaiting
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError
from federation.timestamps import to_timestamp

IDENTITY_TYPES = {
    "resident_id": common_pb2.IDENTITY_TYPE_RESIDENT_ID,
    "hkid": common_pb2.IDENTITY_TYPE_HKID,
    "macau_bir": common_pb2.IDENTITY_TYPE_MACAU_BIR,
    "passport": common_pb2.IDENTITY_TYPE_PASSPORT,
}


def _names(enum: Any, prefix: str) -> dict[str, int]:
    """A proto enum's values by their lower-case names without the prefix (UNSPECIFIED left out)."""
    return {name.removeprefix(prefix).lower(): value for name, value in enum.items() if value != 0}


METHODS = _names(common_pb2.CertificationMethod, "CERTIFICATION_METHOD_")
OUTCOMES = _names(common_pb2.CertificationOutcome, "CERTIFICATION_OUTCOME_")
SCHEMES = _names(desk_pb2.PensionScheme, "PENSION_SCHEME_")
CERTIFICATION_STATUSES = _names(desk_pb2.CertificationStatus, "CERTIFICATION_STATUS_")
AMOUNT_CHANGE_STATUSES = _names(desk_pb2.AmountChangeStatus, "AMOUNT_CHANGE_STATUS_")
DELIVERY_STATES = _names(desk_pb2.DeliveryState, "DELIVERY_STATE_")
DIRECTIONS = {"issued": desk_pb2.DIRECTION_OUTBOUND, "received": desk_pb2.DIRECTION_INBOUND}
ALL = "all"

BENEFICIARY_COLUMNS = [
    "beneficiary_id", "masked_identity_number", "residence_region", "status", "valid_until",
    "scheme",
]  # fmt: skip
REQUEST_COLUMNS = ["request_id", "peer_node_id", "residence_region", "status", "deadline"]
CERTIFICATION_COLUMNS = [
    "certification_id", "status", "request_id", "method", "outcome", "clerk_id",
]  # fmt: skip
ATTESTATION_COLUMNS = [
    "attestation_id", "direction", "issuing_node_id", "outcome", "valid_until",
]  # fmt: skip
OUTBOX_COLUMNS = ["message_id", "kind", "destination", "state", "attempts", "last_error"]
AMOUNT_CHANGE_COLUMNS = [
    "change_id", "beneficiary_id", "status", "previous_amount_fen", "proposed_amount_fen",
    "proposed_by", "proposed_at", "reviewed_by",
]  # fmt: skip


def _identity(args: argparse.Namespace) -> attestation_pb2.IdentityBundle:
    return attestation_pb2.IdentityBundle(
        identity_type=IDENTITY_TYPES[args.id_type],
        identity_number=args.id_number,
        full_name=args.name,
        phone=args.phone or "",
        address=args.address or "",
    )


def _read_identity_number() -> str:
    """The number typed at the terminal (not echoed), or the first line of standard input."""
    if sys.stdin.isatty():
        number = getpass.getpass("identity number (not shown): ")
    else:
        number = sys.stdin.readline()
    number = number.strip()
    if not number:
        raise InvalidInputError("identity number", "type it, or pipe it on standard input")
    return number


def _desk_action(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        action = args.action
        if action == "whoami":
            print_one(desk.stub.WhoAmI(desk_pb2.WhoAmIRequest()))
        elif action == "register":
            request = desk_pb2.RegisterBeneficiaryRequest(
                identity=_identity(args),
                residence_region=args.residence_region,
                monthly_amount_fen=args.monthly_amount or 0,
                payment_start_month=args.payment_start or "",
            )
            if args.scheme:
                request.scheme = SCHEMES[args.scheme]  # type: ignore[assignment]
            if args.valid_until is not None:
                request.valid_until.CopyFrom(to_timestamp(args.valid_until))
            print_one(desk.stub.RegisterBeneficiary(request).beneficiary)
        elif action == "find":
            find = desk_pb2.FindBeneficiaryRequest(
                identity_type=IDENTITY_TYPES[args.id_type],
                identity_number=_read_identity_number(),
            )
            print_one(desk.stub.FindBeneficiary(find))
        elif action == "update":
            update = desk_pb2.UpdateBeneficiaryContactRequest(
                beneficiary_id=args.beneficiary_id, residence_region=args.residence_region or ""
            )
            if args.phone is not None:
                update.phone = args.phone
            print_one(desk.stub.UpdateBeneficiaryContact(update))
        elif action == "request":
            ask = desk_pb2.RequestCertificationRequest(
                beneficiary_id=args.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=args.days)),
            )
            print_one(desk.stub.RequestCertification(ask).request)
        elif action == "show":
            print_one(
                desk.stub.GetAssistanceRequest(
                    desk_pb2.GetAssistanceRequestRequest(request_id=args.request_id),
                )
            )
        elif action == "status":
            change = desk_pb2.SetAssistanceStatusRequest(
                request_id=args.request_id,
                status=common_pb2.AssistanceStatus.Value(
                    "ASSISTANCE_STATUS_" + args.status.upper()
                ),
                reason=args.reason or "",
            )
            if args.scheduled_for is not None:
                change.scheduled_for.CopyFrom(to_timestamp(args.scheduled_for))
            print_one(desk.stub.SetAssistanceStatus(change).request)
        elif action in ("record", "walk-in", "certify", "correct"):
            record = desk_pb2.RecordCertificationRequest(
                method=METHODS[args.method],  # type: ignore[arg-type]
                outcome=OUTCOMES[args.outcome],  # type: ignore[arg-type]
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=upload_evidence(desk, args.evidence),
            )
            if action == "record":
                record.request_id = args.request_id
            elif action == "certify":
                record.beneficiary_id = args.beneficiary_id
            elif action == "correct":
                record.corrects_attestation_id = args.attestation_id
            else:
                record.walk_in.CopyFrom(_identity(args))
            if args.observed is not None:
                record.observed_at.CopyFrom(to_timestamp(args.observed))
            if args.reported_by is not None:
                record.death_reporter = DEATH_REPORTERS[args.reported_by]
            print_one(desk.stub.RecordCertification(record).certification)
        elif action == "approve":
            approve = desk_pb2.ApproveCertificationRequest(certification_id=args.certification_id)
            print_one(desk.stub.ApproveCertification(approve).certification)
        elif action == "reject":
            reject = desk_pb2.RejectCertificationRequest(
                certification_id=args.certification_id, reason=args.reason
            )
            print_one(desk.stub.RejectCertification(reject).certification)
        elif action == "export":
            exported = desk.stub.ExportAttestation(
                desk_pb2.ExportAttestationRequest(
                    attestation_id=args.attestation_id, issuing_node_id=args.issuer
                ),
            )
            Path(args.out).write_bytes(exported.dsse_json)
            console.print(f"wrote {args.out}")
        elif action == "propose-amount":
            propose = desk_pb2.ProposeMonthlyAmountRequest(
                beneficiary_id=args.beneficiary_id,
                monthly_amount_fen=args.monthly_amount,
                reason=args.reason or "",
            )
            print_one(desk.stub.ProposeMonthlyAmount(propose).change)
            console.print(
                "proposed: the amount applies once another operator, a reviewer, approves"
            )
        elif action in ("approve-amount", "reject-amount"):
            review = desk_pb2.ReviewMonthlyAmountRequest(
                change_id=args.change_id,
                approve=action == "approve-amount",
                reason=args.reason or "",
            )
            print_one(desk.stub.ReviewMonthlyAmount(review).change)
        elif action == "retry":
            retry = desk_pb2.RetryDeadLetterRequest(message_id=args.message_id)
            print_one(desk.stub.RetryDeadLetter(retry).message)
    return 0


def _approve_amounts(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        reason = args.reason or ""
        approval = (
            approve_changes(desk, args.change_ids, reason)
            if args.change_ids
            else approve_every_awaiting(desk, reason)
        )
    decided, left = approval.decided, approval.left
    console.print(f"approved: {decided:,}")
    if left:
        console.print(f"left for a review on their own: {len(left):,}")
        for change in left[:_LEFT_SHOWN]:
            console.print(f"  {change.change_id}: {change.reason}")
        if len(left) > _LEFT_SHOWN:
            console.print(
                f"  ... and {len(left) - _LEFT_SHOWN:,} more "
                "(certfed desk amount-changes --status proposed)"
            )
    return 0


# Changes left by `approve-amounts` printed one by one; the rest are counted.
_LEFT_SHOWN = 20


# Lists.

Lister = Callable[[DeskClient, argparse.Namespace], Callable[[int, str], Page]]


def _listing(title: str, columns: list[str], lister: Lister) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        with desk_client(args) as desk:
            return show_listing(args, title, columns, lister(desk, args))

    return command


def _beneficiaries(desk: DeskClient, _args: argparse.Namespace) -> Callable[[int, str], Page]:
    def fetch(size: int, token: str) -> Page:
        response = desk.stub.ListBeneficiaries(
            desk_pb2.ListBeneficiariesRequest(page_size=size, page_token=token)
        )
        return Page(
            message_rows(response.beneficiaries, BENEFICIARY_COLUMNS),
            response.next_page_token,
            first_page_total(token, response.total_size),
        )

    return fetch


def _requests(direction: desk_pb2.Direction.ValueType) -> Lister:
    def lister(desk: DeskClient, _args: argparse.Namespace) -> Callable[[int, str], Page]:
        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(
                    direction=direction, page_size=size, page_token=token
                )
            )
            return Page(message_rows(response.requests, REQUEST_COLUMNS), response.next_page_token)

        return fetch

    return lister


def _certifications(desk: DeskClient, args: argparse.Namespace) -> Callable[[int, str], Page]:
    status = CERTIFICATION_STATUSES.get(getattr(args, "status", "awaiting_review"), 0)

    def fetch(size: int, token: str) -> Page:
        response = desk.stub.ListCertifications(
            desk_pb2.ListCertificationsRequest(
                status=status,  # type: ignore[arg-type]
                page_size=size,
                page_token=token,
            )
        )
        return Page(
            message_rows(response.certifications, CERTIFICATION_COLUMNS), response.next_page_token
        )

    return fetch


def _attestations(desk: DeskClient, args: argparse.Namespace) -> Callable[[int, str], Page]:
    direction = DIRECTIONS.get(args.direction, desk_pb2.DIRECTION_UNSPECIFIED)

    def fetch(size: int, token: str) -> Page:
        response = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(direction=direction, page_size=size, page_token=token)
        )
        return Page(
            message_rows(response.attestations, ATTESTATION_COLUMNS), response.next_page_token
        )

    return fetch


def _outbox(desk: DeskClient, args: argparse.Namespace) -> Callable[[int, str], Page]:
    state = DELIVERY_STATES.get(args.state, 0)

    def fetch(size: int, token: str) -> Page:
        response = desk.stub.ListOutbox(
            desk_pb2.ListOutboxRequest(
                state=state,  # type: ignore[arg-type]
                page_size=size,
                page_token=token,
            )
        )
        return Page(message_rows(response.messages, OUTBOX_COLUMNS), response.next_page_token)

    return fetch


def _amount_changes(desk: DeskClient, args: argparse.Namespace) -> Callable[[int, str], Page]:
    status = AMOUNT_CHANGE_STATUSES.get(args.status, 0)

    def fetch(size: int, token: str) -> Page:
        response = desk.stub.ListAmountChanges(
            desk_pb2.ListAmountChangesRequest(
                status=status,  # type: ignore[arg-type]
                page_size=size,
                page_token=token,
            )
        )
        return Page(
            message_rows(response.changes, AMOUNT_CHANGE_COLUMNS),
            response.next_page_token,
            first_page_total(token, response.total_size),
        )

    return fetch


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-type", default="resident_id", choices=list(IDENTITY_TYPES))
    parser.add_argument("--id-number", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--phone")
    parser.add_argument("--address")


def _list_action(
    actions: Any, name: str, help_text: str, columns: list[str], lister: Lister
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
    add_listing_arguments(parser)
    parser.set_defaults(handler=_listing(help_text, columns, lister))
    return parser


def add_desk_commands(subparsers: Any) -> None:
    desk = subparsers.add_parser("desk", help="clerk and reviewer work at a node's desk")
    add_connection_arguments(desk)
    actions = desk.add_subparsers(dest="action", required=True)
    actions.add_parser("whoami")
    register = actions.add_parser("register", help="add a beneficiary this office pays")
    _identity_arguments(register)
    register.add_argument("--residence-region", required=True, type=region_code)
    register.add_argument(
        "--monthly-amount", type=yuan_as_fen, help="monthly pension in yuan, e.g. 3200.50"
    )
    register.add_argument(
        "--valid-until", type=utc_day, help="validity of the last certification (YYYY-MM-DD)"
    )
    register.add_argument("--scheme", choices=list(SCHEMES))
    register.add_argument("--payment-start", type=month, help="first month paid (YYYY-MM)")
    find = actions.add_parser(
        "find", help="a beneficiary by identity (the number is read from the terminal)"
    )
    find.add_argument("--id-type", default="resident_id", choices=list(IDENTITY_TYPES))
    update = actions.add_parser("update", help="change a beneficiary's residence region, phone")
    update.add_argument("beneficiary_id")
    update.add_argument("--residence-region", type=region_code)
    update.add_argument("--phone", help="the new phone number; '' removes it")
    _list_action(
        actions, "beneficiaries", "beneficiaries of this office", BENEFICIARY_COLUMNS,
        _beneficiaries,
    )  # fmt: skip
    request = actions.add_parser("request", help="ask the residence region to certify")
    request.add_argument("beneficiary_id")
    request.add_argument("--days", type=positive_int, default=30, help="deadline in days")
    _list_action(
        actions, "inbox", "requests other offices sent here", REQUEST_COLUMNS,
        _requests(desk_pb2.DIRECTION_INBOUND),
    )  # fmt: skip
    _list_action(
        actions, "sent", "requests this office sent", REQUEST_COLUMNS,
        _requests(desk_pb2.DIRECTION_OUTBOUND),
    )  # fmt: skip
    show = actions.add_parser("show")
    show.add_argument("request_id")
    status = actions.add_parser("status", help="accept, schedule or decline a request")
    status.add_argument("request_id")
    status.add_argument("status", choices=["accepted", "scheduled", "declined"])
    status.add_argument("--reason")
    status.add_argument(
        "--scheduled-for", type=iso_moment, help="ISO date-time of the visit or call"
    )
    for name in ("record", "walk-in", "certify", "correct"):
        record = actions.add_parser(name)
        if name == "record":
            record.add_argument("request_id")
        elif name == "certify":
            record.add_argument("beneficiary_id", help="one of this office's own beneficiaries")
        elif name == "correct":
            record.add_argument(
                "attestation_id", help="an attestation this node issued, superseded once approved"
            )
        else:
            _identity_arguments(record)
        record.add_argument("--method", default="on_site", choices=list(METHODS))
        record.add_argument("--outcome", default="alive", choices=list(OUTCOMES))
        record.add_argument(
            "--observed", type=utc_day, help="the day seen (or died), YYYY-MM-DD; default now"
        )
        record.add_argument(
            "--reported-by",
            choices=list(DEATH_REPORTERS),
            help="who reported a death: its report window (docs/life_events.md)",
        )
        record.add_argument(
            "--evidence", nargs="*", default=[], help="JPEG, PNG or PDF files, uploaded first"
        )
    _list_action(
        actions, "pending", "certifications awaiting review", CERTIFICATION_COLUMNS,
        _certifications,
    )  # fmt: skip
    certifications = _list_action(
        actions, "certifications", "certifications recorded here", CERTIFICATION_COLUMNS,
        _certifications,
    )  # fmt: skip
    certifications.add_argument("--status", choices=[*CERTIFICATION_STATUSES, ALL], default=ALL)
    approve = actions.add_parser("approve")
    approve.add_argument("certification_id")
    reject = actions.add_parser("reject")
    reject.add_argument("certification_id")
    reject.add_argument("--reason", required=True)
    attestations = _list_action(
        actions, "attestations", "attestations issued or received here", ATTESTATION_COLUMNS,
        _attestations,
    )  # fmt: skip
    attestations.add_argument("--direction", choices=[*DIRECTIONS, ALL], default=ALL)
    export = actions.add_parser("export")
    export.add_argument("attestation_id")
    export.add_argument("--out", required=True)
    export.add_argument(
        "--issuer", default="", help="the issuing node, when several nodes used the id"
    )
    propose = actions.add_parser(
        "propose-amount", help="propose a new monthly amount (a reviewer approves it)"
    )
    propose.add_argument("beneficiary_id")
    propose.add_argument(
        "--monthly-amount", type=yuan_as_fen, required=True, help="in yuan, e.g. 3300.00"
    )
    propose.add_argument("--reason", help="why, for the reviewer")
    amount_changes = _list_action(
        actions, "amount-changes", "monthly amount changes", AMOUNT_CHANGE_COLUMNS,
        _amount_changes,
    )  # fmt: skip
    amount_changes.add_argument(
        "--status", choices=[*AMOUNT_CHANGE_STATUSES, ALL], default="proposed"
    )
    for name, help_text in (
        ("approve-amount", "approve a proposed monthly amount (not your own)"),
        ("reject-amount", "reject a proposed monthly amount"),
    ):
        review = actions.add_parser(name, help=help_text)
        review.add_argument("change_id")
        review.add_argument("--reason", required=name == "reject-amount")
    approve_many = actions.add_parser(
        "approve-amounts",
        help="approve many proposed monthly amounts at once, e.g. a roll's yearly adjustment "
        "(reviewer; within the policy's amounts.bulk_change_percent, not your own)",
    )
    approve_many.add_argument(
        "change_ids", nargs="*", help="the changes; none: every change awaiting review"
    )
    approve_many.add_argument("--reason", help="why, for the record (audited)")
    approve_many.set_defaults(handler=_approve_amounts)
    add_trust_desk_commands(actions)
    add_evidence_desk_commands(actions)
    add_bundle_desk_commands(actions)
    add_lifecycle_desk_commands(actions)
    add_held_desk_commands(actions)
    add_recovery_desk_commands(actions)
    add_signal_desk_commands(actions)
    outbox = _list_action(
        actions, "outbox", "messages waiting for delivery, and dead letters", OUTBOX_COLUMNS,
        _outbox,
    )  # fmt: skip
    outbox.add_argument("--state", choices=[*DELIVERY_STATES, ALL], default=ALL)
    retry = actions.add_parser("retry")
    retry.add_argument("message_id")
    desk.set_defaults(handler=_desk_action)
