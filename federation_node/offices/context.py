"""What every office role of a node shares: who the node is, its keys, store, directory, policy
and clock, and who performs an operation.

The roles (paying_office.py, residence_agency.py, issuing.py, lifecycle.py and the modules
beside them) each hold the one `NodeContext` of their node. Its keys are replaced while the node
runs (key_rollover.py) and its wake-up callbacks are set once the dispatcher and the log exist
(server.py), so the roles read them from here at the moment they use them, never copy them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from federation.database import reader
from federation.errors import PreconditionError
from federation_node.config import NodeConfig
from federation_node.keystore import NodeKeys
from federation_node.links.directory_client import DirectoryClient
from federation_node.locators import Locators
from federation_node.rules.policy import Policy


@dataclass(frozen=True)
class Actor:
    """Who performs an operation: an operator of this node, or a peer node."""

    kind: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def payload_digest(payload: bytes) -> str:
    """The SHA-256 of a message as stored beside it, so a replay with other content is told
    apart from a duplicate."""
    return hashlib.sha256(payload).hexdigest()


class NodeContext:
    """A running node's configuration, keys, store, view of the federation, policy and clock."""

    def __init__(
        self,
        config: NodeConfig,
        keys: NodeKeys,
        engine: Engine,
        directory: DirectoryClient,
        policy: Policy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        locators: Locators | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        # Subject locators, computed through the registry only (federation_node/locators.py).
        self.locators = locators if locators is not None else Locators(None)
        self.engine = engine
        self.directory = directory
        self.policy = policy
        self._reader = reader(engine)
        self._clock = clock
        # Wake the outbox dispatcher after a commit that queued a message, and the log's
        # checkpointing after one that appended to the log.
        self.on_enqueued: Callable[[], None] = lambda: None
        self.on_log_appended: Callable[[], None] = lambda: None

    @property
    def node_id(self) -> str:
        return self.config.node_id

    def now(self) -> datetime:
        return self._clock()

    def session(self) -> Session:
        """A read-only view; writes go through the roles' operations."""
        return Session(self._reader)

    def require_role(self, roles: frozenset[str], what: str) -> None:
        if not roles.intersection(self.config.roles):
            raise PreconditionError(f"this node ({', '.join(self.config.roles)}) does not {what}")
