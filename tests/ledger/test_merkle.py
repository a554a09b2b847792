"""Tests of ledger.merkle: the shared vectors, RFC 9162 reference proofs, tampering, costs."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    MemoryHashStore,
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from ledger.protocol import sha256

VECTORS = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "merkle.json").read_text("utf-8")
)
EXAMPLES = 1000 if os.environ.get("GOLDTRAIL_LONG") == "1" else 100
MAX_SIZE = 3000
LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(MAX_SIZE)]


@functools.cache
def full_store() -> MemoryHashStore:
    """A store holding all of LEAVES; proofs for any size up to MAX_SIZE read from it."""
    store = MemoryHashStore()
    append_leaves(store, 0, LEAVES)
    return store


def flipped(proof: Sequence[bytes], position: int, bit: int) -> list[bytes]:
    """The proof with one bit of one hash flipped."""
    changed = bytearray(proof[position])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:position], bytes(changed), *proof[position + 1 :]]


# ---------------------------------------------------------------------------
# RFC 9162 section 2.1, transcribed recursively over the whole leaf list


def largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = largest_power_below(len(leaves))
    if m < k:
        return [*reference_path(m, leaves[:k]), root_from_leaves(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), root_from_leaves(leaves[:k])]


def reference_proof(m: int, leaves: Sequence[bytes], whole: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b), and PROOF(m, D[n]) with b = true."""
    if m == len(leaves):
        return [] if whole else [root_from_leaves(leaves)]
    k = largest_power_below(len(leaves))
    if m <= k:
        return [*reference_proof(m, leaves[:k], whole), root_from_leaves(leaves[k:])]
    return [*reference_proof(m - k, leaves[k:], False), root_from_leaves(leaves[:k])]


# ---------------------------------------------------------------------------
# The shared vectors, byte for byte


def hexes(hashes: Sequence[bytes]) -> list[str]:
    return [digest.hex() for digest in hashes]


VECTOR_LEAVES = [leaf_hash(data.encode("utf-8")) for data in VECTORS["leaf_data"]]
VECTOR_ROOTS = {int(size): bytes.fromhex(root) for size, root in VECTORS["roots"].items()}


def vector_store() -> MemoryHashStore:
    store = MemoryHashStore()
    append_leaves(store, 0, VECTOR_LEAVES)
    return store


def test_hash_functions() -> None:
    assert EMPTY_ROOT == sha256(b"") == root_from_leaves([])
    assert leaf_hash(b"x") == sha256(b"\x00x")
    assert node_hash(b"l", b"r") == sha256(b"\x01lr")


def test_vector_leaf_hashes() -> None:
    assert hexes(VECTOR_LEAVES) == VECTORS["leaf_hashes"]


def test_vector_roots() -> None:
    assert sorted(VECTOR_ROOTS) == list(range(len(VECTOR_LEAVES) + 1))
    one_by_one = MemoryHashStore()
    for size, digest in enumerate(VECTOR_LEAVES):
        assert append_leaves(one_by_one, size, [digest]) == VECTOR_ROOTS[size + 1]
    at_once = vector_store()
    assert at_once.hashes == one_by_one.hashes
    for size, root in VECTOR_ROOTS.items():
        assert tree_root(at_once, size) == root
        assert root_from_leaves(VECTOR_LEAVES[:size]) == root


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion"], ids=lambda v: f"{v['index']}-in-{v['size']}"
)
def test_vector_inclusion(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    proof = inclusion_proof(vector_store(), index, size)
    assert hexes(proof) == vector["proof"]
    verify_inclusion(VECTOR_LEAVES[index], index, size, proof, VECTOR_ROOTS[size])


@pytest.mark.parametrize(
    "vector", VECTORS["consistency"], ids=lambda v: f"{v['first']}-to-{v['second']}"
)
def test_vector_consistency(vector: dict[str, Any]) -> None:
    first, second = vector["first"], vector["second"]
    proof = consistency_proof(vector_store(), first, second)
    assert hexes(proof) == vector["proof"]
    verify_consistency(first, second, VECTOR_ROOTS[first], VECTOR_ROOTS[second], proof)


# ---------------------------------------------------------------------------
# Every proof of every small tree, and random ones of larger trees


def test_every_proof_of_small_trees() -> None:
    store = full_store()
    for size in range(1, 40):
        leaves = LEAVES[:size]
        root = root_from_leaves(leaves)
        assert tree_root(store, size) == root
        for index in range(size):
            proof = inclusion_proof(store, index, size)
            assert proof == reference_path(index, leaves)
            verify_inclusion(leaves[index], index, size, proof, root)
        for first in range(1, size + 1):
            proof = consistency_proof(store, first, size)
            assert proof == reference_proof(first, leaves)
            verify_consistency(first, size, root_from_leaves(leaves[:first]), root, proof)


def refused(check: Callable[[], None]) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        check()
    assert caught.value.code == "bad_proof"
    return caught.value


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data())
def test_inclusion_proofs(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), "size")
    index = data.draw(st.integers(0, size - 1), "index")
    leaves = LEAVES[:size]
    root = root_from_leaves(leaves)
    leaf = leaves[index]
    proof = inclusion_proof(full_store(), index, size)
    assert proof == reference_path(index, leaves)
    verify_inclusion(leaf, index, size, proof, root)

    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), "position")
        bit = data.draw(st.integers(0, 255), "bit")
        refused(lambda: verify_inclusion(leaf, index, size, flipped(proof, position, bit), root))
    other_index = data.draw(st.integers(0, size).filter(lambda i: i != index), "other index")
    refused(lambda: verify_inclusion(leaf, other_index, size, proof, root))
    # The size is bound by the root signed with it: a proof for (index, size) must not pass
    # for another size with that size's root. (With the same root it can: RFC 9162 paths of
    # the same shape do not say how big the tree is.)
    other_size = data.draw(
        st.integers(index + 1, MAX_SIZE).filter(lambda s: s != size), "other size"
    )
    other_root = root_from_leaves(LEAVES[:other_size])
    refused(lambda: verify_inclusion(leaf, index, other_size, proof, other_root))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data())
def test_consistency_proofs(data: st.DataObject) -> None:
    second = data.draw(st.integers(1, MAX_SIZE), "second")
    first = data.draw(st.integers(1, second), "first")
    leaves = LEAVES[:second]
    first_root, second_root = root_from_leaves(leaves[:first]), root_from_leaves(leaves)
    proof = consistency_proof(full_store(), first, second)
    assert proof == reference_proof(first, leaves)
    verify_consistency(first, second, first_root, second_root, proof)

    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), "position")
        bit = data.draw(st.integers(0, 255), "bit")
        changed = flipped(proof, position, bit)
        refused(lambda: verify_consistency(first, second, first_root, second_root, changed))
    other_first = data.draw(st.integers(1, second).filter(lambda f: f != first), "other first")
    other_first_root = root_from_leaves(leaves[:other_first])
    refused(lambda: verify_consistency(other_first, second, other_first_root, second_root, proof))
    other_second = data.draw(
        st.integers(first, MAX_SIZE).filter(lambda s: s != second), "other second"
    )
    other_second_root = root_from_leaves(LEAVES[:other_second])
    refused(lambda: verify_consistency(first, other_second, first_root, other_second_root, proof))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=15))
def test_appends_in_batches(batches: list[int]) -> None:
    store = MemoryHashStore()
    size = 0
    for batch in batches:
        new = LEAVES[size : size + batch]
        root = append_leaves(store, size, new)
        size += len(new)
        assert root == root_from_leaves(LEAVES[:size]) == tree_root(store, size)
    # exactly the complete subtrees of the first `size` leaves, as one big append writes them
    assert store.hashes == {
        (level, index): digest
        for (level, index), digest in full_store().hashes.items()
        if (index + 1) << level <= size
    }


# ---------------------------------------------------------------------------
# Costs: O(log n) hashes read per append and per proof, in one read call


def test_reads_and_writes_grow_with_log_n() -> None:
    store = MemoryHashStore()

    def cost(function: Callable[..., object], *args: Any) -> tuple[int, int, int]:
        """Hashes read, hashes written and read calls made by ``function(store, *args)``."""
        before = (store.reads, store.writes, store.read_calls)
        function(store, *args)
        return store.reads - before[0], store.writes - before[1], store.read_calls - before[2]

    size = 0
    worst: dict[int, int] = {}
    for bits in (10, 14, 17):
        # 2**bits - 1 leaves: every bit set, so the right edge has the most subtrees
        target = (1 << bits) - 1
        append_leaves(store, size, [leaf_hash(b"%d" % i) for i in range(size, target)])
        size = target
        samples = sorted({0, 1, size // 3, size // 2, size - 2, size - 1})
        costs = [cost(tree_root, size)]
        costs += [cost(inclusion_proof, index, size) for index in samples]
        costs += [cost(consistency_proof, first, size) for first in samples if first > 0]
        for reads, writes, calls in costs:
            assert reads <= 2 * bits and writes == 0 and calls <= 1
        worst[bits] = max(reads for reads, _, _ in costs)

        # one leaf completes every subtree on the right edge: the dearest single append
        reads, writes, calls = cost(append_leaves, size, [leaf_hash(b"x")])
        assert reads == bits and writes == bits + 1 and calls == 1
        size += 1
        reads, writes, calls = cost(append_leaves, size, LEAVES[:100])
        assert reads == 1 and writes < 2 * 100 and calls == 1
        size += 100
    # 128 times the leaves, well under twice the reads
    assert worst[17] < 2 * worst[10]


# ---------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s: inclusion_proof(s, 13, 13), "not in a tree of 13"),
        (lambda s: inclusion_proof(s, -1, 13), "not in a tree of 13"),
        (lambda s: inclusion_proof(s, 0, 0), "not in a tree of 0"),
        (lambda s: inclusion_proof(s, 0, -1), "negative"),
        (lambda s: inclusion_proof(s, 0, 14, tree_size=13), "holds 13 leaves"),
        (lambda s: consistency_proof(s, 0, 13), "1 <= first <= second"),
        (lambda s: consistency_proof(s, 5, 4), "1 <= first <= second"),
        (lambda s: consistency_proof(s, 1, 14, tree_size=13), "holds 13 leaves"),
        (lambda s: tree_root(s, -1), "negative"),
        (lambda s: append_leaves(s, -1, []), "negative"),
        (lambda s: append_leaves(s, 13, [bytes(32), b"short"]), "Leaf hash 1 is 5 bytes"),
    ],
)
def test_bad_arguments_raise_value_error(
    make: Callable[[MemoryHashStore], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(vector_store())


def test_empty_tree_and_empty_appends() -> None:
    store = MemoryHashStore()
    assert tree_root(store, 0) == EMPTY_ROOT == append_leaves(store, 0, [])
    assert store.read_calls == 0 and store.writes == 0
    assert consistency_proof(vector_store(), 13, 13) == []


def test_inclusion_refusals_say_what_is_wrong() -> None:
    root, leaf = VECTOR_ROOTS[13], VECTOR_LEAVES[5]
    proof = inclusion_proof(vector_store(), 5, 13)
    assert (
        "leaf index 13 is not in a tree of 13"
        in refused(lambda: verify_inclusion(leaf, 13, 13, proof, root)).detail
    )
    assert (
        "has 5 hashes; it should have 4"
        in refused(lambda: verify_inclusion(leaf, 5, 13, [*proof, proof[0]], root)).detail
    )
    assert (
        "has 3 hashes; it should have 4"
        in refused(lambda: verify_inclusion(leaf, 5, 13, proof[:3], root)).detail
    )
    assert (
        "proof hash 2 is 31 bytes long"
        in refused(
            lambda: verify_inclusion(leaf, 5, 13, [*proof[:2], proof[2][:31], proof[3]], root)
        ).detail
    )
    assert (
        "leaf hash is 6 bytes long"
        in refused(lambda: verify_inclusion(b"leaf-5", 5, 13, proof, root)).detail
    )
    detail = refused(lambda: verify_inclusion(VECTOR_LEAVES[6], 5, 13, proof, root)).detail
    assert f"not to the expected {root.hex()}" in detail


def test_consistency_refusals_say_what_is_wrong() -> None:
    r5, r13 = VECTOR_ROOTS[5], VECTOR_ROOTS[13]
    proof = consistency_proof(vector_store(), 5, 13)
    assert (
        "1 <= first <= second" in refused(lambda: verify_consistency(13, 5, r13, r5, proof)).detail
    )
    assert "1 <= first <= second" in refused(lambda: verify_consistency(0, 5, r13, r5, [])).detail
    assert (
        f"has 0 hashes; it should have {len(proof)}"
        in refused(lambda: verify_consistency(5, 13, r5, r13, [])).detail
    )
    assert (
        f"has {len(proof) + 1} hashes"
        in refused(lambda: verify_consistency(5, 13, r5, r13, [*proof, r5])).detail
    )
    assert (
        "has 1 hashes; it should have 0"
        in refused(lambda: verify_consistency(5, 5, r5, r5, [r5])).detail
    )
    assert (
        "Two roots for the same tree size 5"
        in refused(lambda: verify_consistency(5, 5, r5, r13, [])).detail
    )
    detail = refused(lambda: verify_consistency(5, 13, r13, r13, proof)).detail
    assert "leads to the first root" in detail and f"not to the expected {r13.hex()}" in detail
    detail = refused(lambda: verify_consistency(5, 13, r5, r5, proof)).detail
    assert "leads to the second root" in detail and f"not to the expected {r5.hex()}" in detail
