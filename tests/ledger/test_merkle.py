"""RFC 6962 Merkle trees: the published test vectors, then properties over random trees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# The RFC 6962 test tree of certificate-transparency and transparency-dev/merkle:
# leaf inputs, the hashes of its perfect subtrees by level, the roots of sizes 0..8
# and the compact ranges of sizes 0..8 are from transparency-dev/merkle
# testonly/constants.go (LeafInputs, NodeHashes, RootHashes, CompactTrees).
LEAF_INPUTS = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"),
               h("5051525354555657"), h("606162636465666768696a6b6c6d6e6f")]
LEAVES = [leaf_hash(data) for data in LEAF_INPUTS]
NODE_HASHES = [
    [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
     h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
     h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
     h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
     h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
     h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
     h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
     h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")],
    [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
     h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
     h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
     h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")],
    [h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
     h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOTS = [  # by tree size, 0..8
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
NH = NODE_HASHES
COMPACT_TREES = [(), (NH[0][0],), (NH[1][0],), (NH[1][0], NH[0][2]), (NH[2][0],), (NH[2][0], NH[0][4]),
                 (NH[2][0], NH[1][2]), (NH[2][0], NH[1][2], NH[0][6]), (NH[3][0],)]

# Known proofs from transparency-dev/merkle proof/verify_test.go (inclusionProofs, consistencyProofs).
# That file numbers leaves from 1; the indices here are its leaf numbers minus one.
INCLUSION_PROOFS = [  # (index, size, proof)
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
CONSISTENCY_PROOFS = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")  # verify_test.go's sha256SomeHash


# --- the published vectors -----------------------------------------------------------------------

def test_empty_root_is_the_hash_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0] == root([])


def test_leaf_and_node_hashes_match_the_perfect_subtrees_of_the_test_tree() -> None:
    assert LEAVES == NODE_HASHES[0]
    for level, hashes in enumerate(NODE_HASHES[1:], start=1):
        below = NODE_HASHES[level - 1]
        assert hashes == [node_hash(below[2 * i], below[2 * i + 1]) for i in range(len(hashes))]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_sizes_0_to_8_match_the_vectors(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size]
    edge = CompactRange.from_leaves(LEAVES[:size])
    assert (edge.size, edge.root(), edge.hashes) == (size, ROOTS[size], COMPACT_TREES[size])


@pytest.mark.parametrize("index, size, proof", INCLUSION_PROOFS)
def test_known_inclusion_proofs_are_generated_and_verify(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(index, LEAVES[:size]) == proof
    verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@pytest.mark.parametrize("old, new, proof", CONSISTENCY_PROOFS)
def test_known_consistency_proofs_are_generated_and_verify(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(old, LEAVES[:new]) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize("index, size, proof", [p for p in INCLUSION_PROOFS if p[1] > 1])
def test_known_inclusion_proofs_fail_when_corrupted(index: int, size: int, proof: list[bytes]) -> None:
    """The probes of verify_test.go's corruptInclusionProof."""
    good, leaf = ROOTS[size], LEAVES[index]
    probes = [
        (index - 1, size, leaf, proof, good), (index + 1, size, leaf, proof, good),
        (index ^ 2, size, leaf, proof, good), (index, size * 2, leaf, proof, good),
        (index, size // 2, leaf, proof, good), (index, size, SOME_HASH, proof, good),
        (index, size, leaf, proof, EMPTY_ROOT), (index, size, leaf, proof, SOME_HASH),
        (index, size, leaf, [*proof, b""], good), (index, size, leaf, [*proof, good], good),
        (index, size, leaf, [b"", *proof], good), (index, size, leaf, [good, *proof], good),
        (index, size, leaf, proof[:-1], good),
    ]
    if len(proof) > 1:
        probes.append((index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], good))
    for i in range(len(proof)):
        probes.append((index, size, leaf, [*proof[:i], _flip(proof[i], 0, 8), *proof[i + 1:]], good))
    for probe in probes:
        with pytest.raises(ProofError):
            verify_inclusion(*probe)


@pytest.mark.parametrize("old, new, proof", [p for p in CONSISTENCY_PROOFS if p[2]])
def test_known_consistency_proofs_fail_when_corrupted(old: int, new: int, proof: list[bytes]) -> None:
    """The probes of verify_test.go's corruptConsistencyProof."""
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof), (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof), (old, new // 2, r1, r2, proof),
        (old, new, SOME_HASH, r2, proof), (old, new, r1, SOME_HASH, proof), (old, new, r2, r1, proof),
        (old, new, r1, r2, []), (old, new, r1, r2, [*proof, b""]), (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]), (old, new, r1, r2, [b"", *proof]), (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]), (old, new, r1, r2, [proof[0], *proof]), (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        probes.append((old, new, r1, r2, [*proof[:i], _flip(proof[i], 0, 16), *proof[i + 1:]]))
    for probe in probes:
        with pytest.raises(ProofError):
            verify_consistency(*probe)


# --- edge cases and bad arguments ----------------------------------------------------------------

def test_trivial_consistency_needs_an_empty_proof_and_the_right_roots() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert consistency_proof(0, LEAVES) == consistency_proof(8, LEAVES) == []
    with pytest.raises(ProofError, match="empty proof"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[5], [EMPTY_ROOT])
    with pytest.raises(ProofError, match="empty proof"):
        verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [EMPTY_ROOT])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    with pytest.raises(ProofError, match="cannot show"):
        verify_consistency(4, 5, ROOTS[4], ROOTS[5], [])


@pytest.mark.parametrize("call, message", [
    (lambda: verify_inclusion(0, 0, LEAVES[0], [], ROOTS[1]), "outside a tree of 0"),
    (lambda: verify_inclusion(8, 8, LEAVES[0], [], ROOTS[8]), "outside a tree of 8"),
    (lambda: verify_inclusion(-1, 8, LEAVES[0], [], ROOTS[8]), "outside a tree of 8"),
    (lambda: verify_inclusion(0, 8, b"short", [], ROOTS[8]), "the leaf is 5 bytes"),
    (lambda: verify_inclusion(0, 8, LEAVES[0], [], b""), "the root is 0 bytes"),
    (lambda: verify_inclusion(0, 8, LEAVES[0], [ROOTS[1], "not bytes"], ROOTS[8]), "proof hash 1 is str"),
    (lambda: verify_inclusion(0, 1, LEAVES[0], [ROOTS[1]], ROOTS[1]), "more than leaf 0 of 1 needs"),
    (lambda: verify_inclusion(0, 8, LEAVES[0], [ROOTS[1]], ROOTS[8]), "fewer than leaf 0 of 8 needs"),
    (lambda: verify_inclusion(0, 1, LEAVES[0], [], ROOTS[2]), "leads to root 6e340b9c"),
    (lambda: verify_consistency(5, 4, ROOTS[5], ROOTS[4], []), "old size 5 is not within 0..4"),
    (lambda: verify_consistency(-1, 4, ROOTS[0], ROOTS[4], []), "old size -1"),
    (lambda: verify_consistency(2, 5, ROOTS[2][:31], ROOTS[5], []), "the old root is 31 bytes"),
    (lambda: verify_consistency(2, 5, ROOTS[2], ROOTS[5] + b"\x00", []), "the new root is 33 bytes"),
    (lambda: verify_consistency(2, 5, ROOTS[2], ROOTS[5], [b"x" * 32] * 9), "more than sizes 2 to 5 need"),
    (lambda: verify_consistency(2, 5, ROOTS[2], ROOTS[5], [b"x" * 32]), "fewer than sizes 2 to 5 need"),
    (lambda: verify_consistency(6, 8, ROOTS[5], ROOTS[8], CONSISTENCY_PROOFS[2][2]), "to old root"),
    (lambda: verify_consistency(2, 5, ROOTS[2], ROOTS[4], CONSISTENCY_PROOFS[3][2]), "to new root"),
])
def test_bad_proofs_and_arguments_are_refused_with_a_reason(call, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: inclusion_proof(8, LEAVES), "leaf index 8 is outside a tree of 8 leaves"),
    (lambda: inclusion_proof(-1, LEAVES), "leaf index -1"),
    (lambda: inclusion_proof(0, []), "outside a tree of 0 leaves"),
    (lambda: consistency_proof(9, LEAVES), "old size 9 is outside 0..8"),
    (lambda: consistency_proof(-1, LEAVES), "old size -1"),
    (lambda: root([*LEAVES[:3], b"abc"]), "leaf 3 is 3 bytes"),
    (lambda: root([None]), "leaf 0 is NoneType"),
    (lambda: root(["x" * 32]), "leaf 0 is str"),
    (lambda: inclusion_proof(0, [*LEAVES, LEAF_INPUTS[3]]), "leaf 8 is 2 bytes"),
    (lambda: CompactRange().append(b"\x00" * 31), "the leaf is 31 bytes"),
])
def test_bad_arguments_to_builders_are_value_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_large_ragged_tree_agrees_with_its_compact_range_and_proofs() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(2**16 + 3)]
    expected = root(leaves)
    assert CompactRange.from_leaves(leaves).root() == expected
    verify_inclusion(2**16 + 2, len(leaves), leaves[-1], inclusion_proof(2**16 + 2, leaves), expected)
    old = 40_000
    verify_consistency(old, len(leaves), root(leaves[:old]), expected, consistency_proof(old, leaves))


# --- properties over random trees ----------------------------------------------------------------

MAX_SIZE = 300
POOL = [leaf_hash(i.to_bytes(2, "big")) for i in range(MAX_SIZE)]
ROOT_OF = [root(POOL[:n]) for n in range(MAX_SIZE + 1)]


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def consistency_cases(draw: st.DrawFn, smallest_old: int = 0) -> tuple[int, int]:
    new = draw(st.integers(max(1, smallest_old), MAX_SIZE))
    return draw(st.integers(smallest_old, new)), new


@given(inclusion_cases())
@settings(max_examples=300, deadline=None)
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    index, size = case
    verify_inclusion(index, size, POOL[index], inclusion_proof(index, POOL[:size]), ROOT_OF[size])


@given(consistency_cases())
@settings(max_examples=300, deadline=None)
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    old, new = case
    verify_consistency(old, new, ROOT_OF[old], ROOT_OF[new], consistency_proof(old, POOL[:new]))


@given(inclusion_cases(), st.data())
@settings(max_examples=300, deadline=None)
def test_flipping_any_byte_breaks_an_inclusion_proof(case: tuple[int, int], data: st.DataObject) -> None:
    index, size = case
    leaf, proof, good = POOL[index], inclusion_proof(index, POOL[:size]), ROOT_OF[size]
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 leaf, -1 root, else proof[i])")
    at, mask = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(1, 255), label="mask")
    if target == -2:
        leaf = _flip(leaf, at, mask)
    elif target == -1:
        good = _flip(good, at, mask)
    else:
        proof[target] = _flip(proof[target], at, mask)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, good)


@given(consistency_cases(smallest_old=1), st.data())
@settings(max_examples=300, deadline=None)
def test_flipping_any_byte_breaks_a_consistency_proof(case: tuple[int, int], data: st.DataObject) -> None:
    """From size 0 only the old root is checked, so the old size here starts at 1."""
    old, new = case
    r1, r2, proof = ROOT_OF[old], ROOT_OF[new], consistency_proof(old, POOL[:new])
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 old root, -1 new root, else proof[i])")
    at, mask = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(1, 255), label="mask")
    if target == -2:
        r1 = _flip(r1, at, mask)
    elif target == -1:
        r2 = _flip(r2, at, mask)
    else:
        proof[target] = _flip(proof[target], at, mask)
    with pytest.raises(ProofError):
        verify_consistency(old, new, r1, r2, proof)


def test_a_compact_range_has_the_root_of_its_leaves_at_every_size() -> None:
    edge = CompactRange()
    assert (edge.size, edge.root()) == (0, EMPTY_ROOT)
    for n, leaf in enumerate(POOL, start=1):
        edge.append(leaf)
        assert (edge.size, edge.root(), len(edge.hashes)) == (n, ROOT_OF[n], bin(n).count("1"))


@given(st.lists(st.binary(max_size=8), max_size=MAX_SIZE))
@settings(max_examples=200, deadline=None)
def test_a_compact_range_of_any_leaves_has_their_root(data: list[bytes]) -> None:
    leaves = [leaf_hash(d) for d in data]
    assert CompactRange.from_leaves(leaves).root() == root(leaves)


def _flip(value: bytes, at: int, mask: int) -> bytes:
    """``value`` with byte ``at`` XORed by ``mask``."""
    return value[:at] + bytes([value[at] ^ mask]) + value[at + 1:]
