"""The Merkle tree of the audit log, as RFC 9162 (Certificate Transparency v2) §2.1 defines it.

Why RFC 9162 and not an ad-hoc hash list: a hash chain proves order, but proving that the log
seen by a witness yesterday is a prefix of today's log, or that one entry is in a signed head,
would need the whole log. The RFC's tree gives both in O(log n) hashes (inclusion and
consistency proofs), with verifiers any CT library can cross-check, and domain-separated
hashing (0x00 leaves, 0x01 nodes) so a node can never pass for a leaf.

Definitions (``HASH`` = SHA-256; inputs and outputs are raw 32-byte hashes)::

    MTH({})      = HASH()
    MTH({d0})    = HASH(0x00 || d0)                               leaf hash
    MTH(D[n])    = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))       k = largest power of 2 < n

Functions here take *leaf hashes* (the entries' ``entry_hash``), not raw leaves: the log
stores leaf hashes, and every proof is over them. Proof generators follow the RFC's PATH and
PROOF (§2.1.3.1, §2.1.4.1); verifiers follow §2.1.3.2 and §2.1.4.2 literally and return
``False`` (never raise) on any malformed input.

Cost: generating a proof rehashes the tree (O(n)); verifying is O(log n). The verifier of the
whole log uses :class:`MerkleAccumulator`, which gives the root at every prefix in one pass.

Example::

    leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    root = merkle_root(leaves)
    assert verify_inclusion(leaves[2], 2, 3, inclusion_proof(leaves, 2, 3), root)
    assert verify_consistency(2, 3, merkle_root(leaves[:2]), root, consistency_proof(leaves, 2, 3))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleAccumulator",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """``HASH(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``HASH(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaves(leaves: Sequence[bytes]) -> None:
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in leaves):
        raise ValueError(f"merkle: every leaf hash must be {HASH_SIZE} bytes")


def _mth(leaves: Sequence[bytes], lo: int = 0, hi: int | None = None) -> bytes:
    """MTH of ``leaves[lo:hi]`` (index ranges, no list copies)."""
    hi = len(leaves) if hi is None else hi
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes."""
    _check_leaves(leaves)
    return _mth(leaves)


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"merkle: no leaf {index} in a tree of size {size}")
    _check_leaves(leaves)

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, lo, lo + k), _mth(leaves, lo + k, hi)]
        return [*path(m - k, lo + k, hi), _mth(leaves, lo, lo + k)]

    return path(index, 0, size)


def consistency_proof(leaves: Sequence[bytes], first: int, second: int | None = None) -> list[bytes]:
    """PROOF(first, D[second]): proves the tree of size ``first`` is a prefix of the one of size ``second``.

    Empty for ``first == 0`` or ``first == second`` (nothing to prove).
    """
    second = len(leaves) if second is None else second
    if not 0 <= first <= second <= len(leaves):
        raise ValueError(f"merkle: no consistency proof from size {first} to size {second}")
    _check_leaves(leaves)
    if first == 0:
        return []

    def subproof(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [_mth(leaves, lo, hi)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, lo, lo + k, whole), _mth(leaves, lo + k, hi)]
        return [*subproof(m - k, lo + k, hi, False), _mth(leaves, lo, lo + k)]

    return subproof(first, 0, second, True)


def _hashes_ok(*hashes: object) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: whether ``proof`` places leaf hash ``leaf`` at ``index`` under ``root``."""
    if not isinstance(proof, list | tuple) or not _hashes_ok(leaf, root, *proof):
        return False
    if not (isinstance(index, int) and isinstance(size, int)) or not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: whether ``proof`` shows tree ``first`` (``first_root``) is a prefix of tree ``second``.

    Degenerate cases: ``first == second`` holds iff the proof is empty and the roots are equal;
    ``first == 0`` holds iff the proof is empty and ``first_root`` is the empty tree's root.
    """
    if not isinstance(proof, list | tuple) or not _hashes_ok(first_root, second_root, *proof):
        return False
    if not (isinstance(first, int) and isinstance(second, int)) or not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: its root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class MerkleAccumulator:
    """Appends leaf hashes one by one and gives the root of the tree so far, in O(log n) memory.

    Why: verifying a log checks the root at every checkpoint's size; recomputing MTH from
    scratch for each would be O(n) per checkpoint. The accumulator keeps the perfect subtrees
    of the current size (one per set bit, largest first), and the RFC root of size n is those
    subtrees folded from the right.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.size = 0

    def append(self, leaf: bytes) -> None:
        if not _hashes_ok(leaf):
            raise ValueError(f"merkle: a leaf hash must be {HASH_SIZE} bytes")
        height, h = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            h = node_hash(left, h)
            height += 1
        self._stack.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            r = node_hash(left, r)
        return r
