"""Signing attestation payloads in bulk, on worker processes when the batch pays for them.

Ed25519 signing is CPU work that holds the GIL: a large batch is cut into chunks signed by a
pool of worker processes, one per core; a small one is signed here, where shipping it to a
worker would cost more than it saves. The workers are started with `spawn`, never `fork` (the
node's gRPC threads must not be forked), once, at the first large batch, and live as long as
the node process. Every envelope is the one `dsse.sign` makes, whichever process signed it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat

from signing import dsse
from signing.keys import SigningKey

# Below this many payloads a batch is signed in the calling process.
PARALLEL_MIN = 2_000
# Payloads per task sent to a worker.
CHUNK = 1_000
MAX_WORKERS = 8

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
# In a worker: the key of the last chunk, by its PEM (a rotation brings a new one).
_worker_key: tuple[bytes, SigningKey] | None = None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def envelope_json(key: SigningKey, payload: bytes) -> bytes:
    return dsse.sign(payload, dsse.ATTESTATION_PAYLOAD_TYPE, key).to_json()


def sign_attestations(key: SigningKey, payloads: Sequence[bytes]) -> list[bytes]:
    """The DSSE envelope JSON of each attestation payload signed with `key`, in order."""
    workers = min(cores(), MAX_WORKERS)
    if len(payloads) < PARALLEL_MIN or workers < 2:
        return [envelope_json(key, payload) for payload in payloads]
    chunks = [payloads[start : start + CHUNK] for start in range(0, len(payloads), CHUNK)]
    signed = _executor(workers).map(_sign_chunk, repeat(key.to_pem()), chunks)
    return [envelope for chunk in signed for envelope in chunk]


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def _sign_chunk(key_pem: bytes, payloads: Sequence[bytes]) -> list[bytes]:
    global _worker_key
    if _worker_key is None or _worker_key[0] != key_pem:
        _worker_key = (key_pem, SigningKey.from_pem(key_pem))
    key = _worker_key[1]
    return [envelope_json(key, payload) for payload in payloads]
