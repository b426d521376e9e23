"""The `certfed registry ...` commands, added to the top-level `certfed` command line.

    certfed registry init --data-dir D [--federation-id ID] [--admin NAME]
    certfed registry serve --config F
    certfed registry approve NODE --signing-key-fingerprint FP --tls-key-fingerprint FP
                             [--allow-second-node-for-region] --config F [--admin NAME]
    certfed registry list --config F [--admin NAME]
    certfed registry suspend|reinstate|revoke NODE --reason R [--effective-at ISO] --config F
    certfed registry export-directory --config F --out FILE [--admin NAME]
    certfed registry forks --config F [--notes]          (cli/witness_commands.py)
    certfed registry revoke-node|revoke-key|retire-key|rotate-root ...
                                                         (cli/registry_lifecycle_commands.py)

Administration commands talk to the running registry over mTLS as an administrator
(cli/registry_admin.py). Each command function returns the process exit code; a failure prints
one line (the status and the registry's message) on stderr and returns non-zero, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table

from certfed.v1 import common_pb2, directory_pb2
from cli.output import console
from cli.registry_admin import (
    EXIT_OK,
    admin_client,
    admin_options,
    fail,
    guarded,
    status_command,
)
from cli.registry_lifecycle_commands import add_lifecycle_commands
from cli.relocation_commands import add_relocation_registry_commands
from cli.witness_commands import add_witness_commands
from federation.roles import ROLE_NAMES
from federation.timestamps import to_datetime
from registry.config import load_registry_config
from registry.provision import init_registry
from registry.server import serve


def _status_name(status: int) -> str:
    return common_pb2.NodeStatus.Name(status).removeprefix("NODE_STATUS_").lower()  # type: ignore[arg-type]


@guarded
def init_command(args: argparse.Namespace) -> int:
    """Create a registry's keys, CA, administrator certificate and default registry.toml."""
    data_dir = Path(args.data_dir)
    init_registry(data_dir, args.federation_id, args.admin)
    print(f"registry initialised in {data_dir.resolve()}")
    print(f"  configuration: {data_dir.resolve() / 'registry.toml'}")
    trust = data_dir.resolve() / "trust"
    print(f"  give nodes (out of band): {trust} (root.pub, ca.pem, witness.vkey)")
    return EXIT_OK


@guarded
def serve_command(args: argparse.Namespace) -> int:
    """Run the registry until SIGTERM or SIGINT."""
    return serve(load_registry_config(Path(args.config)))


@guarded
def approve_command(args: argparse.Namespace) -> int:
    """Show a pending application and approve it once the administrator has confirmed the key
    fingerprints the office sent out of band (the registry compares them)."""
    _, client = admin_client(args)
    with client:
        node = next((n for n in client.list_nodes() if n.node_id == args.node_id), None)
        if node is not None:
            print(f"application of {node.node_id} ({node.display_name}):")
            print(f"  regions:             {' '.join(node.region_codes)}")
            print(f"  roles:               {_roles(node.roles)}")
            print(f"  endpoint:            {node.endpoint}")
            print(f"  signing key (recv.): {node.signing_key_fingerprint}")
            print(f"  TLS key (received):  {node.tls_key_fingerprint}")
        version = client.approve(
            args.node_id,
            signing_key_fingerprint=args.signing_key_fingerprint,
            tls_key_fingerprint=args.tls_key_fingerprint,
            allow_second_node_for_region=args.allow_second_node_for_region,
        )
    print(f"approved {args.node_id}; directory version {version}")
    return EXIT_OK


def _roles(roles: Iterable[common_pb2.Role.ValueType]) -> str:
    return " ".join(ROLE_NAMES.get(role, str(role)) for role in roles)


@guarded
def list_command(args: argparse.Namespace) -> int:
    """Show every node the registry knows, with its status and key fingerprints."""
    _, client = admin_client(args)
    with client:
        nodes = client.list_nodes()
    table = Table(title=f"{len(nodes)} node(s)")
    for column in ("node", "name", "regions", "roles", "endpoint", "status", "reason", "applied"):
        table.add_column(column)
    for node in nodes:
        table.add_row(
            node.node_id,
            node.display_name,
            " ".join(node.region_codes),
            _roles(node.roles),
            node.endpoint,
            _status_name(node.status),
            node.status_reason,
            to_datetime(node.applied_at).isoformat(timespec="seconds"),
        )
    console.print(table)
    # Plain print, below the table: a fingerprint read aloud must never be wrapped.
    print("key fingerprints (SHA-256) of the keys each node enrolled with:")
    for node in nodes:
        print(f"  {node.node_id}")
        print(f"    signing key: {node.signing_key_fingerprint}")
        print(f"    TLS key:     {node.tls_key_fingerprint}")
    return EXIT_OK


suspend_command = status_command(common_pb2.NODE_STATUS_SUSPENDED, "suspended")
reinstate_command = status_command(common_pb2.NODE_STATUS_ACTIVE, "reinstated")
revoke_command = status_command(common_pb2.NODE_STATUS_REVOKED, "revoked")


@guarded
def export_directory_command(args: argparse.Namespace) -> int:
    """Write the latest signed directory as DSSE JSON."""
    _, client = admin_client(args)
    with client:
        envelope = client.get_directory(0)
    if envelope is None:
        return fail("the registry has no directory to export")
    directory = directory_pb2.Directory()
    directory.ParseFromString(envelope.payload)
    out = Path(args.out)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_bytes(envelope.to_json())
    os.replace(temporary, out)
    print(f"wrote directory version {directory.version} to {out}")
    return EXIT_OK


def add_registry_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `registry` and its subcommands; each sets `handler`, called with the parsed args."""
    registry = subparsers.add_parser("registry", help="run and administer the federation registry")
    commands = registry.add_subparsers(dest="registry_command", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="create a new registry's keys and configuration")
    init.add_argument("--data-dir", required=True, help="directory for keys, database and config")
    init.add_argument("--federation-id", default="certfed", help="the federation's id")
    init.add_argument("--admin", default="admin", help="name of the first administrator")
    init.set_defaults(handler=init_command)

    serve_parser = commands.add_parser("serve", help="run the registry")
    serve_parser.add_argument("--config", required=True, help="the registry's registry.toml")
    serve_parser.set_defaults(handler=serve_command)

    approve = commands.add_parser(
        "approve",
        help="approve a pending enrolment after confirming its key fingerprints",
        description="Compare the key fingerprints the office sent out of band (it printed them "
        "at `certfed node enrol`) with what the registry received (`certfed registry list`), "
        "and type them: the registry refuses the approval unless both match.",
    )
    approve.add_argument("node_id", metavar="NODE")
    approve.add_argument(
        "--signing-key-fingerprint",
        required=True,
        help="the signing key's SHA-256 fingerprint, as the office sent it (spaces optional)",
    )
    approve.add_argument(
        "--tls-key-fingerprint",
        required=True,
        help="the TLS key's SHA-256 fingerprint, as the office sent it (spaces optional)",
    )
    approve.add_argument(
        "--allow-second-node-for-region",
        action="store_true",
        help="approve although another node already serves one of its regions in the same role",
    )
    admin_options(approve)
    approve.set_defaults(handler=approve_command)

    list_parser = commands.add_parser("list", help="list the federation's nodes")
    admin_options(list_parser)
    list_parser.set_defaults(handler=list_command)

    for name, func, reason_required, help_text in (
        ("suspend", suspend_command, True, "suspend a node (it may be reinstated)"),
        ("reinstate", reinstate_command, False, "reinstate a suspended node"),
        ("revoke", revoke_command, True, "revoke a node for good"),
    ):
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("node_id", metavar="NODE")
        parser.add_argument("--reason", required=reason_required, help="why; kept in the audit")
        parser.add_argument(
            "--effective-at", help="ISO 8601 time with zone when it took effect (default: now)"
        )
        admin_options(parser)
        parser.set_defaults(handler=func)

    export = commands.add_parser("export-directory", help="write the latest signed directory")
    admin_options(export)
    export.add_argument("--out", required=True, help="file to write the DSSE JSON to")
    export.set_defaults(handler=export_directory_command)

    add_witness_commands(commands)

    add_lifecycle_commands(commands)
    add_relocation_registry_commands(commands)
