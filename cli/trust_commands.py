"""The `certfed` commands for a node's keys and trust over time.

    certfed node rotate-key --config F [--wait S]           new attestation signing key
    certfed node renew-certificate --config F [--wait S]    new TLS certificate
    certfed desk --config F directory-status                how fresh the directory is
    certfed desk --config F review-list                     attestations to review after a
                                                            key revocation

`rotate-key` and `renew-certificate` run on the node's host, next to a running node (or a stopped
one): they create the successor key there, have the registry list it over mutual TLS with the
node's current certificate, and leave it for the node to take into use when its directory lists
it (`federation_node.links.key_rollover`). `--wait` waits until the running node has switched.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from certfed.v1 import desk_pb2
from cli.desk import desk_client
from cli.listing import Page, add_listing_arguments, message_rows, show_listing
from cli.output import print_one
from federation.errors import PreconditionError
from federation.registry_client import RegistryClient
from federation.timestamps import to_datetime
from federation.transport import TlsMaterial, pem_certificate_sha256
from federation_node.config import NodeConfig, load_node_config
from federation_node.keystore import KeyPaths, is_enrolled
from federation_node.links.key_rollover import (
    request_certificate_renewal,
    request_signing_key_rotation,
)

EXIT_OK = 0
EXIT_NOT_YET = 3


def _registry(config: NodeConfig, paths: KeyPaths) -> RegistryClient:
    if not is_enrolled(paths):
        raise PreconditionError(f"node {config.node_id} is not enrolled; run `certfed node enrol`")
    tls = TlsMaterial.load(paths.tls_certificate, paths.tls_key, config.ca_certificate)
    return RegistryClient(config.registry_endpoint, tls.channel_credentials(), config.limits)


def _await_switch(pending: Path, wait_s: float, what: str) -> int:
    """Wait until the running node has taken the successor into use (the file is gone)."""
    deadline = time.monotonic() + wait_s
    while pending.exists():
        if time.monotonic() >= deadline:
            if wait_s > 0:
                print(f"the node has not switched to the new {what} yet; it will at its next "
                      "directory refresh while it runs")  # fmt: skip
                return EXIT_NOT_YET
            return EXIT_OK
        time.sleep(0.2)
    print(f"the node now uses the new {what}")
    return EXIT_OK


def rotate_key_command(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    with _registry(config, paths) as registry:
        response = request_signing_key_rotation(config.node_id, paths, registry, datetime.now(UTC))
    until = to_datetime(response.previous_valid_until).isoformat(timespec="seconds")
    print(f"new signing key {response.new_key_id} listed in directory version "
          f"{response.directory_version}; the previous key signs until {until}")  # fmt: skip
    return _await_switch(paths.next_signing_key, args.wait, "signing key")


def renew_certificate_command(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    with _registry(config, paths) as registry:
        response = request_certificate_renewal(config.node_id, paths, registry)
    until = to_datetime(response.previous_valid_until).isoformat(timespec="seconds")
    print(f"new certificate {pem_certificate_sha256(response.tls_certificate_pem)} listed in "
          f"directory version {response.directory_version}; the previous one is accepted "
          f"until {until}")  # fmt: skip
    return _await_switch(paths.next_tls_certificate, args.wait, "certificate")


def add_trust_node_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed node rotate-key` and `certfed node renew-certificate`."""
    for name, handler, help_text in (
        ("rotate-key", rotate_key_command, "create a new attestation signing key and enrol it"),
        ("renew-certificate", renew_certificate_command, "renew this node's TLS certificate"),
    ):
        parser = node_actions.add_parser(name, help=help_text)
        parser.add_argument("--config", required=True)
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            help="seconds to wait for the running node to switch to it",
        )
        parser.set_defaults(handler=handler)


# desk


def directory_status_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        print_one(desk.stub.GetDirectoryStatus(desk_pb2.GetDirectoryStatusRequest()))
    return EXIT_OK


REVIEW_COLUMNS = [
    "attestation_id", "issuing_node_id", "finding", "issued_at", "key_revoked_at",
    "revocation_reason", "beneficiary_id",
]  # fmt: skip


def review_list_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:

        def fetch(size: int, token: str) -> Page:
            response = desk.stub.ListRevocationReviews(
                desk_pb2.ListRevocationReviewsRequest(page_size=size, page_token=token)
            )
            return Page(message_rows(response.reviews, REVIEW_COLUMNS), response.next_page_token)

        return show_listing(
            args, "attestations signed by keys revoked since", REVIEW_COLUMNS, fetch
        )


def add_trust_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... directory-status` and `review-list`."""
    commands: tuple[tuple[str, Callable[[argparse.Namespace], int], str], ...] = (
        ("directory-status", directory_status_command, "how fresh this node's directory is"),
        (
            "review-list",
            review_list_command,
            "received attestations signed by keys revoked since",
        ),
    )
    for name, handler, help_text in commands:
        parser = desk_actions.add_parser(name, help=help_text)
        if name == "review-list":
            add_listing_arguments(parser)
        parser.set_defaults(handler=handler)
