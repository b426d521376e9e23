"""RFC 9162 Merkle tree: reference vectors, streaming roots, and proofs over all small trees."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.errors import ConsistencyProofError, InclusionProofError, LogError
from signing.merkle import (
    EMPTY_ROOT,
    EXTEND_BLOCK,
    TreeBuilder,
    consistency_proof,
    consistency_proof_from_leaves,
    inclusion_proof,
    inclusion_proof_from_leaves,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "merkle_rfc6962.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(data)) for data in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(root) for root in VECTORS["roots"]]


def hashes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


def leaves_of(size: int) -> list[bytes]:
    return [leaf_hash(index.to_bytes(4, "big")) for index in range(size)]


def reference_root(leaves: list[bytes]) -> bytes:
    # RFC 9162 2.1.1 recursive definition, written independently of the streaming builder.
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x10]) + value[1:]


def test_vector_file_names_its_source() -> None:
    assert "transparency-dev/merkle" in VECTORS["source"]


def test_hash_prefixes_follow_rfc_9162() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["empty_root"]
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_reference_tree_match_vectors(size: int) -> None:
    assert root_from_leaves(LEAVES[:size]) == (size, ROOTS[size - 1])


def test_empty_tree_has_the_empty_root() -> None:
    assert root_from_leaves([]) == (0, EMPTY_ROOT)
    assert TreeBuilder().root() == EMPTY_ROOT


@pytest.mark.parametrize("vector", VECTORS["inclusion"])
def test_inclusion_vectors_are_generated_and_verified(vector: dict[str, Any]) -> None:
    leaf, size, proof = vector["leaf"], vector["size"], hashes(vector["proof"])
    assert inclusion_proof_from_leaves(leaf, LEAVES[:size]) == proof
    verify_inclusion(LEAVES[leaf], leaf, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize("vector", VECTORS["consistency"])
def test_consistency_vectors_are_generated_and_verified(vector: dict[str, Any]) -> None:
    first, second, proof = vector["first"], vector["second"], hashes(vector["proof"])
    assert consistency_proof_from_leaves(first, LEAVES[:second]) == proof
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)


@given(st.lists(st.binary(max_size=8), max_size=300))
def test_streaming_root_equals_recursive_definition(data: list[bytes]) -> None:
    leaves = [leaf_hash(item) for item in data]
    assert root_from_leaves(leaves) == (len(leaves), reference_root(leaves))


@given(st.integers(0, 200), st.integers(0, 200))
def test_builder_resumed_from_state_continues_the_same_tree(first: int, more: int) -> None:
    leaves = leaves_of(first + more)
    builder = TreeBuilder()
    builder.extend(leaves[:first])
    resumed = TreeBuilder.from_state(builder.size, builder.state())
    assert len(builder.state()) == first.bit_count()
    resumed.extend(leaves[first:])
    assert (resumed.size, resumed.root()) == root_from_leaves(leaves)


@given(st.lists(st.integers(0, 300), min_size=1, max_size=6))
def test_extending_in_any_pieces_builds_the_tree_appending_one_by_one_does(
    pieces: list[int],
) -> None:
    leaves = leaves_of(sum(pieces))
    extended, appended = TreeBuilder(), TreeBuilder()
    start = 0
    for piece in pieces:
        extended.extend(leaves[start : start + piece])
        for leaf in leaves[start : start + piece]:
            appended.append(leaf)
        start += piece
        assert (extended.size, extended.state()) == (appended.size, appended.state())
    assert extended.root() == reference_root(leaves)


def test_extending_past_a_block_and_from_a_generator_keeps_the_tree() -> None:
    leaves = leaves_of(3 + 2 * EXTEND_BLOCK + 5)
    builder = TreeBuilder()
    builder.extend(leaves[:3])
    builder.extend(leaf for leaf in leaves[3:])
    assert (builder.size, builder.root()) == (len(leaves), reference_root(leaves))


def test_a_leaf_of_the_wrong_length_in_an_extension_adds_nothing() -> None:
    builder = TreeBuilder()
    builder.extend(leaves_of(5))
    with pytest.raises(LogError, match="leaf hash"):
        builder.extend([*leaves_of(2), b"short"])
    assert (builder.size, builder.root()) == root_from_leaves(leaves_of(5))


def test_state_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(LogError, match="right-edge"):
        TreeBuilder.from_state(3, [EMPTY_ROOT])
    with pytest.raises(LogError, match="state\\[0\\]"):
        TreeBuilder.from_state(1, [b"short"])


def test_leaf_hash_of_wrong_length_is_refused() -> None:
    with pytest.raises(LogError, match="leaf hash"):
        TreeBuilder().append(b"not a hash")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64))
def test_every_inclusion_proof_verifies_and_tampering_is_refused(size: int) -> None:
    leaves = leaves_of(size)
    root = root_from_leaves(leaves)[1]
    for index in range(size):
        proof = inclusion_proof_from_leaves(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, root)
        with pytest.raises(InclusionProofError):
            verify_inclusion(flip(leaves[index]), index, size, proof, root)
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaves[index], index, size, proof, flip(root))
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaves[index], index, size, [*proof, root], root)
        if size > 1:
            with pytest.raises(InclusionProofError):
                verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)
            with pytest.raises(InclusionProofError):
                verify_inclusion(leaves[index], index, size, proof[:-1], root)
        for position in range(len(proof)):
            tampered = [*proof]
            tampered[position] = flip(tampered[position])
            with pytest.raises(InclusionProofError):
                verify_inclusion(leaves[index], index, size, tampered, root)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64))
def test_every_consistency_proof_verifies_and_tampering_is_refused(second: int) -> None:
    leaves = leaves_of(second)
    second_root = root_from_leaves(leaves)[1]
    for first in range(1, second + 1):
        first_root = root_from_leaves(leaves[:first])[1]
        proof = consistency_proof_from_leaves(first, leaves)
        verify_consistency(first, second, first_root, second_root, proof)
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, second, flip(first_root), second_root, proof)
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, second, first_root, flip(second_root), proof)
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, second, first_root, second_root, [*proof, first_root])
        if proof:
            with pytest.raises(ConsistencyProofError):
                verify_consistency(first, second, first_root, second_root, proof[:-1])
        for position in range(len(proof)):
            tampered = [*proof]
            tampered[position] = flip(tampered[position])
            with pytest.raises(ConsistencyProofError):
                verify_consistency(first, second, first_root, second_root, tampered)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 64), st.data())
def test_a_different_history_is_not_consistent(second: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(1, second - 1))
    changed = data.draw(st.integers(0, first - 1))
    leaves = leaves_of(second)
    forked = [*leaves]
    forked[changed] = leaf_hash(b"rewritten")
    first_root = root_from_leaves(leaves[:first])[1]
    proof = consistency_proof_from_leaves(first, forked)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(first, second, first_root, root_from_leaves(forked)[1], proof)


def test_proofs_ask_the_store_only_for_subtrees_inside_the_tree() -> None:
    leaves = leaves_of(13)
    asked: list[tuple[int, int]] = []

    def hash_at(start: int, end: int) -> bytes:
        asked.append((start, end))
        return root_from_leaves(leaves[start:end])[1]

    inclusion_proof(11, 13, hash_at)
    consistency_proof(5, 13, hash_at)
    assert asked
    assert all(0 <= start < end <= 13 for start, end in asked)


def test_trivial_consistency_cases() -> None:
    root = root_from_leaves(LEAVES)[1]
    verify_consistency(0, 8, EMPTY_ROOT, root, [])
    verify_consistency(8, 8, root, root, [])
    assert consistency_proof(0, 8, lambda start, end: EMPTY_ROOT) == []
    with pytest.raises(ConsistencyProofError, match="empty tree"):
        verify_consistency(0, 8, EMPTY_ROOT, root, [root])
    with pytest.raises(ConsistencyProofError, match="same tree size"):
        verify_consistency(8, 8, root, ROOTS[0], [])
    with pytest.raises(ConsistencyProofError, match="must be empty"):
        verify_consistency(8, 8, root, root, [root])
    with pytest.raises(ConsistencyProofError, match="cannot extend"):
        verify_consistency(8, 7, root, ROOTS[6], [])
    with pytest.raises(ConsistencyProofError, match="is empty"):
        verify_consistency(7, 8, ROOTS[6], root, [])


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(InclusionProofError, match="not in a tree of size 8"):
        inclusion_proof_from_leaves(8, LEAVES)
    with pytest.raises(InclusionProofError, match="not in a tree of size 0"):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ConsistencyProofError, match="cannot prove"):
        consistency_proof(9, 8, lambda start, end: EMPTY_ROOT)


def test_hashes_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(InclusionProofError, match=r"proof\[0\]"):
        verify_inclusion(LEAVES[0], 0, 2, [b"\x00" * 31], ROOTS[1])
    with pytest.raises(ConsistencyProofError, match="first root"):
        verify_consistency(1, 2, b"", ROOTS[1], [LEAVES[1]])
