"""Moving a federation's locators from the shared HMAC key to the registry's OPRF.

    certfed registry locator-key --config registry.toml   # once, on the registry host
    certfed node relocate --config node.toml              # on each office's host, node stopped

The procedure (docs/operations.md, "Moving locators to the OPRF"): the registry makes its locator
key, then every office re-derives its people's locators through the registry with `relocate`
(offices/relocation.py), which queues the index update for the registry; when the node runs again
its dispatcher delivers it. `relocate` deletes the node's old shared key once done.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from cli.operator_commands import host_actor
from cli.output import console
from federation.registry_client import RegistryClient
from federation_node.config import load_node_config
from federation_node.keystore import KeyPaths, load_keys
from federation_node.locators import Locators
from federation_node.offices import relocation
from federation_node.store import db
from registry.config import load_registry_config
from registry.locator_oprf import create_locator_key


def locator_key_command(args: argparse.Namespace) -> int:
    config = load_registry_config(Path(args.config))
    create_locator_key(config.paths)
    console.print(
        f"locator key written to {config.paths.locator_oprf_key} (0600); restart the registry, "
        "then run `certfed node relocate` at every office"
    )
    return 0


def relocate_command(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    paths = KeyPaths(config.data_dir)
    keys = load_keys(config, paths)
    url = config.effective_database_url
    db.migrate(url)
    engine = db.create_engine_for(url)
    try:
        with RegistryClient(
            config.registry_endpoint, keys.tls.channel_credentials(), config.limits
        ) as registry:
            outcome = relocation.relocate(
                engine,
                keys,
                Locators(registry.evaluate_locators),
                host_actor(),
                clock=lambda: datetime.now(UTC),
            )
    finally:
        engine.dispose()
    paths.retired_locator_key.unlink(missing_ok=True)
    console.print(
        f"{config.node_id}: {outcome.moved} locators re-derived, {outcome.unchanged} already "
        f"moved, {outcome.erased_withdrawn} erased people withdrawn; the registry's index is "
        "updated when the node runs and its outbox is delivered (`certfed desk outbox`)"
    )
    return 0


def add_relocation_node_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    relocate = node_actions.add_parser(
        "relocate",
        help="re-derive every locator through the registry's OPRF (run with the node stopped)",
    )
    relocate.add_argument("--config", required=True)
    relocate.set_defaults(handler=relocate_command)


def add_relocation_registry_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    locator_key = commands.add_parser(
        "locator-key", help="create the registry's locator OPRF key (once; never replaced)"
    )
    locator_key.add_argument("--config", required=True, help="the registry's registry.toml")
    locator_key.set_defaults(handler=locator_key_command)
