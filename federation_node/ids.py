"""Identifiers this node chooses: UUIDv7, so that ids sort by creation time.

Time order matters: the store pages through every table by id, so a listing comes out oldest
first, and B-tree inserts stay at the right edge of the index. Within one process every id
sorts after the one made before it, even within one millisecond: RFC 9562 6.2 method 1, a
12-bit counter in rand_a, started at a random value below 2**11 each millisecond.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

_COUNTER_BITS = 12
_lock = threading.Lock()
# The millisecond and counter of the last id made in this process.
_last = (0, 0)


def new_id() -> str:
    """A fresh UUIDv7 (RFC 9562 5.7) in its canonical 36-character string form."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """`count` fresh UUIDv7s, in the order they sort (one call for a batch of rows)."""
    global _last
    with _lock:
        milliseconds, counter = _last
        now = time.time_ns() // 1_000_000
        if now > milliseconds:
            milliseconds, counter = now, secrets.randbits(_COUNTER_BITS - 1) - 1
        stamps = []
        for _ in range(count):
            counter += 1
            if counter >> _COUNTER_BITS:
                # The counter ran out within one millisecond: borrow the next one.
                milliseconds, counter = milliseconds + 1, 0
            stamps.append(milliseconds << 16 | 0x7000 | counter)
        _last = (milliseconds, counter)
    # Variant 0b10 and 62 random bits each (RFC 9562 5.7: rand_b): the top two bits of each
    # id's first random byte set to 10.
    randoms = bytearray(os.urandom(8 * count))
    randoms[::8] = bytes(byte & 0x3F | 0x80 for byte in randoms[::8])
    ids = []
    for at, stamp in enumerate(stamps):
        text = (stamp.to_bytes(8) + randoms[8 * at : 8 * at + 8]).hex()
        ids.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return ids
