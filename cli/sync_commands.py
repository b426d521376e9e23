"""`certfed sync --from NODE --config node.toml`: bring this node's verified copy of another
node's log up to date, with a progress bar (rate and ETA) for long syncs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from certfed.v1 import federation_pb2_grpc
from federation.directory import TrustedDirectory, verify_directory
from federation.errors import UnavailableError
from federation.registry_client import RegistryClient
from federation.transport import node_tls_name, secure_channel
from federation_node.config import NodeConfig, load_node_config
from federation_node.keystore import KeyPaths, NodeKeys, load_keys
from federation_node.store import db
from federation_node.tlog.checkpoints import load_witness_verifier
from federation_node.tlog.sync import LogSync, SyncResult

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Entries per second, as rich's speed estimate over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} entries/s", style="progress.data.speed")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def current_directory(config: NodeConfig, keys: NodeKeys) -> TrustedDirectory:
    """The registry's current directory, verified with the root key this node trusts."""
    with RegistryClient(
        config.registry_endpoint, keys.tls.channel_credentials(), config.limits
    ) as registry:
        envelope = registry.get_directory(0)
    if envelope is None:
        raise UnavailableError("the registry sent no directory")
    return verify_directory(envelope, keys.root_public_key, now=datetime.now(UTC))


@contextmanager
def peer_channel(
    config: NodeConfig, keys: NodeKeys, node_id: str, directory: TrustedDirectory | None = None
) -> Iterator[grpc.Channel]:
    """A mutual-TLS channel, as this node, to the active node `node_id` of the directory."""
    peer = (directory or current_directory(config, keys)).active_node(node_id)
    channel = secure_channel(
        peer.endpoint,
        node_tls_name(node_id),
        keys.tls.channel_credentials(),
        max_message_bytes=config.limits.max_message_bytes,
    )
    try:
        yield channel
    finally:
        channel.close()


@contextmanager
def _log_sync(args: argparse.Namespace) -> Iterator[LogSync]:
    config = load_node_config(Path(args.config))
    keys = load_keys(config, KeyPaths(config.data_dir))
    directory = current_directory(config, keys)
    url = config.effective_database_url
    db.migrate(url)
    engine = db.create_engine_for(url)
    try:
        with peer_channel(config, keys, args.origin, directory) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            yield LogSync(
                engine,
                lambda: directory,
                load_witness_verifier(config.witness_public_key),
                lambda _origin: stub,
                config.limits,
            )
    finally:
        engine.dispose()


def _sync(args: argparse.Namespace) -> int:
    with _log_sync(args) as syncer:
        if args.json:
            result = syncer.sync(args.origin)
        else:
            with progress_bar() as bar:
                task = bar.add_task(f"sync {args.origin}", total=None)

                def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = syncer.sync(args.origin, progress=advance)
    _report(result, args.json)
    return 0


def _report(result: SyncResult, as_json: bool) -> None:
    rate = result.entries / result.seconds if result.seconds else 0.0
    if as_json:
        print(
            json.dumps(
                {
                    "origin": result.origin_node_id,
                    "from_size": result.from_size,
                    "to_size": result.to_size,
                    "entries": result.entries,
                    "seconds": result.seconds,
                    "entries_per_s": round(rate, 1),
                }
            )
        )
        return
    console.print(
        f"verified and stored entries {result.from_size}..{result.to_size} of "
        f"{result.origin_node_id}'s log ({result.entries:,} in {result.seconds:.1f} s, "
        f"{rate:,.0f}/s)"
    )


def add_sync_commands(subparsers: Any) -> None:
    sync = subparsers.add_parser(
        "sync", help="fetch, verify and store another node's transparency log"
    )
    sync.add_argument("--from", dest="origin", required=True, help="node id of the log's owner")
    sync.add_argument("--config", required=True, help="this node's node.toml")
    sync.add_argument("--json", action="store_true", help="print the result as JSON, no bar")
    handler: Callable[[argparse.Namespace], int] = _sync
    sync.set_defaults(handler=handler)
