"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, inclusion and consistency proofs, their checks.

Every function here works on leaf hashes: a caller hashes each entry once with
``leaf_hash`` and keeps the 32-byte results, so building a root or a proof never
rehashes entries. Roots are hashed level by level and proofs unroll the
recursive definitions of RFC 6962 §2.1 into loops, so a million leaves cost one
pass of about a million SHA-256 calls and no Python recursion. Verification is
the bit-walking algorithm of RFC 9162 §2.1.3.2 and §2.1.4.2, the one
transparency-dev/merkle implements, and raises ``ProofError`` naming what is
wrong instead of returning False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from identity.errors import DepaiError

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(DepaiError, ValueError):
    """A proof, or an argument to a proof check, that does not hold; the message says which and why."""

    code = "merkle_proof_invalid"


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one entry, prefixed so it can never pose as a node (RFC 6962 §2.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node (RFC 6962 §2.1)."""
    return _sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]), the Merkle tree hash of ``leaves`` (leaf hashes), or EMPTY_ROOT for none (RFC 6962 §2.1)."""
    _check_hashes("leaf", leaves, ValueError)
    return _mth(leaves)


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path proving leaf ``index`` is in the tree of ``leaves`` (RFC 6962 §2.1.1)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    _check_hashes("leaf", leaves, ValueError)
    path = []  # top-down; PATH lists its hashes bottom-up
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_mth(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(_mth(leaves[lo:lo + k]))
            lo += k
    return path[::-1]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): hashes proving ``leaves`` extend their first ``old_size`` (RFC 6962 §2.1.2); 0 and n get []."""
    if not 0 <= old_size <= len(leaves):
        raise ValueError(f"old size {old_size} is outside 0..{len(leaves)}, the new tree's size")
    _check_hashes("leaf", leaves, ValueError)
    if old_size in (0, len(leaves)):
        return []
    proof = []  # SUBPROOF(m, D[lo:hi], whole), unrolled; collected top-down
    lo, hi, m, whole = 0, len(leaves), old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_mth(leaves[lo + k:hi]))
            hi = lo + k
        else:
            proof.append(_mth(leaves[lo:lo + k]))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(_mth(leaves[lo:hi]))
    return proof[::-1]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root`` (RFC 9162 §2.1.3.2)."""
    _check_hashes("proof hash", proof, ProofError)
    _check_hash("leaf", leaf, ProofError)
    _check_hash("root", root, ProofError)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"the proof has {len(proof)} hashes, more than leaf {index} of {size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"the proof has {len(proof)} hashes, fewer than leaf {index} of {size} needs")
    if r != root:
        raise ProofError(f"the proof for leaf {index} of {size} leads to root {r.hex()}, not {root.hex()}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends that of ``old_size`` (RFC 9162 §2.1.4.2)."""
    _check_hashes("proof hash", proof, ProofError)
    _check_hash("old root", old_root, ProofError)
    _check_hash("new root", new_root, ProofError)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"old size {old_size} is not within 0..{new_size}, the new size")
    if old_size in (0, new_size):
        _check_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    if not proof:
        raise ProofError(f"an empty proof cannot show size {new_size} extends size {old_size}")
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the proof has {len(proof)} hashes, more than sizes {old_size} to {new_size} need")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"the proof has {len(proof)} hashes, fewer than sizes {old_size} to {new_size} need")
    if fr != old_root:
        raise ProofError(f"the proof leads to old root {fr.hex()}, not {old_root.hex()}")
    if sr != new_root:
        raise ProofError(f"the proof leads to new root {sr.hex()}, not {new_root.hex()}")


class CompactRange:
    """A growing tree's right edge, its perfect subtrees' roots, so appends and roots cost O(log n) (RFC 6962 §2.1)."""

    # An append merges equal-sized subtrees like a binary counter's carries and
    # root() folds the edge right to left, so the log's leaves need not be held
    # (transparency-dev/merkle's compact.Range, begun at 0).
    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> CompactRange:
        """The range of a tree holding ``leaves`` (leaf hashes), appended in order."""
        edge = cls()
        for leaf in leaves:
            edge.append(leaf)
        return edge

    @property
    def size(self) -> int:
        """How many leaves were appended."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, largest (leftmost) first: one per set bit of ``size``."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, merging the subtrees it completes."""
        _check_hash("leaf", leaf, ValueError)
        h, carry = bytes(leaf), self._size
        while carry & 1:
            h = node_hash(self._hashes.pop(), h)
            carry >>= 1
        self._hashes.append(h)
        self._size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far: the edge folded right to left (RFC 6962 §2.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r


def _mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) level by level; an odd last node rises unpaired, which is RFC 6962's split at 2^k (§2.1)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [_sha256(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """k, the largest power of two below n (for n > 1): where MTH splits D[n] (RFC 6962 §2.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_trivial_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                               proof: Sequence[bytes]) -> None:
    """The cases RFC 9162 §2.1.4 leaves out, as transparency-dev/merkle takes them: old size 0 or new size."""
    # Equal sizes need equal roots; any tree extends the empty one, whose root must be EMPTY_ROOT.
    if proof:
        raise ProofError(f"sizes {old_size} to {new_size} take an empty proof, got {len(proof)} hashes")
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise ProofError(f"old root {old_root.hex()} is not the empty tree's root {EMPTY_ROOT.hex()}")
    if old_size == new_size and old_root != new_root:
        raise ProofError(f"two trees of size {new_size} have different roots")


def _check_hash(what: str, value: bytes, error: type[ValueError]) -> None:
    """Refuse anything but a 32-byte SHA-256 hash, naming what it was meant to be."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        size = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise error(f"the {what} is {size}; a SHA-256 hash is {HASH_SIZE} bytes")


def _check_hashes(what: str, values: Sequence[bytes], error: type[ValueError]) -> None:
    """Refuse a list holding anything but 32-byte hashes, naming the first that is not."""
    if set(map(type, values)) <= {bytes} and set(map(len, values)) <= {HASH_SIZE}:
        return  # the common case, checked at C speed: a million leaves in a few tens of milliseconds
    for i, value in enumerate(values):
        _check_hash(f"{what} {i}", value, error)
