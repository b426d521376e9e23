"""What a node's log and a witness say to each other (c2sp.org/tlog-witness), for both sides.

The names under which logs and witnesses sign, and the size-mismatch refusal that a witness sends
and a log turns back into a retry with the right old size.
"""

from __future__ import annotations

import re

from federation.errors import PreconditionError
from signing.keys import SigningKey
from signing.note import COSIGNATURE_V1_TYPE, NoteSigner

LOG_ORIGIN_PREFIX = "certfed.node/"
WITNESS_NAME_PREFIX = "certfed.registry/"
RETRY_HINT = "retry with old_size {size} and a consistency proof from it"
_RETRY_PATTERN = re.compile(r"retry with old_size (\d+) ")


def log_origin(node_id: str) -> str:
    """The origin line (and log key name) of a node's transparency log."""
    return f"{LOG_ORIGIN_PREFIX}{node_id}"


def witness_name(federation_id: str) -> str:
    return f"{WITNESS_NAME_PREFIX}{federation_id}"


def witness_signer(key: SigningKey, federation_id: str) -> NoteSigner:
    return NoteSigner(witness_name(federation_id), key, COSIGNATURE_V1_TYPE)


class WitnessSizeMismatchError(PreconditionError):
    """The submission's old size is not the size the witness last cosigned for the log."""

    def __init__(self, message: str, current_size: int) -> None:
        super().__init__(message)
        self.current_size = current_size


class ForkDetectedError(PreconditionError):
    """The log signed a checkpoint inconsistent with one the witness cosigned; it is recorded."""


def size_mismatch_from_message(message: str) -> WitnessSizeMismatchError | None:
    """Rebuild the size-mismatch error a client received as a FAILED_PRECONDITION message."""
    match = _RETRY_PATTERN.search(message)
    if match is None:
        return None
    return WitnessSizeMismatchError(message, int(match.group(1)))
