"""Who is calling: the authenticated principal of one RPC, as the interceptor decided it.

The interceptor binds the principal before a servicer runs; servicers and the rate limiter read
it through `caller()`, never from the gRPC context themselves.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one RPC: a node, a registry administrator, or an operator."""

    kind: str
    name: str
    roles: frozenset[str] = frozenset()
    certificate_sha256: str = ""
    # The signed-in session an operator's call came with; "" for a bearer token or a node.
    session_id: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


ANONYMOUS = Principal(kind="anonymous", name="-")

_caller: contextvars.ContextVar[Principal] = contextvars.ContextVar("certfed_caller")


def caller() -> Principal:
    """The principal of the RPC being served on this thread."""
    return _caller.get()


def bind_caller(principal: Principal) -> None:
    """Make `principal` the caller of the RPC this thread (or task) is now serving."""
    _caller.set(principal)
