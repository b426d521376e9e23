"""`certfed`: the one command for operators, clerks and tools.

    certfed registry ...            run and administer the registry (see `certfed registry -h`)
    certfed node init|enrol|serve|add-operator|disable-operator|list-operators --config node.toml
    certfed audit verify|export --config node.toml
    certfed desk <action> ...       a clerk's or reviewer's work from a terminal
    certfed verify FILE --directory directory.json --root-key root.pub
    certfed feed|roll|forms|bank|notify ...   the adapters (see docs/adapters.md)
    certfed demo [--serve] [--workdir DIR]
    certfed health --address HOST:PORT   is a registry or node serving? (exit 0 if so)
    certfed web serve --config node.toml [--listen HOST:PORT]   the office's web desk

Errors print one line a person can act on and exit non-zero; never a traceback. A bad argument
(an unknown choice, a date that is not one, an unknown flag) is one line on stderr naming the
argument and what it accepts, exit status 2 (cli/arguments.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from certfed.v1 import common_pb2
from cli.adapter_commands import add_adapter_commands
from cli.arguments import EXIT_BAD_ARGUMENT, CommandParser
from cli.audit_commands import add_audit_commands
from cli.bench.commands import add_bench_commands
from cli.bundle_commands import verify_bundle_file
from cli.channel_commands import add_channel_commands
from cli.demo import run_demo
from cli.desk_commands import add_desk_commands
from cli.health_command import add_health_command
from cli.node_commands import add_node_commands
from cli.output import console
from cli.registry_commands import add_registry_commands
from cli.sync_commands import add_sync_commands
from cli.web_commands import add_web_commands
from federation.desk_client import describe_rpc_error
from federation.directory import verify_directory
from federation.errors import CertfedError
from federation_node.keystore import load_root_public_key
from federation_node.tlog.attestation import verify_attestation_envelope
from federation_node.tlog.bundle import is_bundle
from signing import dsse
from signing.errors import SigningError


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
    return run_demo(Path(args.workdir) if args.workdir else None, serve=args.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="certfed", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_registry_commands(subparsers)
    add_sync_commands(subparsers)
    add_bench_commands(subparsers)
    add_node_commands(subparsers)
    add_audit_commands(subparsers)
    add_desk_commands(subparsers)
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
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then keep it running with a web desk per office until interrupted",
    )
    demo.set_defaults(handler=_demo)
    add_adapter_commands(subparsers)
    add_channel_commands(subparsers)
    add_health_command(subparsers)
    add_web_commands(subparsers)
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
    except ValueError as error:
        # A value the command line let through but the command could not use.
        message = " ".join(str(error).split()) or type(error).__name__
        sys.stderr.write(f"certfed {getattr(args, 'command', '')}: error: {message}\n")
        return EXIT_BAD_ARGUMENT
    return 1


if __name__ == "__main__":
    sys.exit(main())
