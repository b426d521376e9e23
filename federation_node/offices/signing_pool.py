"""Signing attestation payloads in bulk, on worker processes when the batch pays for them.

Ed25519 signing is CPU work that holds the GIL: a large batch is cut into chunks signed by a
pool of worker processes, one per core; a small one is signed here, where shipping it to a
worker would cost more than it saves. The workers are started with `spawn`, never `fork` (the
node's gRPC threads must not be forked), once, at the first large batch, and live as long as
the node process. Every envelope is the one `dsse.sign` makes, whichever process signed it.

Workers also serialise the delivery of an attestation whose paying office is another node (the
outbox payload), which would otherwise cost the caller a parse of each envelope.
`sign_attestations_soon` hands a batch to the workers and returns at once, so that a caller
storing one batch has the next one signed meanwhile (the bulk issuing path's pipeline).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from certfed.v1 import federation_pb2
from federation.envelopes import envelope_to_proto
from signing import dsse
from signing.keys import SigningKey

# An attestation's envelope JSON, and its delivery to a remote paying office (else b"").
Signed = tuple[bytes, bytes]

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


def delivery(envelope: dsse.Envelope) -> bytes:
    """The delivery of a signed attestation to its paying office, as the outbox keeps it."""
    request = federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope))
    return request.SerializeToString(deterministic=True)


def signed(key: SigningKey, payload: bytes, remote: bool) -> Signed:
    """The envelope JSON of `payload` signed with `key`, and its delivery when `remote`."""
    envelope = dsse.sign(payload, dsse.ATTESTATION_PAYLOAD_TYPE, key)
    return envelope.to_json(), delivery(envelope) if remote else b""


def sign_attestations(
    key: SigningKey, payloads: Sequence[bytes], remote: Sequence[bool]
) -> list[Signed]:
    """Each attestation payload signed with `key`, in order (`remote`: whether its paying
    office is another node, which gets a delivery)."""
    workers = min(cores(), MAX_WORKERS)
    if len(payloads) < PARALLEL_MIN or workers < 2:
        return [signed(key, payload, far) for payload, far in zip(payloads, remote, strict=True)]
    return sign_attestations_soon(key, payloads, remote).result()


class Signing:
    """A batch being signed on the workers; `result` waits for it, in order."""

    def __init__(self, chunks: list[Future[list[Signed]]]) -> None:
        self._chunks = chunks

    def result(self) -> list[Signed]:
        return [one for chunk in self._chunks for one in chunk.result()]


def sign_attestations_soon(
    key: SigningKey, payloads: Sequence[bytes], remote: Sequence[bool]
) -> Signing:
    """`sign_attestations` on the worker processes, started and not waited for. With fewer
    than two cores the batch is signed here, before this returns."""
    if len(payloads) != len(remote):
        raise ValueError("one remote flag per payload")
    workers = min(cores(), MAX_WORKERS)
    if workers < 2:
        done: Future[list[Signed]] = Future()
        done.set_result(
            [signed(key, payload, far) for payload, far in zip(payloads, remote, strict=True)]
        )
        return Signing([done])
    pem = key.to_pem()
    executor = _executor(workers)
    return Signing(
        [
            executor.submit(
                _sign_chunk, pem, payloads[start : start + CHUNK], remote[start : start + CHUNK]
            )
            for start in range(0, len(payloads), CHUNK)
        ]
    )


def warm_up(key: SigningKey) -> None:
    """Start the worker processes now rather than at the first large batch."""
    workers = min(cores(), MAX_WORKERS)
    if workers >= 2:
        count = CHUNK * workers
        sign_attestations_soon(key, [b""] * count, [False] * count).result()


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def _sign_chunk(key_pem: bytes, payloads: Sequence[bytes], remote: Sequence[bool]) -> list[Signed]:
    global _worker_key
    if _worker_key is None or _worker_key[0] != key_pem:
        _worker_key = (key_pem, SigningKey.from_pem(key_pem))
    key = _worker_key[1]
    return [signed(key, payload, far) for payload, far in zip(payloads, remote, strict=True)]
