"""A paying office's roles in this process, over a real database, with a real node's keys.

`enrolled_office` starts a registry process and enrols one paying office through it (keys,
certificate, directory), without starting the node: the caller composes the office's roles here
(`compose_office`) on any database URL, as `start_node` does, to call them directly. Two offices
composed on two fresh databases with the same keys and clock are the same office twice: what
one path writes can be compared with what the other writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cli.launcher import LocalFederation, NodeSpec
from federation.registry_client import RegistryClient
from federation_node.config import NodeConfig
from federation_node.keystore import KeyPaths, NodeKeys, load_keys
from federation_node.links.directory_client import DirectoryClient
from federation_node.locators import Evaluate, Locators
from federation_node.offices.node import Node, compose_node
from federation_node.rules.policy import load_policy
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import Operator, OperatorRole

OFFICE = NodeSpec("feed-office", "Foshan feed office", ("440600",), ("paying_office",))


@dataclass(frozen=True)
class EnrolledOffice:
    config: NodeConfig
    keys: NodeKeys
    directory: DirectoryClient
    # Subject locators through the federation's real registry, open while the office is.
    locators: Locators
    # The registry's evaluation of blinded elements, for a Locators of a test's own.
    evaluate: Evaluate


@contextmanager
def enrolled_office(workdir: Path) -> Iterator[EnrolledOffice]:
    with LocalFederation(workdir, log_level="warning") as local:
        local.start_registry()
        handle = local.add_node(OFFICE, start=False)
        paths = KeyPaths(handle.config.data_dir)
        keys = load_keys(handle.config, paths)
        registry = RegistryClient(
            handle.config.registry_endpoint, keys.tls.channel_credentials(), local.limits
        )
        try:
            directory = DirectoryClient(
                registry.get_directory_update, keys.root_public_key, paths.directory_cache
            )
            directory.refresh()
            yield EnrolledOffice(
                handle.config,
                keys,
                directory,
                Locators(registry.evaluate_locators),
                registry.evaluate_locators,
            )
        finally:
            registry.close()


def compose_office(
    office: EnrolledOffice, url: str, *, bulk_feed: bool, clock: Callable[[], datetime]
) -> Node:
    """The office's roles on the database at `url` (migrated here)."""
    migrate(url)
    config = dataclasses.replace(office.config, database_url=url, bulk_feed=bulk_feed)
    return compose_node(
        config,
        office.keys,
        create_engine_for(url),
        office.directory,
        load_policy(config.policy_file),
        lambda _locator: [],
        clock=clock,
        locators=office.locators,
    )


def add_feed_account(node: Node, operator_id: str, source: str, now: datetime) -> None:
    """A feed account bound to `source` at the office (feeds come only from such accounts)."""
    with session_scope(node.context.engine) as session:
        session.add(
            Operator(
                operator_id=operator_id,
                label=f"{source} feed",
                roles=[OperatorRole.FEED.value],
                token_salt=b"",
                token_hash=b"",
                disabled=False,
                created_at=now,
                feed_sources=[source],
            )
        )
