"""The `certfed registry ...` commands, added to the top-level `certfed` command line.

    certfed registry init --data-dir D [--federation-id ID] [--admin NAME]
    certfed registry serve --config F
    certfed registry approve NODE --config F [--admin NAME]
    certfed registry list --config F [--admin NAME]
    certfed registry suspend|reinstate|revoke NODE --reason R [--effective-at ISO] --config F
    certfed registry export-directory --config F --out FILE [--admin NAME]
    certfed registry forks --config F [--notes]          (cli/witness_commands.py)
    certfed registry revoke-node|revoke-key|retire-key|rotate-root ...   (lifecycle_commands)

Administration commands talk to the running registry over mTLS with the administrator
certificate in `<data_dir>/admin/<NAME>.{key,pem}`; they find its port in the ready file the
server writes, or else in the configured `listen` address (`--endpoint` overrides both). Each
command function returns the process exit code; a failure prints one line (the status and the
registry's message) on stderr and returns non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from certfed.v1 import common_pb2, directory_pb2
from cli.witness_commands import add_witness_commands
from federation.errors import CertfedError, InvalidInputError, PreconditionError
from federation.registry_client import RegistryAdminClient
from federation.roles import ROLE_NAMES
from federation.timestamps import to_datetime
from federation.transport import TlsMaterial
from registry.config import RegistryConfig, load_registry_config
from registry.provision import init_registry
from registry.server import serve
from signing.errors import SigningError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 - recognised, never bound here

Command = Callable[[argparse.Namespace], int]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILED


def _guarded(command: Command) -> Command:
    """Run a command, turning every expected failure into one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CertfedError as error:
            return _fail(f"{error.status.name}: {error}")
        except SigningError as error:
            return _fail(str(error))
        except OSError as error:
            return _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def admin_endpoint(config: RegistryConfig) -> str:
    """Where an administrator reaches the running registry's mTLS port."""
    host, _, port = config.listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    ready = config.paths.ready_file
    if ready.exists():
        try:
            port = str(int(json.loads(ready.read_text(encoding="utf-8"))["mtls"]))
        except (ValueError, KeyError, TypeError):
            raise PreconditionError(f"{ready} is not a registry ready file") from None
    if port == "0":
        raise PreconditionError(
            f"the registry listens on a port chosen at start and {ready} does not exist: "
            "is the registry running? (or pass --endpoint)"
        )
    return f"{host}:{port}"


def _admin_client(args: argparse.Namespace) -> tuple[RegistryConfig, RegistryAdminClient]:
    config = load_registry_config(Path(args.config))
    paths = config.paths
    certificate, key = paths.admin_certificate(args.admin), paths.admin_key(args.admin)
    if not certificate.exists() or not key.exists():
        raise PreconditionError(
            f"no administrator certificate {certificate} (and key {key.name}); "
            "`certfed registry init` creates one for the first administrator"
        )
    tls = TlsMaterial.load(certificate, key, paths.ca_certificate)
    endpoint = args.endpoint or admin_endpoint(config)
    return config, RegistryAdminClient(endpoint, tls.channel_credentials(), config.limits)


def _status_name(status: int) -> str:
    return common_pb2.NodeStatus.Name(status).removeprefix("NODE_STATUS_").lower()  # type: ignore[arg-type]


@_guarded
def init_command(args: argparse.Namespace) -> int:
    """Create a registry's keys, CA, administrator certificate and default registry.toml."""
    data_dir = Path(args.data_dir)
    init_registry(data_dir, args.federation_id, args.admin)
    print(f"registry initialised in {data_dir.resolve()}")
    print(f"  configuration: {data_dir.resolve() / 'registry.toml'}")
    trust = data_dir.resolve() / "trust"
    print(f"  give nodes (out of band): {trust} (root.pub, ca.pem, witness.vkey)")
    return EXIT_OK


@_guarded
def serve_command(args: argparse.Namespace) -> int:
    """Run the registry until SIGTERM or SIGINT."""
    return serve(load_registry_config(Path(args.config)))


@_guarded
def approve_command(args: argparse.Namespace) -> int:
    """Approve a pending enrolment."""
    _, client = _admin_client(args)
    with client:
        version = client.approve(args.node_id)
    print(f"approved {args.node_id}; directory version {version}")
    return EXIT_OK


@_guarded
def list_command(args: argparse.Namespace) -> int:
    """Show every node the registry knows, with its status."""
    _, client = _admin_client(args)
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
            " ".join(ROLE_NAMES.get(role, str(role)) for role in node.roles),
            node.endpoint,
            _status_name(node.status),
            node.status_reason,
            to_datetime(node.applied_at).isoformat(timespec="seconds"),
        )
    Console().print(table)
    return EXIT_OK


def _effective_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("--effective-at", f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidInputError(
            "--effective-at", "give a time zone, e.g. 2025-03-01T09:00:00+08:00"
        )
    return moment


def _status_command(status: common_pb2.NodeStatus.ValueType, verb: str) -> Command:
    @_guarded
    def command(args: argparse.Namespace) -> int:
        effective_at = _effective_at(args.effective_at)
        _, client = _admin_client(args)
        with client:
            version = client.set_status(args.node_id, status, args.reason or "", effective_at)
        print(f"{verb} {args.node_id}; directory version {version}")
        return EXIT_OK

    command.__name__ = f"{verb}_command"
    return command


suspend_command = _status_command(common_pb2.NODE_STATUS_SUSPENDED, "suspended")
reinstate_command = _status_command(common_pb2.NODE_STATUS_ACTIVE, "reinstated")
revoke_command = _status_command(common_pb2.NODE_STATUS_REVOKED, "revoked")


@_guarded
def export_directory_command(args: argparse.Namespace) -> int:
    """Write the latest signed directory as DSSE JSON."""
    _, client = _admin_client(args)
    with client:
        envelope = client.get_directory(0)
    if envelope is None:
        return _fail("the registry has no directory to export")
    directory = directory_pb2.Directory()
    directory.ParseFromString(envelope.payload)
    out = Path(args.out)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_bytes(envelope.to_json())
    os.replace(temporary, out)
    print(f"wrote directory version {directory.version} to {out}")
    return EXIT_OK


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the registry's registry.toml")
    parser.add_argument(
        "--admin", default="admin", help="administrator certificate name (default: admin)"
    )
    parser.add_argument(
        "--endpoint", help="host:port of the registry's mTLS port (default: from the config)"
    )


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

    approve = commands.add_parser("approve", help="approve a pending enrolment")
    approve.add_argument("node_id", metavar="NODE")
    _admin_options(approve)
    approve.set_defaults(handler=approve_command)

    list_parser = commands.add_parser("list", help="list the federation's nodes")
    _admin_options(list_parser)
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
        _admin_options(parser)
        parser.set_defaults(handler=func)

    export = commands.add_parser("export-directory", help="write the latest signed directory")
    _admin_options(export)
    export.add_argument("--out", required=True, help="file to write the DSSE JSON to")
    export.set_defaults(handler=export_directory_command)

    add_witness_commands(commands)

    # Imported here: the lifecycle commands build on this module's helpers.
    from cli.registry_lifecycle_commands import add_lifecycle_commands

    add_lifecycle_commands(commands)
