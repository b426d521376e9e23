"""`certfed desk <action> ...`: a clerk's or reviewer's work at a node's desk from a terminal.

    certfed desk --config node.toml whoami|register|beneficiaries|request|inbox|sent|show|status
    certfed desk --config node.toml record|walk-in|pending|approve|reject|attestations|export
    certfed desk --config node.toml outbox|retry

The trust, bundle and lifecycle modules add their own actions (directory-status, export-bundle,
due, ...). Every action talks to the node's DeskService with the operator token in
CERTFED_OPERATOR_TOKEN and prints what the desk returned.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bundle_commands import add_bundle_desk_commands
from cli.desk import add_connection_arguments, desk_client
from cli.lifecycle_commands import add_lifecycle_desk_commands
from cli.output import console, print_messages, print_one
from cli.trust_commands import add_trust_desk_commands
from federation.timestamps import to_timestamp


def _identity(args: argparse.Namespace) -> attestation_pb2.IdentityBundle:
    kinds = {
        "resident_id": common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        "hkid": common_pb2.IDENTITY_TYPE_HKID,
        "macau_bir": common_pb2.IDENTITY_TYPE_MACAU_BIR,
        "passport": common_pb2.IDENTITY_TYPE_PASSPORT,
    }
    return attestation_pb2.IdentityBundle(
        identity_type=kinds[args.id_type],
        identity_number=args.id_number,
        full_name=args.name,
        phone=args.phone or "",
        address=args.address or "",
    )


def _desk_action(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        action = args.action
        if action == "whoami":
            print_one(desk.stub.WhoAmI(desk_pb2.WhoAmIRequest()))
        elif action == "register":
            request = desk_pb2.RegisterBeneficiaryRequest(
                identity=_identity(args), residence_region=args.residence_region
            )
            print_one(desk.stub.RegisterBeneficiary(request).beneficiary)
        elif action == "beneficiaries":
            response = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest())
            print_messages(
                response.beneficiaries,
                ["beneficiary_id", "masked_identity_number", "residence_region", "status",
                 "valid_until"],
            )  # fmt: skip
        elif action == "request":
            ask = desk_pb2.RequestCertificationRequest(
                beneficiary_id=args.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=args.days)),
            )
            print_one(desk.stub.RequestCertification(ask).request)
        elif action in ("inbox", "sent"):
            direction = (
                desk_pb2.DIRECTION_INBOUND if action == "inbox" else desk_pb2.DIRECTION_OUTBOUND
            )
            requests = desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(direction=direction),
            )
            print_messages(
                requests.requests,
                ["request_id", "peer_node_id", "residence_region", "status", "deadline"],
            )
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
            if args.scheduled_for:
                change.scheduled_for.CopyFrom(
                    to_timestamp(datetime.fromisoformat(args.scheduled_for).astimezone(UTC))
                )
            print_one(desk.stub.SetAssistanceStatus(change).request)
        elif action in ("record", "walk-in"):
            record = desk_pb2.RecordCertificationRequest(
                method=common_pb2.CertificationMethod.Value(
                    "CERTIFICATION_METHOD_" + args.method.upper()
                ),
                outcome=common_pb2.CertificationOutcome.Value(
                    "CERTIFICATION_OUTCOME_" + args.outcome.upper()
                ),
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=[
                    hashlib.sha256(Path(path).read_bytes()).digest() for path in args.evidence
                ],
            )
            if action == "record":
                record.request_id = args.request_id
            else:
                record.walk_in.CopyFrom(_identity(args))
            print_one(desk.stub.RecordCertification(record).certification)
        elif action == "pending":
            certifications = desk.stub.ListCertifications(
                desk_pb2.ListCertificationsRequest(
                    status=desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
                ),
            )
            print_messages(
                certifications.certifications,
                ["certification_id", "request_id", "method", "outcome", "clerk_id"],
            )
        elif action == "approve":
            approve = desk_pb2.ApproveCertificationRequest(certification_id=args.certification_id)
            print_one(desk.stub.ApproveCertification(approve).certification)
        elif action == "reject":
            reject = desk_pb2.RejectCertificationRequest(
                certification_id=args.certification_id, reason=args.reason
            )
            print_one(desk.stub.RejectCertification(reject).certification)
        elif action == "attestations":
            attestations = desk.stub.ListAttestations(desk_pb2.ListAttestationsRequest())
            print_messages(
                attestations.attestations,
                ["attestation_id", "direction", "issuing_node_id", "outcome", "valid_until"],
            )
        elif action == "export":
            exported = desk.stub.ExportAttestation(
                desk_pb2.ExportAttestationRequest(attestation_id=args.attestation_id),
            )
            Path(args.out).write_bytes(exported.dsse_json)
            console.print(f"wrote {args.out}")
        elif action == "outbox":
            outbox = desk.stub.ListOutbox(desk_pb2.ListOutboxRequest())
            print_messages(
                outbox.messages,
                ["message_id", "kind", "destination", "state", "attempts", "last_error"],
            )
        elif action == "retry":
            retry = desk_pb2.RetryDeadLetterRequest(message_id=args.message_id)
            print_one(desk.stub.RetryDeadLetter(retry).message)
    return 0


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id-type", default="resident_id", choices=["resident_id", "hkid", "macau_bir", "passport"]
    )
    parser.add_argument("--id-number", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--phone")
    parser.add_argument("--address")


def add_desk_commands(subparsers: Any) -> None:
    desk = subparsers.add_parser("desk", help="clerk and reviewer work at a node's desk")
    add_connection_arguments(desk)
    actions = desk.add_subparsers(dest="action", required=True)
    actions.add_parser("whoami")
    register = actions.add_parser("register", help="add a beneficiary this office pays")
    _identity_arguments(register)
    register.add_argument("--residence-region", required=True)
    actions.add_parser("beneficiaries")
    request = actions.add_parser("request", help="ask the residence region to certify")
    request.add_argument("beneficiary_id")
    request.add_argument("--days", type=int, default=30, help="deadline in days")
    actions.add_parser("inbox", help="requests other offices sent here")
    actions.add_parser("sent", help="requests this office sent")
    show = actions.add_parser("show")
    show.add_argument("request_id")
    status = actions.add_parser("status", help="accept, schedule or decline a request")
    status.add_argument("request_id")
    status.add_argument("status", choices=["accepted", "scheduled", "declined"])
    status.add_argument("--reason")
    status.add_argument("--scheduled-for", help="ISO date-time of the visit or call")
    for name in ("record", "walk-in"):
        record = actions.add_parser(name)
        if name == "record":
            record.add_argument("request_id")
        else:
            _identity_arguments(record)
        record.add_argument("--method", default="on_site")
        record.add_argument("--outcome", default="alive")
        record.add_argument("--evidence", nargs="*", default=[], help="files kept as evidence")
    actions.add_parser("pending", help="certifications awaiting review")
    approve = actions.add_parser("approve")
    approve.add_argument("certification_id")
    reject = actions.add_parser("reject")
    reject.add_argument("certification_id")
    reject.add_argument("--reason", required=True)
    actions.add_parser("attestations")
    export = actions.add_parser("export")
    export.add_argument("attestation_id")
    export.add_argument("--out", required=True)
    add_trust_desk_commands(actions)
    add_bundle_desk_commands(actions)
    add_lifecycle_desk_commands(actions)
    actions.add_parser("outbox")
    retry = actions.add_parser("retry")
    retry.add_argument("message_id")
    desk.set_defaults(handler=_desk_action)
