"""Identifiers this node chooses: UUIDv7, so that ids sort by creation time.

Time order matters: the store pages through every table by id, so a listing comes out oldest
first, and B-tree inserts stay at the right edge of the index.
"""

from __future__ import annotations

import uuid6


def new_id() -> str:
    """A fresh UUIDv7 (RFC 9562 5.7) in its canonical 36-character string form."""
    return str(uuid6.uuid7())
