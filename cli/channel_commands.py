"""`certfed adapter ...`: the certification channels' adapters from a terminal.

    certfed adapter face-recognition import RESULTS.jsonl --config node.toml --provider P.toml
    certfed adapter face-recognition serve --config node.toml --provider P.toml
        [--listen 127.0.0.1:8443] [--tls-cert CERT.pem --tls-key KEY.pem]
    certfed adapter employer-batch upload LIST.csv|LIST.xlsx --config node.toml --mapping M.toml
        --unit "佛山市财政局" [--rejects R.csv]
    certfed adapter employer-batch list --config node.toml [--state pending]
    certfed adapter employer-batch show BATCH_ID --config node.toml
    certfed adapter employer-batch approve BATCH_ID --config node.toml
    certfed adapter employer-batch reject BATCH_ID --config node.toml --reason "..."
    certfed adapter status add-client --clients clients.toml --id wechat-mini-program
    certfed adapter status revoke-client --clients clients.toml --id wechat-mini-program
    certfed adapter status serve --config node.toml --clients clients.toml
        --how face_recognition_app --how counter [--listen H:P] [--tls-cert C --tls-key K]

Each talks to the node's DeskService with the token in CERTFED_OPERATOR_TOKEN: for face
recognition the feed account bound to the provider's name; for a batch a clerk uploads and a
reviewer who did not upload it decides. Exit codes: 0 done; 1 nothing done (an error printed);
2 done, but some results or rows were refused (listed in the rejects file).
"""

from __future__ import annotations

import argparse
import csv
import signal
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

from rich.table import Table

from adapters.employer_batch import load_batch_mapping, upload_batch
from adapters.face_recognition import (
    CallbackServer,
    DeskResultRecorder,
    import_batch_file,
    load_provider_config,
    tls_context,
)
from adapters.status_endpoint import (
    ClientCredentials,
    DeskStatuses,
    EndpointSettings,
    StatusServer,
    add_client,
    revoke_client,
)
from certfed.v1 import desk_pb2
from cli.arguments import page_size
from cli.desk import add_connection_arguments, desk_client
from cli.output import console
from federation.errors import InvalidInputError

PARTIAL = 2


def _face_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    config = load_provider_config(Path(args.provider))
    rejects_path = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    with (
        desk_client(args) as desk,
        rejects_path.open("w", encoding="utf-8", newline="") as rejects,
    ):
        writer = csv.writer(rejects)
        writer.writerow(("line", "reason"))
        summary = import_batch_file(
            path,
            config,
            DeskResultRecorder(desk),
            reject=lambda line, reason: writer.writerow((line, reason)),
        )
    table = Table(title=f"{path.name}: {summary.lines:,} results from {config.provider}")
    table.add_column("")
    table.add_column("results", justify="right")
    for name, count in sorted(summary.outcomes.items()):
        table.add_row(name, f"{count:,}")
    table.add_row("refused by the adapter", f"{summary.rejected:,}")
    console.print(table)
    refused = summary.rejected + summary.outcomes.get("refused", 0)
    if refused or summary.outcomes.get("replayed", 0):
        console.print(f"refused and replayed results, with line and reason: {rejects_path}")
        return PARTIAL
    return 0


def _face_serve(args: argparse.Namespace) -> int:
    config = load_provider_config(Path(args.provider))
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInputError("--listen", "must be HOST:PORT")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInputError("--tls-cert", "give --tls-cert and --tls-key together")
    tls = tls_context(Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    stop = threading.Event()
    with desk_client(args) as desk:
        server = CallbackServer(
            config, DeskResultRecorder(desk), host=host, port=int(port), tls=tls
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        with server:
            console.print(f"face-recognition callback for {config.provider} on {server.url}")
            stop.wait()
    return 0


def _batch_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    mapping = load_batch_mapping(Path(args.mapping))
    rejects_path = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    with (
        desk_client(args) as desk,
        rejects_path.open("w", encoding="utf-8", newline="") as rejects,
    ):
        writer = csv.writer(rejects)
        writer.writerow(("line", "reason"))
        refused = 0

        def reject(line: int, reason: str) -> None:
            nonlocal refused
            refused += 1
            writer.writerow((line, reason))

        answer = upload_batch(desk, path, mapping, unit=args.unit, reject=reject)
    batch = answer.batch
    console.print(
        f"batch {batch.batch_id} from {batch.unit}: {batch.rows:,} rows await a reviewer's "
        "approval (not yours)"
    )
    if refused:
        console.print(f"{refused:,} rows refused, with line and reason: {rejects_path}")
        return PARTIAL
    return 0


def _batch_list(args: argparse.Namespace) -> int:
    state = (
        desk_pb2.EmployerBatchState.Value(f"EMPLOYER_BATCH_STATE_{args.state.upper()}")
        if args.state
        else desk_pb2.EMPLOYER_BATCH_STATE_UNSPECIFIED
    )
    with desk_client(args) as desk:
        batches = desk.stub.ListEmployerBatches(
            desk_pb2.ListEmployerBatchesRequest(state=state, page_size=args.page_size)
        ).batches
    table = Table(title="employer batches")
    for column in ("batch", "unit", "file", "state", "rows", "issued", "uploaded by", "decided by"):
        table.add_column(column)
    for batch in batches:
        table.add_row(
            batch.batch_id,
            batch.unit,
            batch.file_name,
            desk_pb2.EmployerBatchState.Name(batch.state)
            .removeprefix("EMPLOYER_BATCH_STATE_")
            .lower(),
            f"{batch.rows:,}",
            f"{batch.issued:,}",
            batch.uploaded_by,
            batch.decided_by,
        )
    console.print(table)
    return 0


def _batch_show(args: argparse.Namespace) -> int:
    table = Table(title=f"employer batch {args.batch_id}")
    for column in ("line", "person", "confirmed alive on"):
        table.add_column(column, no_wrap=True)
    for column in ("certification", "skipped because"):
        # Ids and reasons wrap rather than being cut on a narrow terminal.
        table.add_column(column, overflow="fold")
    token = ""
    with desk_client(args) as desk:
        while True:
            answer = desk.stub.GetEmployerBatch(
                desk_pb2.GetEmployerBatchRequest(
                    batch_id=args.batch_id, page_size=args.page_size, page_token=token
                )
            )
            for entry in answer.entries:
                table.add_row(
                    str(entry.line),
                    entry.masked_identity_number,
                    entry.observed_at.ToDatetime(UTC).date().isoformat(),
                    entry.certification_id or "-",
                    entry.skipped_reason or "-",
                )
            token = answer.next_page_token
            if not token:
                break
    batch = answer.batch
    state = desk_pb2.EmployerBatchState.Name(batch.state).removeprefix("EMPLOYER_BATCH_STATE_")
    console.print(
        f"{batch.unit}, {batch.file_name}: {batch.rows:,} rows, {state.lower()}, uploaded by "
        f"{batch.uploaded_by}"
    )
    console.print(table)
    return 0


def _batch_decide(args: argparse.Namespace) -> int:
    approve = args.batch_command == "approve"
    with desk_client(args) as desk:
        batch = desk.stub.DecideEmployerBatch(
            desk_pb2.DecideEmployerBatchRequest(
                batch_id=args.batch_id, approve=approve, reason=args.reason or ""
            )
        ).batch
    if approve:
        console.print(
            f"batch {batch.batch_id} approved: {batch.issued:,} attestations issued, "
            f"{batch.skipped:,} rows skipped (no longer certifiable)"
        )
    else:
        console.print(f"batch {batch.batch_id} rejected; nothing changed")
    return 0


def _status_add_client(args: argparse.Namespace) -> int:
    credential = add_client(Path(args.clients), args.id)
    console.print(f"client {args.id} added. Its credential (shown once; give it to that system):")
    console.print(credential)
    return 0


def _status_revoke_client(args: argparse.Namespace) -> int:
    revoke_client(Path(args.clients), args.id)
    console.print(f"client {args.id} revoked: its next call is refused")
    return 0


def _status_serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInputError("--listen", "must be HOST:PORT")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInputError("--tls-cert", "give --tls-cert and --tls-key together")
    tls = tls_context(Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    stop = threading.Event()
    with desk_client(args) as desk:
        server = StatusServer(
            ClientCredentials(Path(args.clients)),
            DeskStatuses(desk),
            EndpointSettings(how_to_certify=args.how),
            host=host,
            port=int(port),
            tls=tls,
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        with server:
            console.print(f"retiree status endpoint on {server.url}")
            stop.wait()
    return 0


def add_channel_commands(subparsers: Any) -> None:
    adapter = subparsers.add_parser("adapter", help="certification channels' adapters")
    channels = adapter.add_subparsers(dest="adapter", required=True)
    face = channels.add_parser(
        "face-recognition", help="signed results from a certification app or kiosk"
    ).add_subparsers(dest="face_command", required=True)

    face_import = face.add_parser("import", help="verify and record a provider's batch file")
    face_import.add_argument("file", help="the provider's results, one signed envelope a line")
    add_connection_arguments(face_import)
    face_import.add_argument("--provider", required=True, help="the provider's settings (.toml)")
    face_import.add_argument("--rejects", help="CSV of refused results (default FILE.rejects.csv)")
    face_import.set_defaults(handler=_face_import)

    face_serve = face.add_parser("serve", help="receive the provider's callbacks over HTTPS")
    add_connection_arguments(face_serve)
    face_serve.add_argument("--provider", required=True, help="the provider's settings (.toml)")
    face_serve.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT")
    face_serve.add_argument("--tls-cert", help="the callback's certificate chain (PEM)")
    face_serve.add_argument("--tls-key", help="its private key (PEM)")
    face_serve.set_defaults(handler=_face_serve)

    batch = channels.add_parser(
        "employer-batch", help="a unit's list of retirees it confirms alive, approved whole"
    ).add_subparsers(dest="batch_command", required=True)
    upload = batch.add_parser("upload", help="upload a unit's list as one pending batch")
    upload.add_argument("file", help="the list: .csv or .xlsx")
    add_connection_arguments(upload)
    upload.add_argument("--mapping", required=True, help="the unit's mapping file (.toml)")
    upload.add_argument("--unit", required=True, help="the unit that sent the list")
    upload.add_argument("--rejects", help="CSV of refused rows (default FILE.rejects.csv)")
    upload.set_defaults(handler=_batch_upload)
    listing = batch.add_parser("list", help="batches and their state")
    add_connection_arguments(listing)
    listing.add_argument("--state", choices=["pending", "approved", "rejected"])
    listing.add_argument("--page-size", type=page_size, default=100)
    listing.set_defaults(handler=_batch_list)
    show = batch.add_parser("show", help="one batch's rows, people masked, before deciding it")
    show.add_argument("batch_id")
    add_connection_arguments(show)
    show.add_argument("--page-size", type=page_size, default=500)
    show.set_defaults(handler=_batch_show)
    for name, help_text in (
        ("approve", "approve a batch whole: every row's attestation is issued"),
        ("reject", "reject a batch: nothing changes"),
    ):
        decide = batch.add_parser(name, help=help_text)
        decide.add_argument("batch_id")
        add_connection_arguments(decide)
        decide.add_argument("--reason", required=name == "reject", help="recorded in the audit")
        decide.set_defaults(handler=_batch_decide)

    status = channels.add_parser(
        "status", help="the retiree status endpoint for the office's portal or mini program"
    ).add_subparsers(dest="status_command", required=True)
    for name, handler, help_text in (
        ("add-client", _status_add_client, "a calling system's credential (shown once)"),
        ("revoke-client", _status_revoke_client, "refuse a calling system from its next call"),
    ):
        client = status.add_parser(name, help=help_text)
        client.add_argument("--clients", required=True, help="the clients file (.toml)")
        client.add_argument("--id", required=True, help="the calling system's id")
        client.set_defaults(handler=handler)
    serve = status.add_parser("serve", help="answer the portal's status calls over HTTPS")
    add_connection_arguments(serve)
    serve.add_argument("--clients", required=True, help="the clients file (.toml)")
    serve.add_argument(
        "--how", action="append", required=True, help="a way to certify the portal shows"
    )
    serve.add_argument("--listen", default="127.0.0.1:8444", help="HOST:PORT")
    serve.add_argument("--tls-cert", help="the endpoint's certificate chain (PEM)")
    serve.add_argument("--tls-key", help="its private key (PEM)")
    serve.set_defaults(handler=_status_serve)
