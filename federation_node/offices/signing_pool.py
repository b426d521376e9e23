"""Signing attestations in bulk, on worker processes when the batch pays for them.

Ed25519 signing is CPU work that holds the GIL: a large batch is cut into chunks, one or more
per worker process (one per core), and each chunk is signed there; a small one is signed here,
where shipping it to a worker would cost more than it saves. The workers are started with
`spawn`, never `fork` (the node's gRPC threads must not be forked), once, at the first large
batch, and live as long as the node process. Every envelope is the one `dsse.sign` makes,
whichever process signed it.

`sign_soon` runs a task (a module-level function, so that a worker can import it) over a batch
of compact rows on the workers and returns at once, so that a caller storing one batch has the
next one prepared meanwhile (the bulk issuing path's pipeline); a task builds, serialises and
signs in the worker, and sends back only bytes. `sign_attestations` signs ready payloads.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Generic, TypeVar

from signing import dsse
from signing.keys import SigningKey

H = TypeVar("H")
R = TypeVar("R")
T = TypeVar("T")
# A task signs rows with the key, given what all rows of the batch share (the header).
Task = Callable[[SigningKey, H, Sequence[R]], list[T]]

# Below this many payloads `sign_attestations` signs in the calling process.
PARALLEL_MIN = 2_000
# Below this many rows `sign_soon` runs its task here: a worker's round trip (and, at the first
# batch, starting the workers: seconds) would cost more than the rows (a feed's few rows).
SHIP_MIN = 100
# At most this many rows per task sent to a worker; a batch is cut into a multiple of the
# number of workers, so that none is left working alone at the end.
CHUNK = 1_000
MAX_WORKERS = 8
# How often a worker checks that the node process that started it is still there.
PARENT_CHECK_S = 1.0

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
# In a worker: the key of the last chunk, by its PEM (a rotation brings a new one).
_worker_key: tuple[bytes, SigningKey] | None = None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def workers() -> int:
    return min(cores(), MAX_WORKERS)


def signed(key: SigningKey, payload: bytes) -> bytes:
    """The envelope JSON of the attestation `payload` signed with `key`."""
    return dsse.sign(payload, dsse.ATTESTATION_PAYLOAD_TYPE, key).to_json()


class Signing(Generic[T]):
    """A batch being signed on the workers; `result` waits for it, in order."""

    def __init__(self, chunks: list[Future[list[T]]]) -> None:
        self._chunks = chunks

    def result(self) -> list[T]:
        return [one for chunk in self._chunks for one in chunk.result()]


def sign_soon(task: Task[H, R, T], key: SigningKey, header: H, rows: Sequence[R]) -> Signing[T]:
    """`task` over `rows` with `key` on the worker processes, started and not waited for.
    With fewer than two cores, or fewer than SHIP_MIN rows, the rows are signed here, before
    this returns."""
    count = workers()
    if count < 2 or len(rows) < SHIP_MIN:
        done: Future[list[T]] = Future()
        done.set_result(task(key, header, rows))
        return Signing([done])
    pem = key.to_pem()
    executor = _executor(count)
    return Signing(
        [
            executor.submit(_run, task, pem, header, rows[start:end])
            for start, end in _chunks(len(rows), count)
        ]
    )


def _chunks(total: int, count: int) -> list[tuple[int, int]]:
    """[start, end) of each chunk: as many chunks as needed to keep them at most CHUNK rows,
    rounded up to a multiple of the workers, of equal size to a row."""
    pieces = max(count, -(-total // (CHUNK * count)) * count)
    pieces = max(1, min(pieces, total))
    return [(total * part // pieces, total * (part + 1) // pieces) for part in range(pieces)]


def sign_attestations(key: SigningKey, payloads: Sequence[bytes]) -> list[bytes]:
    """The envelope JSON of each attestation payload signed with `key`, in order."""
    if len(payloads) < PARALLEL_MIN:
        return _sign_payloads(key, None, payloads)
    return sign_soon(_sign_payloads, key, None, payloads).result()


def _sign_payloads(key: SigningKey, _: None, payloads: Sequence[bytes]) -> list[bytes]:
    return [signed(key, payload) for payload in payloads]


def warm_up(key: SigningKey, *modules: str) -> None:
    """Start the worker processes now rather than at the first large batch, and have each
    import `modules` (those of the tasks it will run) now rather than at its first task."""
    count = workers()
    if count >= 2:
        rows = [b""] * CHUNK
        executor = _executor(count)
        pem = key.to_pem()
        # One task per worker, each long enough that no worker takes two.
        for task in [executor.submit(_warm_up, pem, modules, rows) for _ in range(count)]:
            task.result()


def _warm_up(key_pem: bytes, modules: Sequence[str], rows: Sequence[bytes]) -> None:
    for module in modules:
        importlib.import_module(module)
    _run(_sign_payloads, key_pem, None, rows)


def _executor(count: int) -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = worker_pool(count)
        return _pool


def worker_pool(count: int) -> ProcessPoolExecutor:
    """`count` worker processes started with `spawn` (a process running threads must never be
    forked: a child can inherit a lock another thread held, and hang), each ending when the
    process that started it is gone. The node's signing workers and the benchmarks' use it."""
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_follow_parent,
        initargs=(os.getpid(),),
    )


def _follow_parent(parent: int) -> None:
    """In a worker: end when the node process that started it is gone.

    A node killed with SIGKILL cannot stop its pool, and the workers would not notice: each one
    holds the write end of the pipe it reads its tasks from, so it never sees end of file. A
    daemon thread checks once per PARENT_CHECK_S whether the worker was handed to another parent,
    and ends the worker if so (any chunk it was signing is lost with the node that asked for it).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _run(task: Task[H, R, T], key_pem: bytes, header: H, rows: Sequence[R]) -> list[T]:
    global _worker_key
    if _worker_key is None or _worker_key[0] != key_pem:
        _worker_key = (key_pem, SigningKey.from_pem(key_pem))
    return task(_worker_key[1], header, rows)
