"""The node's transparency log store, on SQLite and PostgreSQL: appends, roots, proofs, bulk."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete
from sqlmodel import col

from federation.errors import PreconditionError
from federation_node.store import log_store
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.log_store import NewEntry
from federation_node.store.models import LogSubtree
from signing import merkle
from tests.helpers.statements import counted_statements


def entry(number: int, region: str = "620102") -> NewEntry:
    return NewEntry(
        attestation_id=f"att-{number:08d}",
        envelope_json=b'{"payload":"%d"}' % number,
        paying_region=region,
    )


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(entry(number).envelope_json) for number in range(count)]


def test_empty_log_has_the_empty_root(engine: Engine) -> None:
    with session_scope(engine) as session:
        head = log_store.head(session)
    assert (head.tree_size, head.root_hash) == (0, merkle.EMPTY_ROOT)


def test_appends_get_consecutive_indexes_and_the_rfc_root(engine: Engine) -> None:
    for number in range(300):
        with session_scope(engine) as session:
            assert log_store.append(session, entry(number)) == number
    with session_scope(engine) as session:
        head = log_store.head(session)
        assert head.tree_size == 300
        assert head.root_hash == merkle.root_from_leaves(leaves(300))[1]
        assert log_store.root_at(session, 137) == merkle.root_from_leaves(leaves(137))[1]


def test_bulk_append_writes_what_single_appends_write(engine: Engine, tmp_path: Path) -> None:
    # 1100 crosses several cached levels (256, 512, 1024) on both paths.
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(700)))
    with session_scope(engine) as session:
        log_store.append(session, entry(700))
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(701, 1100)))
        bulk = log_store.stored_subtrees(session)
        bulk_head = log_store.head(session)
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    migrate(single_url)
    single = create_engine_for(single_url)
    try:
        for number in range(1100):
            with session_scope(single) as session:
                log_store.append(session, entry(number))
        with session_scope(single) as session:
            assert log_store.stored_subtrees(session) == bulk
            assert log_store.head(session) == bulk_head
    finally:
        single.dispose()
    assert [(level, index) for level, index, _ in bulk] == [
        *((8, index) for index in range(4)),
        (9, 0),
        (9, 1),
        (10, 0),
    ]
    assert bulk_head.root_hash == merkle.root_from_leaves(leaves(1100))[1]


@pytest.mark.parametrize("tree_size", [1, 2, 255, 256, 257, 600, 1024, 1100])
def test_inclusion_proofs_from_the_store_verify(engine: Engine, tree_size: int) -> None:
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(1100)))
    hashes = leaves(1100)
    root = merkle.root_from_leaves(hashes[:tree_size])[1]
    with session_scope(engine) as session:
        for index in {0, tree_size // 2, tree_size - 1}:
            proof = log_store.inclusion_proof(session, index, tree_size)
            assert proof == merkle.inclusion_proof_from_leaves(index, hashes[:tree_size])
            merkle.verify_inclusion(hashes[index], index, tree_size, proof, root)


def selects(statements: list[str]) -> list[str]:
    return [statement for statement in statements if statement.startswith("SELECT")]


def test_a_proof_reads_the_store_twice_however_deep_the_tree(engine: Engine) -> None:
    size = 9000
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(size)))
    hashes = leaves(size)
    root = merkle.root_from_leaves(hashes)[1]
    with session_scope(engine) as session:
        for index in (0, 4321, size - 1):
            with counted_statements(engine) as statements:
                proof = log_store.inclusion_proof(session, index, size)
            merkle.verify_inclusion(hashes[index], index, size, proof, root)
            # The size check, the cached roots, the leaf runs.
            assert len(selects(statements)) == 3, statements
        with counted_statements(engine) as statements:
            consistency = log_store.consistency_proof(session, 3000, size)
        assert len(selects(statements)) == 3, statements
        with counted_statements(engine) as statements:
            assert log_store.root_at(session, 8700) == merkle.root_from_leaves(hashes[:8700])[1]
        assert len(selects(statements)) == 3, statements
    merkle.verify_consistency(
        3000, size, merkle.root_from_leaves(hashes[:3000])[1], root, consistency
    )


def test_proofs_rebuild_cached_roots_the_store_lacks(engine: Engine) -> None:
    size = 1100
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(size)))
        session.execute(delete(LogSubtree).where(col(LogSubtree.level) >= 9))
    hashes = leaves(size)
    with session_scope(engine) as session:
        for index in (3, 700, size - 1):
            proof = log_store.inclusion_proof(session, index, size)
            assert proof == merkle.inclusion_proof_from_leaves(index, hashes)
        assert log_store.consistency_proof(session, 513, size) == (
            merkle.consistency_proof_from_leaves(513, hashes)
        )
        assert log_store.root_at(session, size) == merkle.root_from_leaves(hashes)[1]


@pytest.mark.parametrize(("first", "second"), [(1, 1100), (256, 1100), (300, 1024), (700, 701)])
def test_consistency_proofs_from_the_store_verify(engine: Engine, first: int, second: int) -> None:
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(1100)))
    hashes = leaves(1100)
    with session_scope(engine) as session:
        proof = log_store.consistency_proof(session, first, second)
    merkle.verify_consistency(
        first,
        second,
        merkle.root_from_leaves(hashes[:first])[1],
        merkle.root_from_leaves(hashes[:second])[1],
        proof,
    )


def test_entries_and_region_filter(engine: Engine) -> None:
    with session_scope(engine) as session:
        log_store.append_many(
            session,
            (entry(number, "620102" if number % 3 else "440600") for number in range(30)),
        )
    with session_scope(engine) as session:
        assert [row.leaf_index for row in log_store.entries(session, 5, 9)] == [5, 6, 7, 8]
        foshan = log_store.entries_for_regions(session, 0, 30, ["440600"])
        assert [row.leaf_index for row in foshan] == list(range(0, 30, 3))
        assert log_store.entry_of(session, "att-00000007").leaf_index == 7


def test_reading_beyond_the_log_is_refused_naming_the_field(engine: Engine) -> None:
    from federation.errors import InvalidInputError

    with session_scope(engine) as session:
        log_store.append(session, entry(0))
    with session_scope(engine) as session, pytest.raises(InvalidInputError, match="end"):
        log_store.entries(session, 0, 2)


@pytest.mark.postgres
def test_concurrent_appends_on_postgres_never_share_or_skip_an_index(postgres_url: str) -> None:
    migrate(postgres_url)
    engines = [create_engine_for(postgres_url) for _ in range(2)]
    errors: list[BaseException] = []

    def replica(engine: Engine, offset: int) -> None:
        try:
            for number in range(offset, offset + 100):
                with session_scope(engine) as session:
                    log_store.append(session, entry(number))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=replica, args=(engine, 1000 * position))
        for position, engine in enumerate(engines)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with session_scope(engines[0]) as session:
            rows = log_store.entries(session, 0, 200)
            head = log_store.head(session)
        assert [row.leaf_index for row in rows] == list(range(200))
        in_order = [merkle.leaf_hash(row.envelope_json) for row in rows]
        assert head.root_hash == merkle.root_from_leaves(in_order)[1]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_second_cosignature_of_one_size_replaces_the_first(engine: Engine) -> None:
    now = datetime(2025, 6, 23, tzinfo=UTC)
    with session_scope(engine) as session:
        log_store.store_checkpoint(session, 0, merkle.EMPTY_ROOT, b"first", now)
    with session_scope(engine) as session:
        log_store.store_checkpoint(session, 0, merkle.EMPTY_ROOT, b"second", now)
    with session_scope(engine) as session:
        latest = log_store.latest_checkpoint(session)
        assert latest is not None
        assert latest.note == b"second"


def test_streamed_entries_come_in_order_in_chunks_and_filtered(engine: Engine) -> None:
    with session_scope(engine) as session:
        log_store.append_many(
            session,
            (entry(number, "620102" if number % 2 else "440600") for number in range(25)),
        )
    with session_scope(engine) as session:
        chunks = list(log_store.stream_entries(session, 3, 20, (), 5))
        odd = [
            row.leaf_index
            for chunk in log_store.stream_entries(session, 0, 25, ["620102"], 4)
            for row in chunk
        ]
    assert [len(chunk) for chunk in chunks] == [5, 5, 5, 2]
    assert [row.leaf_index for chunk in chunks for row in chunk] == list(range(3, 20))
    assert chunks[0][0].envelope_json == entry(3).envelope_json
    assert odd == list(range(1, 25, 2))


def test_a_log_shorter_than_what_its_witness_cosigned_refuses_appends_until_recovered(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        log_store.append_many(session, (entry(number) for number in range(2)))
        log_store.record_witness(session, witnessed_size=5, confirmed=True)
    for append in (
        lambda session: log_store.append(session, entry(2)),
        lambda session: log_store.append_many(session, [entry(2)]),
    ):
        with (
            pytest.raises(log_store.LogBehindWitnessError, match="cosigned 5"),
            session_scope(engine) as session,
        ):
            append(session)
    with session_scope(engine) as session:
        log_store.recover(session, 2, (entry(number) for number in range(2, 5)))
    with session_scope(engine) as session:
        assert log_store.append(session, entry(5)) == 5
        assert log_store.head(session).root_hash == merkle.root_from_leaves(leaves(6))[1]


def test_a_restored_log_appends_nothing_until_the_witness_answered(engine: Engine) -> None:
    with session_scope(engine) as session:
        log_store.append(session, entry(0))
        log_store.mark_restored(session)
    with (
        pytest.raises(log_store.LogBehindWitnessError, match="restored"),
        session_scope(engine) as session,
    ):
        log_store.append(session, entry(1))
    with session_scope(engine) as session:
        # A smaller size than one known is never taken over it.
        state = log_store.record_witness(session, witnessed_size=0, confirmed=True)
        assert state == log_store.WitnessState(witnessed_size=0, awaiting_witness=False)
        assert log_store.append(session, entry(1)) == 1


def test_recovery_into_a_log_that_moved_on_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        log_store.append(session, entry(0))
    with (
        pytest.raises(PreconditionError, match="recovered meanwhile"),
        session_scope(engine) as session,
    ):
        log_store.recover(session, 0, [entry(0)])
