"""The `certfed registry ...` commands for keys and membership over time.

    certfed registry revoke-node NODE --reason R [--effective-at ISO] --config F
    certfed registry revoke-key NODE KEY_ID --reason R [--effective-at ISO] --config F
    certfed registry retire-key NODE KEY_ID --config F
    certfed registry rotate-root --config F
    certfed registry admins --config F
    certfed registry revoke-admin SHA256 --reason R --config F

`revoke-node` is `revoke` under the name the key commands share. A revocation may take effect in
the past (a key known to be compromised since a given time): attestations signed with the key from
then on are refused everywhere, and those received before are listed for review at each node.
`retire-key` ends a key's validity now, once the node has rotated to a new one. `rotate-root`
replaces the registry root key; nodes follow the rotation by themselves (`federation.root_chain`).
`admins` lists the administrator certificates and which are revoked; `revoke-admin` revokes one
(a lost or stolen administrator key): the registry refuses it from the next call on.
Like the other administration commands they talk to the running registry over mTLS.
"""

from __future__ import annotations

import argparse

from certfed.v1 import common_pb2
from cli.registry_admin import (
    EXIT_OK,
    admin_client,
    admin_options,
    effective_at,
    guarded,
    status_command,
)
from federation.timestamps import to_datetime
from signing.keys import key_id

revoke_node_command = status_command(common_pb2.NODE_STATUS_REVOKED, "revoked")


@guarded
def revoke_key_command(args: argparse.Namespace) -> int:
    """Revoke one signing key of a node from an effective time."""
    effective = effective_at(args.effective_at)
    _, client = admin_client(args)
    with client:
        version = client.revoke_signing_key(args.node_id, args.key_id, args.reason, effective)
    print(f"revoked key {args.key_id} of {args.node_id}; directory version {version}")
    return EXIT_OK


@guarded
def retire_key_command(args: argparse.Namespace) -> int:
    """End a signing key's validity now, before its overlap window would."""
    _, client = admin_client(args)
    with client:
        version = client.retire_signing_key(args.node_id, args.key_id)
    print(f"retired key {args.key_id} of {args.node_id}; directory version {version}")
    return EXIT_OK


@guarded
def rotate_root_command(args: argparse.Namespace) -> int:
    """Replace the registry root key; the old root signs the new one, then signs no more."""
    config, client = admin_client(args)
    # The root this registry host holds is the one to replace (compare-and-swap at the registry).
    current = key_id(bytes.fromhex(config.paths.root_public_key.read_text().strip()))
    with client:
        rotated = client.rotate_root(current)
    print(
        f"root key is now {rotated.root_key_id} (root version {rotated.root_version}); "
        f"directory version {rotated.directory_version}"
    )
    print(f"  nodes enrolling from now on receive {config.paths.trust_root_public_key}")
    return EXIT_OK


@guarded
def admins_command(args: argparse.Namespace) -> int:
    """List the administrator certificates, revoked ones with when, by whom and why."""
    _, client = admin_client(args)
    with client:
        certificates = client.list_admin_certificates()
    for item in certificates:
        expires = to_datetime(item.not_after).isoformat(timespec="seconds")
        if item.HasField("revoked_at"):
            revoked = to_datetime(item.revoked_at).isoformat(timespec="seconds")
            state = f"revoked {revoked} by {item.revoked_by}: {item.revocation_reason}"
        else:
            state = "valid"
        print(f"{item.name}  {item.sha256}  expires {expires}  {state}")
    return EXIT_OK


@guarded
def revoke_admin_command(args: argparse.Namespace) -> int:
    """Revoke an administrator certificate by its SHA-256 (as `admins` shows it)."""
    _, client = admin_client(args)
    with client:
        client.revoke_admin_certificate(args.sha256.strip().lower(), args.reason)
    print(f"revoked administrator certificate {args.sha256}")
    return EXIT_OK


def add_lifecycle_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the key and membership commands to `certfed registry`'s subcommands."""
    revoke_node = commands.add_parser("revoke-node", help="revoke a node for good (= revoke)")
    revoke_node.add_argument("node_id", metavar="NODE")
    revoke_node.add_argument("--reason", required=True, help="why; kept in the audit")
    revoke_node.add_argument(
        "--effective-at", help="ISO 8601 time with zone when it took effect (default: now)"
    )
    admin_options(revoke_node)
    revoke_node.set_defaults(handler=revoke_node_command)

    revoke_key = commands.add_parser("revoke-key", help="revoke one signing key of a node")
    revoke_key.add_argument("node_id", metavar="NODE")
    revoke_key.add_argument("key_id", metavar="KEY_ID")
    revoke_key.add_argument("--reason", required=True, help="why; published with the key")
    revoke_key.add_argument(
        "--effective-at",
        help="ISO 8601 time with zone from which the key is distrusted (default: now)",
    )
    admin_options(revoke_key)
    revoke_key.set_defaults(handler=revoke_key_command)

    retire_key = commands.add_parser(
        "retire-key", help="end a signing key's overlap window now (the node rotated already)"
    )
    retire_key.add_argument("node_id", metavar="NODE")
    retire_key.add_argument("key_id", metavar="KEY_ID")
    admin_options(retire_key)
    retire_key.set_defaults(handler=retire_key_command)

    rotate_root = commands.add_parser(
        "rotate-root", help="replace the registry root key; nodes follow the signed chain"
    )
    admin_options(rotate_root)
    rotate_root.set_defaults(handler=rotate_root_command)

    admins = commands.add_parser("admins", help="list the administrator certificates")
    admin_options(admins)
    admins.set_defaults(handler=admins_command)

    revoke_admin = commands.add_parser(
        "revoke-admin", help="revoke an administrator certificate (refused from the next call)"
    )
    revoke_admin.add_argument("sha256", metavar="SHA256", help="as `certfed registry admins` shows")
    revoke_admin.add_argument("--reason", required=True, help="why; kept in the audit")
    admin_options(revoke_admin)
    revoke_admin.set_defaults(handler=revoke_admin_command)
