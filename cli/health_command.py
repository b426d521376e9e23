"""`certfed health`: ask a running registry or node whether it is serving (grpc.health.v1).

    certfed health --address HOST:PORT [--service NAME] [--ca FILE --tls-name NAME]

Exit 0 when the answer is SERVING, 1 otherwise (NOT_SERVING, an unknown service name, no answer
within the timeout), with one line saying which. Without --ca the check is made in plaintext,
which only a `health_listen` port answers; every other certfed port is TLS, checked with the
federation CA certificate and the name its certificate carries (registry.certfed,
<node>.node.certfed). Each option falls back to an environment variable (CERTFED_HEALTH_ADDRESS,
CERTFED_HEALTH_SERVICE, CERTFED_HEALTH_CA, CERTFED_HEALTH_TLS_NAME), so a container image can
carry one HEALTHCHECK for every role.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.output import console
from federation.limits import Limits
from federation.transport import anonymous_channel_credentials, secure_channel

ENV_PREFIX = "CERTFED_HEALTH_"
EXIT_SERVING = 0
EXIT_NOT_SERVING = 1
EXIT_USAGE = 2


def _channel(address: str, ca: str, tls_name: str) -> grpc.Channel:
    if not ca:
        return grpc.insecure_channel(address)
    return secure_channel(
        address,
        tls_name,
        anonymous_channel_credentials(Path(ca).read_bytes()),
        max_message_bytes=Limits().max_message_bytes,
    )


def health_command(args: argparse.Namespace) -> int:
    if not args.address:
        console.print(f"[red]error:[/red] give --address HOST:PORT (or {ENV_PREFIX}ADDRESS)")
        return EXIT_USAGE
    if args.ca and not args.tls_name:
        console.print("[red]error:[/red] --ca needs --tls-name (e.g. registry.certfed)")
        return EXIT_USAGE
    what = f"{args.address} service {args.service or '(overall)'}"
    with _channel(args.address, args.ca, args.tls_name) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
            console.print(f"{what}: no answer ({code.name.lower()}: {_details(error)})")
            return EXIT_NOT_SERVING
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    console.print(f"{what}: {status}")
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    return EXIT_SERVING if serving else EXIT_NOT_SERVING


def _details(error: grpc.RpcError) -> str:
    return (error.details() if isinstance(error, grpc.Call) else None) or str(error)


def add_health_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health", help="check that a registry or node is serving (exit 0) or not (exit 1)"
    )

    def option(name: str, help_text: str, default: str = "") -> None:
        variable = ENV_PREFIX + name.upper().replace("-", "_")
        parser.add_argument(
            f"--{name}",
            default=os.environ.get(variable, default),
            help=f"{help_text} (default: ${variable})",
        )

    option("address", "HOST:PORT of a certfed port or of its health_listen port")
    option("service", "a health service name, e.g. certfed.directory; empty: the whole server")
    option("ca", "federation CA certificate (ca.pem) for a TLS port; omit for health_listen")
    option("tls-name", "name in the server's certificate: registry.certfed or <node>.node.certfed")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.set_defaults(handler=health_command)
