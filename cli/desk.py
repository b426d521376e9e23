"""A node's DeskService for the command line: the client every desk command opens, from the
node's configuration and the operator token in CERTFED_OPERATOR_TOKEN."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from federation.desk_client import DeskClient
from federation.errors import CertfedError
from federation_node.config import load_node_config

TOKEN_ENV = "CERTFED_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a secret


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` and `--endpoint`, which `desk_client` reads."""
    parser.add_argument("--config", required=True, help="the node's node.toml")
    parser.add_argument("--endpoint", help="desk address if not the config's desk_listen")


def desk_client(args: argparse.Namespace) -> DeskClient:
    """The desk of the node `args.config` describes (at `args.endpoint` if given)."""
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
