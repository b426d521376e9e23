"""`certfed node backup|restore|export-log|recover-log`: back up a node, restore it, and get
back log entries a restored node lost (docs/operations.md, "Backup and restore").

    certfed node backup --config node.toml --out DIR          encrypted snapshot, node running
    certfed node restore --config node.toml --from DIR        node stopped
    certfed node export-log --config node.toml --origin NODE --out FILE
                                                               a follower's copy of NODE's log
    certfed node recover-log --config node.toml (--from FILE | --from-node NODE)

The passphrase comes from the environment (CERTFED_BACKUP_PASSPHRASE) or a file
(--passphrase-file), never from the command line, where other users of the host could read it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from certfed.v1 import federation_pb2_grpc
from cli.output import console
from cli.sync_commands import current_directory, peer_channel
from federation.directory import TrustedDirectory
from federation.errors import CertfedError, PreconditionError
from federation.registry_client import DirectoryUpdate
from federation_node.backup.archive import create_backup, restore_backup
from federation_node.config import NodeConfig, load_node_config
from federation_node.keystore import KeyPaths, NodeKeys, load_keys
from federation_node.links.directory_client import DirectoryClient
from federation_node.store import db
from federation_node.tlog.checkpoints import load_witness_verifier
from federation_node.tlog.recovery import LogRecovery, Recovered, export_copy

PASSPHRASE_ENV = "CERTFED_BACKUP_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def _passphrase(args: argparse.Namespace) -> str:
    if args.passphrase_file:
        text = Path(args.passphrase_file).read_text(encoding="utf-8")
        return text.rstrip("\r\n")
    value = os.environ.get(PASSPHRASE_ENV)
    if not value:
        raise PreconditionError(
            f"give the backup passphrase in {PASSPHRASE_ENV} or a file (--passphrase-file)"
        )
    return value


def _backup(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config = load_node_config(config_path)
    result = create_backup(config, config_path, Path(args.out), _passphrase(args))
    figures = {
        "node_id": result.manifest.node_id,
        "folder": str(result.folder),
        "database": result.manifest.database,
        "log_size": result.manifest.log_size,
        "cosigned_size": result.manifest.cosigned_size,
        "archive_bytes": result.archive_bytes,
        "archive_sha256": result.archive_sha256,
        "seconds": round(result.seconds, 3),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        console.print(
            f"backed up node {config.node_id} ({result.manifest.database}, log of "
            f"{result.manifest.log_size} entries) to {result.folder} "
            f"({result.archive_bytes:,} bytes in {result.seconds:.1f} s)"
        )
    return 0


def _restore(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    result = restore_backup(config, Path(args.source), _passphrase(args))
    if args.json:
        print(
            json.dumps(
                {
                    "node_id": result.manifest.node_id,
                    "created_at": result.manifest.created_at,
                    "log_size": result.manifest.log_size,
                    "seconds": round(result.seconds, 3),
                }
            )
        )
    else:
        console.print(
            f"restored node {config.node_id} from the backup of {result.manifest.created_at} "
            f"(log of {result.manifest.log_size} entries) in {result.seconds:.1f} s. At start it "
            "checks its log with the registry witness, and issues attestations once the witness "
            "has cosigned nothing beyond it or the missing entries are recovered "
            "(`certfed node recover-log`)."
        )
    return 0


def _export_log(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    engine = db.create_engine_for(config.effective_database_url)
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as handle:
            written = export_copy(engine, args.origin, handle)
        partial.replace(out)
    finally:
        engine.dispose()
        partial.unlink(missing_ok=True)
    console.print(f"wrote {written} entries of node {args.origin}'s log to {out}")
    return 0


def _cached_directory(config: NodeConfig, keys: NodeKeys) -> TrustedDirectory:
    """The registry's current directory, else this node's unexpired cached copy (offline)."""
    try:
        return current_directory(config, keys)
    except CertfedError:
        paths = KeyPaths(config.data_dir)

        def offline(_version: int, _root: str) -> DirectoryUpdate:
            raise PreconditionError("offline")

        cached = DirectoryClient(
            offline, keys.root_public_key, paths.directory_cache, root_chain_path=paths.root_chain
        )
        return cached.current()


def _recover_log(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    keys = load_keys(config, KeyPaths(config.data_dir))
    directory = _cached_directory(config, keys)
    url = config.effective_database_url
    db.migrate(url)
    engine = db.create_engine_for(url)
    witness = load_witness_verifier(config.witness_public_key)
    try:
        if args.source:
            recovery = LogRecovery(
                engine, config.node_id, lambda: directory, witness, config.limits
            )
            result: Recovered | None = recovery.from_file(Path(args.source))
        else:
            with peer_channel(config, keys, args.from_node, directory) as channel:
                stub = federation_pb2_grpc.FederationServiceStub(channel)
                recovery = LogRecovery(
                    engine,
                    config.node_id,
                    lambda: directory,
                    witness,
                    config.limits,
                    stub_for=lambda _peer: stub,
                )
                result = recovery.from_peer(args.from_node)
    finally:
        engine.dispose()
    if result is None or result.entries == 0:
        console.print("nothing to recover: the source has no entries beyond this node's log")
        return 0
    console.print(
        f"recovered entries {result.from_size}..{result.to_size - 1} of node {config.node_id}'s "
        f"log from {result.source}, verified against its cosigned checkpoint"
    )
    return 0


def add_backup_commands(node_actions: Any) -> None:
    """`certfed node backup|restore|export-log|recover-log`."""
    backup = node_actions.add_parser(
        "backup", help="write an encrypted, consistent backup of this node (it may keep running)"
    )
    backup.add_argument("--config", required=True)
    backup.add_argument("--out", required=True, help="a new folder for the backup")
    backup.add_argument("--json", action="store_true", help="print the figures as JSON")
    restore = node_actions.add_parser(
        "restore", help="put a backup back as this node's database and keys (node stopped)"
    )
    restore.add_argument("--config", required=True)
    restore.add_argument("--from", dest="source", required=True, help="the backup folder")
    restore.add_argument("--json", action="store_true", help="print the figures as JSON")
    for parser, handler in ((backup, _backup), (restore, _restore)):
        parser.add_argument(
            "--passphrase-file",
            help=f"a file holding the passphrase (else the {PASSPHRASE_ENV} variable)",
        )
        parser.set_defaults(handler=handler)
    export = node_actions.add_parser(
        "export-log", help="write this node's verified copy of a followed node's log to a file"
    )
    export.add_argument("--config", required=True)
    export.add_argument("--origin", required=True, help="the node whose log to export")
    export.add_argument("--out", required=True, help="the export file to write")
    export.set_defaults(handler=_export_log)
    recover = node_actions.add_parser(
        "recover-log",
        help="get back log entries this node lost (restored from an older backup)",
    )
    recover.add_argument("--config", required=True)
    source = recover.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="an export file (certfed node export-log)")
    source.add_argument("--from-node", help="a node that follows this node's log")
    recover.set_defaults(handler=_recover_log)
