"""`certfed`: the one command for operators, clerks and tools.

    certfed registry ...            run and administer the registry (see `certfed registry -h`)
    certfed node init|enrol|serve|add-operator|disable-operator|list-operators --config node.toml
    certfed audit verify|export --config node.toml
    certfed desk <action> ...       a clerk's or reviewer's work from a terminal
    certfed verify FILE --directory directory.json --root-key root.pub
    certfed demo [--workdir DIR]

Errors print one line a person can act on and exit non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.adapter_commands import add_adapter_commands
from cli.audit_commands import add_audit_commands
from cli.bench.commands import add_bench_commands
from cli.bundle_commands import add_bundle_desk_commands, verify_bundle_file
from cli.lifecycle_commands import add_lifecycle_desk_commands, add_lifecycle_node_commands
from cli.operator_commands import add_operator_command, add_operator_commands
from cli.registry_commands import add_registry_commands
from cli.sync_commands import add_sync_commands
from cli.trust_commands import add_trust_desk_commands, add_trust_node_commands
from federation.desk_client import DeskClient, describe_rpc_error
from federation.directory import verify_directory
from federation.errors import CertfedError
from federation.registry_client import RegistryClient
from federation.timestamps import to_timestamp
from federation.transport import anonymous_channel_credentials
from federation_node.config import load_node_config
from federation_node.keystore import (
    KeyPaths,
    build_application,
    create_keys,
    is_enrolled,
    load_root_public_key,
    store_enrolment,
)
from federation_node.tlog.attestation import verify_attestation_envelope
from federation_node.tlog.bundle import is_bundle
from signing import dsse
from signing.errors import SigningError

console = Console()
TOKEN_ENV = "CERTFED_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a secret


# node


def _node_init(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    create_keys(KeyPaths(config.data_dir))
    console.print(f"created keys for node {config.node_id} in {config.data_dir / 'keys'}")
    return 0


def _node_enrol(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    credentials = anonymous_channel_credentials(config.ca_certificate.read_bytes())
    with RegistryClient(config.registry_enrol_endpoint, credentials, config.limits) as registry:
        if not is_enrolled(paths):
            registry.enrol(build_application(config, paths, datetime.now(UTC)))
            console.print(f"enrolment of {config.node_id} sent; waiting for an administrator")
        deadline = time.monotonic() + args.wait
        while True:
            enrolment = registry.get_enrolment(config.node_id)
            if enrolment.status == common_pb2.NODE_STATUS_ACTIVE:
                store_enrolment(
                    config, paths, enrolment.tls_certificate_pem, enrolment.sealed_locator_key
                )
                console.print(f"{config.node_id} approved; certificate installed")
                return 0
            if time.monotonic() >= deadline:
                state = common_pb2.NodeStatus.Name(enrolment.status)
                console.print(f"{config.node_id} is {state}; run this again after approval")
                return 3
            time.sleep(1.0)


def _node_serve(args: argparse.Namespace) -> int:
    from federation_node.server import serve

    return serve(load_node_config(Path(args.config)))


# desk


def _desk(args: argparse.Namespace) -> DeskClient:
    config = load_node_config(Path(args.config))
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise CertfedError(f"set {TOKEN_ENV} to your operator token")
    return DeskClient(
        args.endpoint or config.desk_listen,
        config.node_id,
        config.ca_certificate.read_bytes(),
        token,
        config.limits,
    )


def _print_messages(messages: Sequence[Any], columns: Sequence[str]) -> None:
    table = Table()
    for column in columns:
        table.add_column(column)
    for message in messages:
        data = MessageToDict(message, preserving_proto_field_name=True)
        table.add_row(*(str(data.get(column, "")) for column in columns))
    console.print(table)


def _print_one(message: Any) -> None:
    console.print_json(json.dumps(MessageToDict(message, preserving_proto_field_name=True)))


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
    with _desk(args) as desk:
        action = args.action
        if action == "whoami":
            _print_one(desk.stub.WhoAmI(desk_pb2.WhoAmIRequest()))
        elif action == "register":
            request = desk_pb2.RegisterBeneficiaryRequest(
                identity=_identity(args), residence_region=args.residence_region
            )
            _print_one(desk.stub.RegisterBeneficiary(request).beneficiary)
        elif action == "beneficiaries":
            response = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest())
            _print_messages(
                response.beneficiaries,
                ["beneficiary_id", "masked_identity_number", "residence_region", "status",
                 "valid_until"],
            )  # fmt: skip
        elif action == "request":
            ask = desk_pb2.RequestCertificationRequest(
                beneficiary_id=args.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=args.days)),
            )
            _print_one(desk.stub.RequestCertification(ask).request)
        elif action in ("inbox", "sent"):
            direction = (
                desk_pb2.DIRECTION_INBOUND if action == "inbox" else desk_pb2.DIRECTION_OUTBOUND
            )
            requests = desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(direction=direction),
            )
            _print_messages(
                requests.requests,
                ["request_id", "peer_node_id", "residence_region", "status", "deadline"],
            )
        elif action == "show":
            _print_one(
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
            _print_one(desk.stub.SetAssistanceStatus(change).request)
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
            _print_one(desk.stub.RecordCertification(record).certification)
        elif action == "pending":
            certifications = desk.stub.ListCertifications(
                desk_pb2.ListCertificationsRequest(
                    status=desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
                ),
            )
            _print_messages(
                certifications.certifications,
                ["certification_id", "request_id", "method", "outcome", "clerk_id"],
            )
        elif action == "approve":
            approve = desk_pb2.ApproveCertificationRequest(certification_id=args.certification_id)
            _print_one(desk.stub.ApproveCertification(approve).certification)
        elif action == "reject":
            reject = desk_pb2.RejectCertificationRequest(
                certification_id=args.certification_id, reason=args.reason
            )
            _print_one(desk.stub.RejectCertification(reject).certification)
        elif action == "attestations":
            attestations = desk.stub.ListAttestations(desk_pb2.ListAttestationsRequest())
            _print_messages(
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
            _print_messages(
                outbox.messages,
                ["message_id", "kind", "destination", "state", "attempts", "last_error"],
            )
        elif action == "retry":
            retry = desk_pb2.RetryDeadLetterRequest(message_id=args.message_id)
            _print_one(desk.stub.RetryDeadLetter(retry).message)
    return 0


# verify and demo


def _verify(args: argparse.Namespace) -> int:
    root_key = load_root_public_key(Path(args.root_key))
    now = datetime.now(UTC)
    directory = verify_directory(
        dsse.Envelope.from_json(Path(args.directory).read_bytes()),
        root_key,
        now=now,
        allow_expired=True,
    )
    failures = 0
    for name in args.files:
        try:
            data = Path(name).read_bytes()
            if is_bundle(data):
                console.print(verify_bundle_file(name, data, directory, args.witness_key, now))
                continue
            envelope = dsse.Envelope.from_json(data)
            attestation, key_id = verify_attestation_envelope(
                envelope, directory, now=now, max_clock_skew=timedelta(minutes=5)
            )
        except (CertfedError, SigningError, OSError) as error:
            failures += 1
            console.print(f"[red]REFUSED[/red] {name}: {error}")
            continue
        outcome = common_pb2.CertificationOutcome.Name(attestation.outcome)
        console.print(
            f"[green]OK[/green] {name}: attestation {attestation.attestation_id} by "
            f"{attestation.issuing_node_id} (key {key_id[:16]}) for paying node "
            f"{attestation.paying_node_id}: {outcome.removeprefix('CERTIFICATION_OUTCOME_')}"
        )
    return 1 if failures else 0


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    return run_demo(Path(args.workdir) if args.workdir else None)


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id-type", default="resident_id", choices=["resident_id", "hkid", "macau_bir", "passport"]
    )
    parser.add_argument("--id-number", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--phone")
    parser.add_argument("--address")


def _desk_commands(subparsers: Any) -> None:
    desk = subparsers.add_parser("desk", help="clerk and reviewer work at a node's desk")
    desk.add_argument("--config", required=True, help="the node's node.toml")
    desk.add_argument("--endpoint", help="desk address if not the config's desk_listen")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certfed", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_registry_commands(subparsers)
    add_sync_commands(subparsers)
    add_bench_commands(subparsers)
    node = subparsers.add_parser("node", help="run and administer a regional node")
    node_actions = node.add_subparsers(dest="node_command", required=True)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "init": _node_init,
        "enrol": _node_enrol,
        "serve": _node_serve,
        "add-operator": add_operator_command,
    }
    for name, handler in handlers.items():
        sub = node_actions.add_parser(name)
        sub.add_argument("--config", required=True)
        sub.set_defaults(handler=handler)
        if name == "enrol":
            sub.add_argument("--wait", type=float, default=0.0, help="seconds to await approval")
        if name == "add-operator":
            sub.add_argument("--label", required=True, help="a role label, not a personal name")
            sub.add_argument(
                "--role", action="append", required=True, choices=["clerk", "reviewer", "admin"]
            )
    add_operator_commands(node_actions)
    add_audit_commands(subparsers)
    add_trust_node_commands(node_actions)
    add_lifecycle_node_commands(node_actions)
    _desk_commands(subparsers)
    verify = subparsers.add_parser("verify", help="verify exported attestations offline")
    verify.add_argument("files", nargs="+")
    verify.add_argument("--directory", required=True, help="signed directory (DSSE JSON)")
    verify.add_argument("--root-key", required=True, help="registry root public key")
    verify.add_argument(
        "--witness-key",
        help="registry witness verifier key, for bundles (default trust/witness.vkey)",
    )
    verify.set_defaults(handler=_verify)
    demo = subparsers.add_parser("demo", help="run four regional offices on this machine")
    demo.add_argument("--workdir", help="keep everything in this (new or empty) directory")
    demo.set_defaults(handler=_demo)
    add_adapter_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.handler
    try:
        return command(args)
    except CertfedError as error:
        console.print(f"[red]error:[/red] {error}")
    except SigningError as error:
        console.print(f"[red]refused:[/red] {error}")
    except grpc.RpcError as error:
        console.print(f"[red]error:[/red] {describe_rpc_error(error)}")
    except (OSError, TimeoutError) as error:
        console.print(f"[red]error:[/red] {error}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
