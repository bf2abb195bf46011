"""An append-only RFC 6962 Merkle tree that keeps its node hashes, so roots and proofs of any size cost O(log n).

``ledger.merkle`` rebuilds every subtree a proof needs from the leaves, a pass
over all of them per proof. ``MerkleTree`` keeps the hash of every perfect
subtree instead (level k, index i: the root of leaves [i·2^k, (i+1)·2^k)),
about 2n hashes, each computed once as the leaves arrive. A root or a proof for
any size up to ``len`` then takes O(log n) stored hashes and fewer than log2(n)
new ones: the only subtrees of an RFC 6962 tree that are not perfect lie on its
right edge, and each is its perfect subtrees folded right to left. Proofs are
assembled as transparency-dev/merkle's ``proof`` package lays them out (RFC 9162
§2.1.3.1, §2.1.4.1) and are byte-identical to ``merkle.inclusion_proof`` and
``merkle.consistency_proof``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.merkle import EMPTY_ROOT, ProofError, _check_hashes, node_hash


class MerkleTree:
    """Leaf hashes and every perfect subtree's hash above them; roots and proofs for any size up to ``len``."""

    # One writer; a reader asking about sizes up to len() needs no lock, since levels only grow and
    # len() moves only once the hashes above the new leaves are in.
    __slots__ = ("_levels", "_size")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._size = 0
        self.extend(leaves)

    def __len__(self) -> int:
        """How many leaves the tree holds."""
        return self._size

    def leaf(self, index: int) -> bytes:
        """The hash of leaf ``index`` (0-based)."""
        self._check_index(index, self._size)
        return self._levels[0][index]

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash: amortised O(1), one node hash per leaf on average."""
        self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order, then hash each newly completed pair of every level into the level above."""
        new = list(leaves)
        _check_hashes("leaf", new, ValueError)
        levels = self._levels
        levels[0] += map(bytes, new)
        k = 0
        while len(levels[k]) >= 2:
            if k + 1 == len(levels):
                levels.append([])
            below, above = levels[k], levels[k + 1]
            done = 2 * len(above)
            if done + 2 > len(below):
                break  # no new pair here, so nothing new above either
            above += map(node_hash, below[done::2], below[done + 1::2])
            k += 1
        self._size = len(levels[0])

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[size]), the root of the first ``size`` leaves (default: all), EMPTY_ROOT for 0 (RFC 6962 §2.1)."""
        size = self._checked_size("size", size)
        return self._hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[size]): leaf ``index``'s audit path in the tree of ``size`` leaves (RFC 6962 §2.1.1)."""
        size = self._checked_size("size", size)
        self._check_index(index, size)
        return self._path(0, index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(m, D[new_size]): the tree of ``new_size`` leaves extends its first ``old_size`` (RFC 6962 §2.1.2)."""
        new_size = self._checked_size("new size", new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} is outside 0..{new_size}, the new tree's size")
        if old_size in (0, new_size):
            return []
        # The largest perfect subtree ending at old_size, then its path in the new tree (RFC 9162 §2.1.4.1).
        # When old_size is a power of two that subtree is the old tree, whose root the verifier already has.
        level = (old_size & -old_size).bit_length() - 1
        index = (old_size - 1) >> level
        path = self._path(level, index, new_size)
        return path if index == 0 else [self._levels[level][index], *path]

    def _path(self, level: int, index: int, size: int) -> list[bytes]:
        """The hashes, lowest first, that lead from node ``index`` of ``level`` to the root of ``size`` leaves."""
        # Up to the fork, where the node's path leaves the tree's right edge, every sibling is a stored
        # perfect subtree; the fork's right sibling is the edge [end, size) folded into one hash, and what
        # is left of the fork is [0, begin), its perfect subtrees taken smallest (nearest) first.
        levels = self._levels
        inner = (index ^ (size >> level)).bit_length() - 1
        path = [levels[k][(index >> (k - level)) ^ 1] for k in range(level, level + inner)]
        fork = level + inner
        begin = (index >> inner) << fork
        end = begin + (1 << fork)
        if end < size:
            path.append(self._hash(end, size))
        path += reversed(self._subtrees(0, begin))
        return path

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) of an aligned, non-empty range: its perfect subtrees folded right to left (§2.1)."""
        parts = self._subtrees(lo, hi)
        h = parts.pop()
        while parts:
            h = node_hash(parts.pop(), h)
        return h

    def _subtrees(self, lo: int, hi: int) -> list[bytes]:
        """The stored perfect subtrees that make up [lo, hi), largest (leftmost) first; one per bit of hi - lo."""
        # Valid for lo a multiple of the largest power of two in hi - lo, as every range here is: [0, n),
        # and the right edge past a fork, which starts at a multiple of a power of two above its width.
        parts = []
        while lo < hi:
            k = (hi - lo).bit_length() - 1
            parts.append(self._levels[k][lo >> k])
            lo += 1 << k
        return parts

    def _checked_size(self, what: str, size: int | None) -> int:
        """``size``, or the tree's size for None; ProofError for one the tree does not reach."""
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ProofError(f"{what} {size} is outside 0..{self._size}, the sizes this tree of {self._size} "
                             "leaves can answer for")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        """ProofError unless ``index`` is a leaf of a tree of ``size`` leaves."""
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
