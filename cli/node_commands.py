"""`certfed node init|enrol|serve|add-operator ...`: stand up and run a regional node.

    certfed node init --config node.toml               create the node's keys
    certfed node enrol --config node.toml [--wait S]   apply to the registry; install the approval
    certfed node serve --config node.toml              run the node until SIGTERM or SIGINT

The operator, trust and lifecycle modules add their own `certfed node` commands.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certfed.v1 import common_pb2
from cli.backup_commands import add_backup_commands
from cli.erasure_commands import add_erasure_commands
from cli.lifecycle_commands import add_lifecycle_node_commands
from cli.operator_commands import add_operator_commands
from cli.output import console
from cli.relocation_commands import add_relocation_node_commands
from cli.trust_commands import add_trust_node_commands
from federation.fingerprints import KeyFingerprints
from federation.registry_client import RegistryClient
from federation.transport import anonymous_channel_credentials
from federation_node.config import load_node_config
from federation_node.keystore import (
    KeyPaths,
    build_application,
    create_keys,
    is_enrolled,
    store_enrolment,
)
from federation_node.server import serve
from signing import dsse
from signing.keys import SigningKey


def _print_fingerprints(application: dsse.Envelope) -> None:
    """The fingerprints the registry administrator must confirm, for the office to send them
    out of band. Plain print: a fingerprint must never be wrapped or coloured."""
    fingerprints = KeyFingerprints.of_application(application)
    print(
        "send these key fingerprints to the registry administrator out of band (by phone or "
        "signed letter); the administrator must confirm them to approve the enrolment:\n"
        f"  signing key: {fingerprints.signing_key}\n"
        f"  TLS key:     {fingerprints.tls_key}"
    )


def _node_init(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    create_keys(paths)
    console.print(f"created keys for node {config.node_id} in {config.data_dir / 'keys'}")
    _print_fingerprints(build_application(config, paths, datetime.now(UTC)))
    return 0


def _node_enrol(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    credentials = anonymous_channel_credentials(config.ca_certificate.read_bytes())
    with RegistryClient(config.registry_enrol_endpoint, credentials, config.limits) as registry:
        if not is_enrolled(paths):
            application = build_application(config, paths, datetime.now(UTC))
            registry.enrol(application)
            console.print(f"enrolment of {config.node_id} sent; waiting for an administrator")
            _print_fingerprints(application)
        deadline = time.monotonic() + args.wait
        signing_key = SigningKey.load(paths.signing_key)
        while True:
            enrolment = registry.get_enrolment(config.node_id, signing_key)
            if enrolment.status == common_pb2.NODE_STATUS_ACTIVE:
                store_enrolment(paths, enrolment.tls_certificate_pem)
                console.print(f"{config.node_id} approved; certificate installed")
                return 0
            if time.monotonic() >= deadline:
                state = common_pb2.NodeStatus.Name(enrolment.status)
                console.print(f"{config.node_id} is {state}; run this again after approval")
                return 3
            time.sleep(1.0)


def _node_serve(args: argparse.Namespace) -> int:
    return serve(load_node_config(Path(args.config)))


def add_node_commands(subparsers: Any) -> None:
    node = subparsers.add_parser("node", help="run and administer a regional node")
    node_actions = node.add_subparsers(dest="node_command", required=True)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "init": _node_init,
        "enrol": _node_enrol,
        "serve": _node_serve,
    }
    for name, handler in handlers.items():
        sub = node_actions.add_parser(name)
        sub.add_argument("--config", required=True)
        sub.set_defaults(handler=handler)
        if name == "enrol":
            sub.add_argument("--wait", type=float, default=0.0, help="seconds to await approval")
    add_operator_commands(node_actions)
    add_trust_node_commands(node_actions)
    add_lifecycle_node_commands(node_actions)
    add_backup_commands(node_actions)
    add_erasure_commands(node_actions)
    add_relocation_node_commands(node_actions)
