"""This node's transparency log in its database: entries, head, cached subtree roots, checkpoints.

Promises:

* Appends are serialised by a lock on the one `log_head` row (SELECT ... FOR UPDATE on
  PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers) and happen inside the caller's
  transaction, so an attestation and its log position commit together or not at all, and
  several replicas on one PostgreSQL never hand out one index twice or leave a gap.
* The head keeps the compact right edge of the tree (signing.merkle.TreeBuilder state), so an
  append costs O(log n) hashes and the current root is read, not recomputed.
* Every complete, aligned subtree of 2**CACHED_LEVEL leaves or more has its root in
  `log_subtree`, written by the append that completes it; a proof therefore reads O(log n) rows
  and at most two runs of fewer than 2**CACHED_LEVEL leaf hashes (RFC 9162 2.1.3, 2.1.4).
* The bulk path (`append_many`) writes the same rows as repeated `append` calls, through COPY,
  hashing each node of the tree once: the head's compact state after a batch is read off the
  cached subtrees it completed and the leaves of the last, incomplete one.
* No append forks the log: the head also holds the largest size the registry witness is known
  to have cosigned, and while the log is shorter than that (a database restored from an older
  backup) or a restore has not yet been checked with the witness, `append` and `append_many`
  raise `LogBehindWitnessError`. Only `recover` appends then: entries of the cosigned log that
  the caller verified against a cosigned checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeVar

from sqlalchemy import or_, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from federation.errors import (
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnknownAttestationError,
)
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import is_postgres
from federation_node.store.models import LogCheckpoint, LogEntry, LogHead, LogSubtree
from signing import merkle

HEAD_ID = 1
HASH_SIZE = merkle.HASH_SIZE
# Subtrees of 256 leaves and larger are cached: about n/128 rows for n entries, and a proof
# never hashes more than 2 * 255 leaves that it reads.
CACHED_LEVEL = 8
CHUNK = 1 << CACHED_LEVEL
# What a proof computation returns: one audit path, or one for each of several leaves.
P = TypeVar("P")


class LogBehindWitnessError(PreconditionError):
    """The log is shorter than what the registry witness cosigned for it, or a restored log was
    not checked with the witness yet: appending now would fork it."""


@dataclass(frozen=True)
class WitnessState:
    """What the log head knows of its witness (see the module docstring)."""

    witnessed_size: int
    awaiting_witness: bool


class NewEntry(NamedTuple):
    """An attestation envelope to append, with what the log indexes it by."""

    # A tuple, not a dataclass: the bulk issuing path makes tens of thousands a second.

    attestation_id: str
    envelope_json: bytes
    paying_region: str


class EntryRow(NamedTuple):
    # A tuple, not a dataclass: the sync path builds hundreds of thousands of these a second.
    leaf_index: int
    envelope_json: bytes
    paying_region: str


class Logged(NamedTuple):
    """Where the log holds an attestation, and the envelope exactly as logged."""

    leaf_index: int
    envelope_json: bytes


@dataclass(frozen=True)
class Head:
    tree_size: int
    root_hash: bytes
    state: tuple[bytes, ...]


def join_state(state: Sequence[bytes]) -> bytes:
    return b"".join(state)


def split_state(packed: bytes) -> list[bytes]:
    if len(packed) % HASH_SIZE:
        raise ValueError(f"a compact state is a multiple of {HASH_SIZE} bytes")
    return [packed[offset : offset + HASH_SIZE] for offset in range(0, len(packed), HASH_SIZE)]


def _head_row(session: Session, *, lock: bool) -> LogHead:
    statement = select(LogHead).where(LogHead.head_id == HEAD_ID)
    if lock:
        statement = statement.with_for_update()
    row = session.exec(statement.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise _missing_head()
    return row


def _missing_head() -> RuntimeError:
    return RuntimeError("the log head row is missing: run the node's migrations")


def head(session: Session) -> Head:
    """The log's current size and root, without locking."""
    row = _head_row(session, lock=False)
    return Head(row.tree_size, row.root_hash, tuple(split_state(row.compact_state)))


def size(session: Session) -> int:
    """The log's current size, without locking (the head's one column a range check needs)."""
    found = session.execute(
        sa_select(col(LogHead.tree_size)).where(col(LogHead.head_id) == HEAD_ID)
    ).scalar_one_or_none()
    if found is None:
        raise _missing_head()
    return int(found)


def witness_state(session: Session) -> WitnessState:
    row = _head_row(session, lock=False)
    return WitnessState(row.witnessed_size, row.awaiting_witness)


def behind_witness(state: WitnessState, tree_size: int) -> str | None:
    """Why the log may not grow now, or None when it may."""
    if state.awaiting_witness:
        return (
            "this node's database was restored and the registry witness has not yet said what it "
            "cosigned for its log; attestations wait until it has (is the registry reachable?)"
        )
    if state.witnessed_size > tree_size:
        return (
            f"this node's log has {tree_size} entries but the registry witness cosigned "
            f"{state.witnessed_size}: the database was restored from an older backup. It issues "
            "no attestations until the missing entries are recovered from a node that follows "
            "its log (automatic) or an export of one (`certfed node recover-log`, "
            "docs/operations.md)"
        )
    return None


def record_witness(
    session: Session, *, witnessed_size: int | None = None, confirmed: bool = False
) -> WitnessState:
    """Note a size the witness cosigned (kept if larger than the one known) and, `confirmed`,
    that the witness has answered since a restore."""
    row = _head_row(session, lock=True)
    if witnessed_size is not None and witnessed_size > row.witnessed_size:
        row.witnessed_size = witnessed_size
    if confirmed:
        row.awaiting_witness = False
    session.add(row)
    session.flush()
    return WitnessState(row.witnessed_size, row.awaiting_witness)


def mark_restored(session: Session) -> None:
    """A restore put this database back: no append until the witness has answered."""
    row = _head_row(session, lock=True)
    row.awaiting_witness = True
    session.add(row)
    session.flush()


def _refuse_if_behind(row: LogHead) -> None:
    reason = behind_witness(WitnessState(row.witnessed_size, row.awaiting_witness), row.tree_size)
    if reason is not None:
        raise LogBehindWitnessError(reason)


def _store_head(row: LogHead, builder: merkle.TreeBuilder) -> None:
    row.tree_size = builder.size
    row.root_hash = builder.root()
    row.compact_state = join_state(builder.state())


def append(session: Session, entry: NewEntry) -> int:
    """Append one entry in the caller's transaction; returns its leaf index."""
    row = _head_row(session, lock=True)
    _refuse_if_behind(row)
    builder = merkle.TreeBuilder.from_state(row.tree_size, split_state(row.compact_state))
    index = builder.size
    leaf = merkle.leaf_hash(entry.envelope_json)
    builder.append(leaf)
    session.add(
        LogEntry(
            leaf_index=index,
            leaf_hash=leaf,
            envelope_json=entry.envelope_json,
            paying_region=entry.paying_region,
            attestation_id=entry.attestation_id,
        )
    )
    session.flush()
    if builder.size % CHUNK == 0:
        session.add_all(
            LogSubtree(level=level, subtree_index=position, subtree_hash=value)
            for level, position, value in _completed_by(session, builder.size)
        )
    _store_head(row, builder)
    session.add(row)
    session.flush()
    return index


def _completed_by(session: Session, size: int) -> list[tuple[int, int, bytes]]:
    """The cached subtrees that the leaf making the tree `size` long completes."""
    position = size // CHUNK - 1
    value = merkle.root_from_leaves(_leaf_hashes(session, size - CHUNK, size))[1]
    level = CACHED_LEVEL
    completed = [(level, position, value)]
    while position & 1:
        left = _cached(session, level, position - 1)
        if left is None:
            raise RuntimeError(f"log subtree ({level}, {position - 1}) is missing")
        value = merkle.node_hash(left, value)
        position >>= 1
        level += 1
        completed.append((level, position, value))
    return completed


class _SubtreeRecorder:
    """The cached subtrees completed while appending leaves in memory (the bulk path), and the
    compact state of the tree they make."""

    def __init__(self, size: int, chunk: list[bytes], left: dict[int, bytes]) -> None:
        self.size = size
        self._chunk = chunk
        # Per level, the root of the last complete subtree with an even index: the left sibling
        # the next subtree of that level will be joined with. Its levels are the set bits of
        # the size from CACHED_LEVEL up: the right edge of the tree above the last chunk.
        self._left = left
        self.completed: list[tuple[int, int, bytes]] = []

    @classmethod
    def resume(cls, session: Session, size: int) -> _SubtreeRecorder:
        chunk = _leaf_hashes(session, size - size % CHUNK, size)
        edge = [
            (level, (size >> level) - 1)
            for level in range(CACHED_LEVEL, size.bit_length())
            if size >> level & 1
        ]
        found = _cached_many(session, edge)
        left: dict[int, bytes] = {}
        for level, position in edge:
            value = found.get((level, position))
            if value is None:
                raise RuntimeError(f"log subtree ({level}, {position}) is missing")
            left[level] = value
        return cls(size, chunk, left)

    def add(self, leaf: bytes) -> None:
        self._chunk.append(leaf)
        self.size += 1
        if len(self._chunk) < CHUNK:
            return
        value = _perfect_root(self._chunk)
        self._chunk = []
        level, position = CACHED_LEVEL, self.size // CHUNK - 1
        while True:
            self.completed.append((level, position, value))
            if not position & 1:
                self._left[level] = value
                return
            value = merkle.node_hash(self._left.pop(level), value)
            position >>= 1
            level += 1

    def state(self) -> list[bytes]:
        """The compact state of the tree (merkle.TreeBuilder.state): the cached roots of its
        right edge, largest first, then those of the last chunk's leaves."""
        edge = [self._left[level] for level in sorted(self._left, reverse=True)]
        low = merkle.TreeBuilder()
        low.extend(self._chunk)
        return edge + low.state()


def _perfect_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 for a power-of-two number of leaves: each level hashed pairwise."""
    level = leaves
    while len(level) > 1:
        level = [merkle.node_hash(level[at], level[at + 1]) for at in range(0, len(level), 2)]
    return level[0]


def append_many(session: Session, entries: Iterable[NewEntry]) -> Head:
    """Append entries in order in the caller's transaction, streaming them to the database."""
    row = _head_row(session, lock=True)
    _refuse_if_behind(row)
    return _append_rows(session, row, entries)


def recover(session: Session, from_size: int, entries: Iterable[NewEntry]) -> Head:
    """Append entries [from_size, ...) of the cosigned log that the caller verified against a
    cosigned checkpoint, while appends are otherwise refused. Raises if the log no longer has
    `from_size` entries (another recovery came first)."""
    row = _head_row(session, lock=True)
    if row.tree_size != from_size:
        raise PreconditionError(
            f"the log has {row.tree_size} entries now, not {from_size}: recovered meanwhile"
        )
    return _append_rows(session, row, entries)


def _append_rows(session: Session, row: LogHead, entries: Iterable[NewEntry]) -> Head:
    recorder = _SubtreeRecorder.resume(session, row.tree_size)
    if join_state(recorder.state()) != row.compact_state:
        raise RuntimeError("the log head's compact state disagrees with its cached subtrees")
    leaf_hash = merkle.leaf_hash
    add = recorder.add

    def rows() -> Iterator[tuple[int, bytes, bytes, str, str]]:
        index = row.tree_size
        for attestation_id, envelope_json, paying_region in entries:
            leaf = leaf_hash(envelope_json)
            add(leaf)
            yield index, leaf, envelope_json, paying_region, attestation_id
            index += 1

    table = LogEntry.__table__  # type: ignore[attr-defined]
    insert_rows(
        session,
        table,
        ("leaf_index", "leaf_hash", "envelope_json", "paying_region", "attestation_id"),
        rows(),
    )
    insert_rows(
        session,
        LogSubtree.__table__,  # type: ignore[attr-defined]
        ("level", "subtree_index", "subtree_hash"),
        recorder.completed,
    )
    builder = merkle.TreeBuilder.from_state(recorder.size, recorder.state())
    _store_head(row, builder)
    session.add(row)
    session.flush()
    return Head(builder.size, builder.root(), tuple(builder.state()))


# Reading.


def _leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    if start >= end:
        return []
    rows = session.exec(
        select(LogEntry.leaf_hash)
        .where(col(LogEntry.leaf_index) >= start, col(LogEntry.leaf_index) < end)
        .order_by(col(LogEntry.leaf_index))
    )
    hashes = list(rows)
    if len(hashes) != end - start:
        raise RuntimeError(f"the log is missing entries in [{start}, {end})")
    return hashes


def _cached(session: Session, level: int, position: int) -> bytes | None:
    found = session.get(LogSubtree, (level, position))
    return None if found is None else found.subtree_hash


def _cached_many(session: Session, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The cached subtrees among `keys` (level, position), read in one statement."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = session.exec(
        select(LogSubtree.level, LogSubtree.subtree_index, LogSubtree.subtree_hash).where(
            tuple_(col(LogSubtree.level), col(LogSubtree.subtree_index)).in_(wanted)
        )
    )
    return {(level, index): value for level, index, value in rows}


def check_range(start: int, end: int, size: int) -> None:
    if start < 0:
        raise InvalidInputError("start", "must not be negative")
    if end < start:
        raise InvalidInputError("end", "must not be before start")
    if end > size:
        raise InvalidInputError("end", f"is beyond the log's size {size}")


def entries(session: Session, start: int, end: int) -> list[EntryRow]:
    """Entries [start, end) in order; the range must lie inside the log."""
    check_range(start, end, size(session))
    rows = session.exec(
        select(LogEntry.leaf_index, LogEntry.envelope_json, LogEntry.paying_region)
        .where(col(LogEntry.leaf_index) >= start, col(LogEntry.leaf_index) < end)
        .order_by(col(LogEntry.leaf_index))
    )
    return [EntryRow(index, envelope, region) for index, envelope, region in rows]


def stream_entries(
    session: Session, start: int, end: int, regions: Sequence[str], chunk: int
) -> Iterator[list[EntryRow]]:
    """Entries in [start, end) (only those for `regions`, if any), `chunk` rows at a time.

    One query read as it goes: a server-side cursor in binary format on PostgreSQL (bytea
    arrives as bytes, not hex text), fetchmany on SQLite. The session stays open while the
    caller iterates.
    """
    columns = "leaf_index, envelope_json, paying_region"
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    postgres = is_postgres(session)
    mark = "%s" if postgres else "?"
    where = f"leaf_index >= {mark} AND leaf_index < {mark}"
    parameters: list[object] = [start, end]
    if regions:
        where += f" AND paying_region IN ({', '.join(mark for _ in regions)})"
        parameters.extend(regions)
    query = f"SELECT {columns} FROM log_entry WHERE {where} ORDER BY leaf_index"  # noqa: S608
    if postgres:
        cursor = driver.cursor(name="log_entries", binary=True)
        cursor.itersize = chunk
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(query, parameters)
        make = EntryRow._make
        while rows := cursor.fetchmany(chunk):
            yield [make(row) for row in rows]
    finally:
        cursor.close()


def entries_for_regions(
    session: Session, start: int, end: int, regions: Sequence[str]
) -> list[EntryRow]:
    """Entries in [start, end) for the given paying regions, in order."""
    rows = session.exec(
        select(LogEntry.leaf_index, LogEntry.envelope_json, LogEntry.paying_region)
        .where(
            col(LogEntry.leaf_index) >= start,
            col(LogEntry.leaf_index) < end,
            col(LogEntry.paying_region).in_(list(regions)),
        )
        .order_by(col(LogEntry.leaf_index))
    )
    return [EntryRow(index, envelope, region) for index, envelope, region in rows]


def entries_of(session: Session, attestation_ids: Sequence[str]) -> dict[str, Logged]:
    """The logged attestations among `attestation_ids`, by id (one query); the others are
    absent."""
    if not attestation_ids:
        return {}
    rows = session.execute(
        sa_select(
            col(LogEntry.attestation_id), col(LogEntry.leaf_index), col(LogEntry.envelope_json)
        ).where(col(LogEntry.attestation_id).in_(attestation_ids))
    )
    return {name: Logged(index, bytes(envelope)) for name, index, envelope in rows}


def entry_of(session: Session, attestation_id: str) -> LogEntry:
    found = session.exec(
        select(LogEntry).where(LogEntry.attestation_id == attestation_id)
    ).one_or_none()
    if found is None:
        raise not_logged(attestation_id)
    return found


def not_logged(attestation_id: str) -> UnknownAttestationError:
    """The refusal for an attestation this node's log does not hold."""
    return UnknownAttestationError(
        f"attestation {attestation_id} is not in this node's log; only attestations this node "
        "issued are logged here"
    )


def entry_at(session: Session, leaf_index: int) -> LogEntry:
    found = session.get(LogEntry, leaf_index)
    if found is None:
        raise NotFoundError(f"the log has no entry {leaf_index}")
    return found


class _TreeReader:
    """Subtree roots from the store: cached ones read, the rest hashed from few leaves.

    `planned` walks a proof once without hashing, to learn which cached roots and which runs
    of leaves it needs, and reads them in two queries; `hash_at` then answers from what was
    read: two queries a proof however deep the tree, instead of one a root or run. A cached root
    the store lacks is rebuilt from below, reading what that needs as it goes.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._subtrees: dict[tuple[int, int], bytes] = {}
        self._looked_up: set[tuple[int, int]] = set()
        self._leaves: dict[int, bytes] = {}
        self._hashed: dict[tuple[int, int], bytes] = {}

    def planned(self, walk: Callable[[merkle.HashAt], object]) -> merkle.HashAt:
        """`hash_at`, with everything `walk` (a proof over some `hash_at`) needs read at once."""
        subtrees: set[tuple[int, int]] = set()
        runs: list[tuple[int, int]] = []

        def plan(start: int, end: int) -> bytes:
            key = _cached_key(start, end)
            if key is not None:
                subtrees.add(key)
            elif end - start <= CHUNK:
                runs.append((start, end))
            else:
                split = _split_at(start, end)
                plan(start, split)
                plan(split, end)
            return bytes(HASH_SIZE)

        walk(plan)
        if subtrees:
            self._subtrees.update(_cached_many(self._session, subtrees))
            self._looked_up |= subtrees
        merged = _merged_runs(runs)
        if merged:
            leaves = self._session.exec(
                select(LogEntry.leaf_index, LogEntry.leaf_hash).where(
                    or_(
                        *(col(LogEntry.leaf_index).between(start, end - 1) for start, end in merged)
                    )
                )
            )
            self._leaves.update((index, value) for index, value in leaves)
        return self.hash_at

    def hash_at(self, start: int, end: int) -> bytes:
        # Proofs of one tree read together share most of their subtrees: each is hashed once.
        known = self._hashed.get((start, end))
        if known is not None:
            return known
        key = _cached_key(start, end)
        cached = self._subtree(key) if key is not None else None
        if cached is not None:
            value = cached
        elif end - start <= CHUNK:
            value = merkle.root_from_leaves(self._leaf_run(start, end))[1]
        else:
            split = _split_at(start, end)
            value = merkle.node_hash(self.hash_at(start, split), self.hash_at(split, end))
        self._hashed[(start, end)] = value
        return value

    def _subtree(self, key: tuple[int, int]) -> bytes | None:
        if key not in self._looked_up:
            self._looked_up.add(key)
            found = _cached(self._session, *key)
            if found is not None:
                self._subtrees[key] = found
        return self._subtrees.get(key)

    def _leaf_run(self, start: int, end: int) -> list[bytes]:
        try:
            return [self._leaves[index] for index in range(start, end)]
        except KeyError:
            run = _leaf_hashes(self._session, start, end)
            self._leaves.update(zip(range(start, end), run, strict=True))
            return run


def _cached_key(start: int, end: int) -> tuple[int, int] | None:
    """(level, index) of the cached root of leaves [start, end), if the store caches it."""
    width = end - start
    if width >= CHUNK and width & (width - 1) == 0 and start % width == 0:
        return width.bit_length() - 1, start // width
    return None


def _split_at(start: int, end: int) -> int:
    # RFC 9162 2.1.1: split at the largest power of two smaller than the width.
    return start + (1 << ((end - start - 1).bit_length() - 1))


def _merged_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of leaves to read, overlapping or close ones (less than a chunk apart) joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(runs):
        if merged and start <= merged[-1][1] + CHUNK:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _require_size(session: Session, tree_size: int, field: str) -> None:
    current = size(session)
    if not 0 <= tree_size <= current:
        raise InvalidInputError(field, f"must be between 0 and the log's size {current}")


def root_at(session: Session, tree_size: int) -> bytes:
    """The root of the log when it had `tree_size` entries."""
    _require_size(session, tree_size, "tree_size")
    if tree_size == 0:
        return merkle.EMPTY_ROOT
    reader = _TreeReader(session)
    return reader.planned(lambda hash_at: hash_at(0, tree_size))(0, tree_size)


def inclusion_proof(session: Session, leaf_index: int, tree_size: int) -> list[bytes]:
    return inclusion_proofs(session, [leaf_index], tree_size)[0]


def inclusion_proofs(
    session: Session, leaf_indexes: Sequence[int], tree_size: int
) -> list[list[bytes]]:
    """The audit path of each leaf in the tree of `tree_size`, in order: the subtree roots and
    leaves all of them need are read together (three queries for any number of proofs)."""
    _require_size(session, tree_size, "tree_size")
    for leaf_index in leaf_indexes:
        if not 0 <= leaf_index < tree_size:
            raise InvalidInputError("leaf_index", f"must be below the tree size {tree_size}")

    def proofs(hash_at: merkle.HashAt) -> list[list[bytes]]:
        return [merkle.inclusion_proof(leaf, tree_size, hash_at) for leaf in leaf_indexes]

    return _proved(session, proofs)


def consistency_proof(session: Session, first_size: int, second_size: int) -> list[bytes]:
    _require_size(session, second_size, "second_size")
    if not 0 <= first_size <= second_size:
        raise InvalidInputError("first_size", f"must be between 0 and second_size {second_size}")
    return _proved(
        session, lambda hash_at: merkle.consistency_proof(first_size, second_size, hash_at)
    )


def _proved(session: Session, proof: Callable[[merkle.HashAt], P]) -> P:
    return proof(_TreeReader(session).planned(proof))


# Checkpoints the registry witness cosigned.


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.exec(
        select(LogCheckpoint).order_by(col(LogCheckpoint.tree_size).desc()).limit(1)
    ).one_or_none()


def store_checkpoint(
    session: Session, tree_size: int, root_hash: bytes, note: bytes, now: datetime
) -> None:
    """Keep a cosigned checkpoint; a newer cosignature of the same size replaces the older."""
    existing = session.get(LogCheckpoint, tree_size)
    if existing is None:
        session.add(
            LogCheckpoint(tree_size=tree_size, root_hash=root_hash, note=note, cosigned_at=now)
        )
        return
    if existing.root_hash != root_hash:
        raise RuntimeError(f"two different roots for this log at size {tree_size}")
    existing.note = note
    existing.cosigned_at = now
    session.add(existing)


def stored_subtrees(session: Session) -> list[tuple[int, int, bytes]]:
    """Every cached subtree root, ordered (for checks that the bulk and single paths agree)."""
    rows = session.exec(
        select(LogSubtree).order_by(col(LogSubtree.level), col(LogSubtree.subtree_index))
    )
    return [(row.level, row.subtree_index, row.subtree_hash) for row in rows]
