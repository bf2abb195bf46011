"""MerkleTree: the published vectors, then byte-for-byte agreement with ledger.merkle at every size, and refusals."""

from __future__ import annotations

import random

import pytest

from ledger import merkle
from ledger.merkle import EMPTY_ROOT, ProofError, leaf_hash, verify_consistency, verify_inclusion
from ledger.tree import MerkleTree
from tests.ledger.test_merkle import CONSISTENCY_PROOFS, INCLUSION_PROOFS, LEAVES, NODE_HASHES, ROOTS

SMALL = [leaf_hash(i.to_bytes(2, "big")) for i in range(71)]
LARGE = [leaf_hash(i.to_bytes(4, "big")) for i in range(5_000)]


def grown_one_by_one(leaves: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


# --- the published vectors -----------------------------------------------------------------------

def test_roots_of_sizes_0_to_8_match_the_vectors() -> None:
    tree = grown_one_by_one(LEAVES)
    assert [tree.root(size) for size in range(9)] == ROOTS
    assert tree.root() == ROOTS[8] and len(tree) == 8
    assert [tree.root(2**level) for level in range(4)] == [hashes[0] for hashes in NODE_HASHES]


@pytest.mark.parametrize("index, size, proof", INCLUSION_PROOFS)
def test_known_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    assert MerkleTree(LEAVES).inclusion_proof(index, size) == proof
    assert MerkleTree(LEAVES[:size]).inclusion_proof(index) == proof


@pytest.mark.parametrize("old, new, proof", CONSISTENCY_PROOFS)
def test_known_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    assert MerkleTree(LEAVES).consistency_proof(old, new) == proof
    assert MerkleTree(LEAVES[:new]).consistency_proof(old) == proof


# --- the same bytes as ledger.merkle ---------------------------------------------------------------

def test_every_root_and_proof_of_every_size_to_70_matches_merkle() -> None:
    tree = grown_one_by_one(SMALL[:70])
    for size in range(71):
        leaves = SMALL[:size]
        assert tree.root(size) == merkle.root(leaves), size
        for index in range(size):
            assert tree.inclusion_proof(index, size) == merkle.inclusion_proof(index, leaves), (index, size)
        for old in range(size + 1):
            assert tree.consistency_proof(old, size) == merkle.consistency_proof(old, leaves), (old, size)


def test_a_tree_grown_as_it_is_asked_answers_like_one_built_at_once() -> None:
    """Appends and uneven extends interleaved with questions: each answer is the one for the leaves so far."""
    tree, chunks, at = MerkleTree(), [1, 2, 0, 5, 1, 8, 13, 3, 21, 16, 1], 0
    for chunk in chunks:
        tree.extend(SMALL[at:at + chunk])
        at += chunk
        assert len(tree) == at
        assert tree.root() == merkle.root(SMALL[:at])
        assert tree.leaf(at - 1) == SMALL[at - 1]
        assert tree.consistency_proof(1) == merkle.consistency_proof(1, SMALL[:at])
    assert [tree.root(size) for size in range(at + 1)] == [MerkleTree(SMALL[:at]).root(size) for size in range(at + 1)]


def test_random_proofs_between_1000_and_5000_leaves_match_merkle_and_verify() -> None:
    tree, rng = MerkleTree(LARGE), random.Random(17)
    for _ in range(40):
        size = rng.randint(1_000, 5_000)
        leaves = LARGE[:size]
        root = merkle.root(leaves)
        assert tree.root(size) == root
        index, old = rng.randrange(size), rng.randint(1, size)
        proof = tree.inclusion_proof(index, size)
        assert proof == merkle.inclusion_proof(index, leaves)
        verify_inclusion(index, size, LARGE[index], proof, root)
        proof = tree.consistency_proof(old, size)
        assert proof == merkle.consistency_proof(old, leaves)
        verify_consistency(old, size, tree.root(old), root, proof)


def test_the_edges_of_a_large_tree_match_merkle() -> None:
    """Powers of two and one either side, where the tree's right edge changes shape."""
    tree = MerkleTree(LARGE[:4_097])
    for size in (1_023, 1_024, 1_025, 4_095, 4_096, 4_097):
        leaves = LARGE[:size]
        for index in (0, 1, 511, 512, size // 2, size - 2, size - 1):
            assert tree.inclusion_proof(index, size) == merkle.inclusion_proof(index, leaves), (index, size)
        for old in (1, 2, 3, 512, 1_023, 1_024, 1_025, size - 1):
            if old <= size:
                assert tree.consistency_proof(old, size) == merkle.consistency_proof(old, leaves), (old, size)


# --- the empty tree and refusals -----------------------------------------------------------------

def test_the_empty_tree() -> None:
    tree = MerkleTree()
    assert (len(tree), tree.root(), tree.root(0), tree.consistency_proof(0), tree.consistency_proof(0, 0)) == (
        0, EMPTY_ROOT, EMPTY_ROOT, [], [])


@pytest.mark.parametrize("call, message", [
    (lambda t: t.root(9), "size 9 is outside 0..8"),
    (lambda t: t.root(-1), "size -1 is outside 0..8"),
    (lambda t: t.inclusion_proof(0, 9), "size 9 is outside 0..8"),
    (lambda t: t.inclusion_proof(8), "leaf index 8 is outside a tree of 8 leaves"),
    (lambda t: t.inclusion_proof(5, 5), "leaf index 5 is outside a tree of 5 leaves"),
    (lambda t: t.inclusion_proof(-1), "leaf index -1"),
    (lambda t: t.inclusion_proof(0, 0), "outside a tree of 0 leaves"),
    (lambda t: t.consistency_proof(1, 9), "new size 9 is outside 0..8"),
    (lambda t: t.consistency_proof(9), "old size 9 is outside 0..8"),
    (lambda t: t.consistency_proof(6, 5), "old size 6 is outside 0..5"),
    (lambda t: t.consistency_proof(-1, 5), "old size -1"),
    (lambda t: t.leaf(8), "leaf index 8 is outside a tree of 8 leaves"),
    (lambda t: MerkleTree().inclusion_proof(0), "outside a tree of 0 leaves"),
])
def test_sizes_and_indexes_out_of_range_are_proof_errors(call, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        call(MerkleTree(LEAVES))


@pytest.mark.parametrize("leaves, message", [
    ([LEAVES[0], b"abc"], "leaf 1 is 3 bytes"),
    ([None], "leaf 0 is NoneType"),
    (["x" * 32], "leaf 0 is str"),
    ([bytearray(31)], "leaf 0 is 31 bytes"),
])
def test_what_is_not_a_leaf_hash_is_refused_and_nothing_is_added(leaves: list, message: str) -> None:
    tree = MerkleTree(LEAVES[:3])
    with pytest.raises(ValueError, match=message):
        tree.extend(leaves)
    with pytest.raises(ValueError, match="leaf 0 is"):
        tree.append(leaves[-1])
    assert (len(tree), tree.root()) == (3, ROOTS[3])


def test_a_bytearray_leaf_is_kept_as_bytes() -> None:
    tree = MerkleTree([bytearray(LEAVES[0])])
    assert type(tree.leaf(0)) is bytes and tree.root() == ROOTS[1]
