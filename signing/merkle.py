"""RFC 9162 Merkle tree: leaf and node hashes, roots, inclusion and consistency proofs.

A transcription of RFC 9162 section 2.1 (the hashing is RFC 6962's, unchanged): every node log
and the registry witness compute the same roots and proofs, and a receiver can check an
inclusion or consistency proof with nothing but the hashes. Promises: roots are computed in one
streaming pass with memory logarithmic in the number of leaves; proof generation asks the caller
for subtree roots (`hash_at`), so a store can answer from what it keeps; verification raises
`InclusionProofError` / `ConsistencyProofError` and never returns a boolean to forget to check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from signing.errors import ConsistencyProofError, InclusionProofError, LogError

HASH_SIZE = 32

# RFC 9162 2.1.1: MTH({}) = SHA-256().
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Leaf hashes `TreeBuilder.extend` holds at once: its memory stays bounded for any input.
EXTEND_BLOCK = 1 << 12

# Returns the root of the subtree of leaves [start, end).
HashAt = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    # RFC 9162 2.1.1: k is the largest power of two smaller than n (n > 1).
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str, error: type[LogError]) -> None:
    if len(value) != HASH_SIZE:
        raise error(f"{what} has {len(value)} bytes; a SHA-256 hash has {HASH_SIZE}")


class TreeBuilder:
    """Appends leaf hashes and yields the root at any size, keeping O(log n) subtree roots.

    The state is the compact range of the tree: the roots of the perfect subtrees along its
    right edge, largest (leftmost) first, one per bit set in the size. Persisting `size` and
    `state()` lets a log resume with `from_state` without rehashing its leaves.
    """

    def __init__(self) -> None:
        self._size = 0
        self._roots: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, state: Sequence[bytes]) -> TreeBuilder:
        if size < 0:
            raise LogError(f"tree size must not be negative, got {size}")
        if len(state) != size.bit_count():
            raise LogError(
                f"a tree of size {size} has {size.bit_count()} right-edge subtree roots, "
                f"the state has {len(state)}"
            )
        for position, root in enumerate(state):
            _check_hash(root, f"state[{position}]", LogError)
        builder = cls()
        builder._size = size
        builder._roots = [bytes(root) for root in state]
        return builder

    @property
    def size(self) -> int:
        return self._size

    def state(self) -> list[bytes]:
        return list(self._roots)

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash (see `leaf_hash`), merging equal-sized subtrees as in binary."""
        _check_hash(leaf, "leaf hash", LogError)
        self._push(bytes(leaf), 0)

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append each leaf hash in turn, with the same result as `append` on each. Leaves are
        taken in blocks of at most `EXTEND_BLOCK`, and each perfect subtree a block completes is
        hashed level by level, not through one carry chain per leaf."""
        block: list[bytes] = []
        for leaf in leaves:
            block.append(leaf)
            if len(block) == EXTEND_BLOCK:
                self._extend(block)
                block = []
        if block:
            self._extend(block)

    def _extend(self, leaves: list[bytes]) -> None:
        for leaf in leaves:
            _check_hash(leaf, "leaf hash", LogError)
        start, total = 0, len(leaves)
        while start < total:
            # The largest perfect subtree that starts at the current size (aligned to its
            # width) and fits in what is left of the block.
            height = (total - start).bit_length() - 1
            if self._size:
                height = min(height, (self._size & -self._size).bit_length() - 1)
            level = leaves[start : start + (1 << height)]
            while len(level) > 1:
                level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self._push(bytes(level[0]), height)
            start += 1 << height

    def _push(self, root: bytes, height: int) -> None:
        # A perfect subtree of 2**height leaves, appended where the size is a multiple of that:
        # each trailing one bit of size >> height is a subtree of the same size to merge with,
        # exactly as adding 2**height carries in binary.
        self._roots.append(root)
        carries = self._size >> height
        while carries & 1:
            right = self._roots.pop()
            left = self._roots.pop()
            self._roots.append(node_hash(left, right))
            carries >>= 1
        self._size += 1 << height

    def root(self) -> bytes:
        """MTH of the leaves appended so far (RFC 9162 2.1.1)."""
        if not self._roots:
            return EMPTY_ROOT
        # The subtrees have strictly decreasing power-of-two sizes, which is exactly how the
        # RFC splits D[n] at k recursively: fold them from the right.
        root = self._roots[-1]
        for left in reversed(self._roots[:-1]):
            root = node_hash(left, root)
        return root


def root_from_leaves(leaf_hashes: Iterable[bytes]) -> tuple[int, bytes]:
    """Tree size and root of the leaf hashes, in one pass and O(log n) memory."""
    builder = TreeBuilder()
    builder.extend(leaf_hashes)
    return builder.size, builder.root()


def _subtree_path(index: int, start: int, end: int, hash_at: HashAt) -> list[bytes]:
    # RFC 9162 2.1.3.1: PATH(m, D[n]), on the subtree of leaves [start, end), m = index - start.
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if index - start < k:
        return [*_subtree_path(index, start, start + k, hash_at), hash_at(start + k, end)]
    return [*_subtree_path(index, start + k, end, hash_at), hash_at(start, start + k)]


def inclusion_proof(leaf_index: int, tree_size: int, hash_at: HashAt) -> list[bytes]:
    """RFC 9162 2.1.3.1 audit path of leaf `leaf_index` in the tree of `tree_size` leaves."""
    if not 0 <= leaf_index < tree_size:
        raise InclusionProofError(f"leaf index {leaf_index} is not in a tree of size {tree_size}")
    return _subtree_path(leaf_index, 0, tree_size, hash_at)


def _hash_at_from_leaves(leaf_hashes: Sequence[bytes]) -> HashAt:
    def hash_at(start: int, end: int) -> bytes:
        return root_from_leaves(leaf_hashes[start:end])[1]

    return hash_at


def inclusion_proof_from_leaves(leaf_index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """`inclusion_proof` over leaf hashes held in memory (tests, small trees)."""
    return inclusion_proof(leaf_index, len(leaf_hashes), _hash_at_from_leaves(leaf_hashes))


def verify_inclusion(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: check that `leaf_hash` is leaf `leaf_index` of the tree with `root`."""
    _check_hash(leaf_hash, "leaf hash", InclusionProofError)
    _check_hash(root, "root hash", InclusionProofError)
    for position, value in enumerate(proof):
        _check_hash(value, f"inclusion proof[{position}]", InclusionProofError)
    # 1. leaf_index must be inside the tree.
    if not 0 <= leaf_index < tree_size:
        raise InclusionProofError(f"leaf index {leaf_index} is not in a tree of size {tree_size}")
    # 2.-3.
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    # 4.
    for p in proof:
        if sn == 0:
            raise InclusionProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn != 0 and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    if sn != 0:
        raise InclusionProofError("inclusion proof is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise InclusionProofError("inclusion proof does not lead to the root hash")


def _subproof(m: int, start: int, end: int, whole: bool, hash_at: HashAt) -> list[bytes]:
    # RFC 9162 2.1.4.1: SUBPROOF(m, D[n], b), on the subtree of leaves [start, end).
    n = end - start
    if m == n:
        return [] if whole else [hash_at(start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole, hash_at), hash_at(start + k, end)]
    return [*_subproof(m - k, start + k, end, False, hash_at), hash_at(start, start + k)]


def consistency_proof(first_size: int, second_size: int, hash_at: HashAt) -> list[bytes]:
    """RFC 9162 2.1.4.1 proof that the tree of `first_size` leaves is a prefix of the second.

    Empty when `first_size` is 0 or equal to `second_size`: nothing needs proving.
    """
    if not 0 <= first_size <= second_size:
        raise ConsistencyProofError(
            f"cannot prove a tree of size {first_size} consistent with one of size {second_size}"
        )
    if first_size in (0, second_size):
        return []
    return _subproof(first_size, 0, second_size, True, hash_at)


def consistency_proof_from_leaves(first_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """`consistency_proof` over leaf hashes held in memory (tests, small trees)."""
    return consistency_proof(first_size, len(leaf_hashes), _hash_at_from_leaves(leaf_hashes))


def verify_consistency(
    first_size: int,
    second_size: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """RFC 9162 2.1.4.2: check that the tree (second_size, second_root) extends the first.

    An empty first tree is a prefix of every tree, so with `first_size` 0 only an empty proof is
    accepted and `first_root` is not consulted; equal sizes need equal roots and an empty proof.
    """
    _check_hash(second_root, "second root hash", ConsistencyProofError)
    for position, value in enumerate(proof):
        _check_hash(value, f"consistency proof[{position}]", ConsistencyProofError)
    if not 0 <= first_size <= second_size:
        raise ConsistencyProofError(
            f"a tree of size {second_size} cannot extend one of size {first_size}"
        )
    if first_size == 0:
        if proof:
            raise ConsistencyProofError("a consistency proof from the empty tree must be empty")
        return
    _check_hash(first_root, "first root hash", ConsistencyProofError)
    if first_size == second_size:
        if proof:
            raise ConsistencyProofError("a consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(first_root, second_root):
            raise ConsistencyProofError(
                f"two different root hashes for the same tree size {first_size}"
            )
        return
    # 1.
    if not proof:
        raise ConsistencyProofError("consistency proof is empty")
    path = list(proof)
    # 2. A first tree that is a perfect subtree is its own first proof node.
    if first_size & (first_size - 1) == 0:
        path.insert(0, first_root)
    # 3.-4.
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn != 0 and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ConsistencyProofError("consistency proof is shorter than the path to the root")
    if not hmac.compare_digest(fr, first_root):
        raise ConsistencyProofError("consistency proof does not lead to the first root hash")
    if not hmac.compare_digest(sr, second_root):
        raise ConsistencyProofError("consistency proof does not lead to the second root hash")
