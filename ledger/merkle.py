"""The log's Merkle tree: RFC 9162 (section 2.1) hashes, proofs and their verification.

The tree lives in a ``HashStore`` as the hashes of its complete subtrees, each keyed
``(level, index)``: the subtree of ``2**level`` leaves that starts at leaf ``index * 2**level``
(level 0 holds the leaf hashes). Appending reads the O(log n) subtrees on the right edge and
writes the ones the new leaves complete; a root or a proof reads O(log n) hashes, rebuilding
only its one incomplete right-edge subtree from complete ones. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.errors import VerificationError
from ledger.protocol import sha256

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of a leaf: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


class HashStore(Protocol):
    """Where the tree's complete subtree hashes live, keyed (level, index)."""

    def read_hashes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return the hashes stored under ``keys``, in the same order.

        Raises whatever the store raises for a key it does not hold.
        """
        ...

    def write_hashes(self, items: Sequence[tuple[int, int, bytes]]) -> None:
        """Store each ``(level, index, hash)``."""
        ...


class MemoryHashStore:
    """A HashStore in a dict that counts its reads and writes (tests, offline use)."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[int, int], bytes] = {}
        self.reads = 0
        self.writes = 0
        self.read_calls = 0

    def read_hashes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return the hashes stored under ``keys``, in the same order.

        Raises KeyError for a key that is not stored.
        """
        self.read_calls += 1
        self.reads += len(keys)
        return [self.hashes[key] for key in keys]

    def write_hashes(self, items: Sequence[tuple[int, int, bytes]]) -> None:
        """Store each ``(level, index, hash)``."""
        self.writes += len(items)
        for level, index, digest in items:
            self.hashes[(level, index)] = digest


# ---------------------------------------------------------------------------
# Subtrees: a span [begin, end) of leaves, as RFC 9162 splits them


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (which is at least 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _span_keys(begin: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees that make up leaves [begin, end), leftmost (largest) first.

    ``begin`` is a multiple of the largest power of two not above ``end - begin``, as it is
    for every subtree RFC 9162 names.
    """
    keys = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        keys.append((level, begin >> level))
        begin += 1 << level
    return keys


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a subtree from its complete subtrees' hashes, leftmost (largest) first."""
    digest = hashes[-1]
    for left in reversed(hashes[:-1]):
        digest = node_hash(left, digest)
    return digest


def _span_hashes(store: HashStore, spans: Sequence[tuple[int, int]]) -> list[bytes]:
    """The hashes of the subtrees over the given leaf spans, read in one call."""
    parts = [_span_keys(begin, end) for begin, end in spans]
    keys = [key for part in parts for key in part]
    if not keys:
        return []
    read = store.read_hashes(keys)
    hashes = []
    start = 0
    for part in parts:
        hashes.append(_fold(read[start : start + len(part)]))
        start += len(part)
    return hashes


def _inclusion_spans(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form the audit path of leaf ``index``, lowest level first."""
    spans = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            spans.append((begin + k, end))
            end = begin + k
        else:
            spans.append((begin, begin + k))
            begin += k
    spans.reverse()
    return spans


def _consistency_spans(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form the consistency proof first -> second, lowest first."""
    spans = []
    begin, end, whole = 0, second, True
    while end != first:
        k = _split(end - begin)
        if first - begin <= k:
            spans.append((begin + k, end))
            end = begin + k
        else:
            spans.append((begin, begin + k))
            begin += k
            whole = False
    if not whole:
        spans.append((begin, end))
    spans.reverse()
    return spans


def _check_size(size: int, tree_size: int | None) -> None:
    if size < 0:
        raise ValueError(f"A tree size cannot be negative ({size}).")
    if tree_size is not None and size > tree_size:
        raise ValueError(f"The size {size} is beyond the log, which holds {tree_size} leaves.")


# ---------------------------------------------------------------------------
# Building and reading the tree


def frontier_keys(size: int) -> list[tuple[int, int]]:
    """The (level, index) keys of the complete subtrees that make up the first ``size``
    leaves, largest first: the tree's right edge, all that ``append_leaves`` reads."""
    return _span_keys(0, size)


def append_leaves(store: HashStore, size: int, leaf_hashes: Sequence[bytes]) -> bytes:
    """Append leaf hashes to the tree of ``size`` leaves in ``store``; return the new root.

    Reads the right edge in one call and writes every newly completed subtree in one call.
    Raises ValueError if ``size`` is negative or a leaf hash is not 32 bytes.
    """
    _check_size(size, None)
    for position, digest in enumerate(leaf_hashes):
        if len(digest) != HASH_SIZE:
            raise ValueError(f"Leaf hash {position} is {len(digest)} bytes, not {HASH_SIZE}.")
    keys = frontier_keys(size)
    read = store.read_hashes(keys) if keys else []
    frontier = [(level, digest) for (level, _), digest in zip(keys, read, strict=True)]
    written: list[tuple[int, int, bytes]] = []
    for index, digest in enumerate(leaf_hashes, start=size):
        level = 0
        written.append((level, index, digest))
        while frontier and frontier[-1][0] == level:
            digest = node_hash(frontier.pop()[1], digest)
            level += 1
            index >>= 1
            written.append((level, index, digest))
        frontier.append((level, digest))
    if written:
        store.write_hashes(written)
    return _fold([digest for _, digest in frontier]) if frontier else EMPTY_ROOT


def tree_root(store: HashStore, size: int) -> bytes:
    """The root of the first ``size`` leaves in ``store`` (EMPTY_ROOT for none).

    Raises ValueError if ``size`` is negative.
    """
    _check_size(size, None)
    if size == 0:
        return EMPTY_ROOT
    return _span_hashes(store, [(0, size)])[0]


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 Merkle Tree Hash computed from all the leaf hashes (reference, O(n))."""
    size = len(leaf_hashes)
    if size == 0:
        return EMPTY_ROOT
    if size == 1:
        return leaf_hashes[0]
    k = _split(size)
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


def inclusion_proof(
    store: HashStore, index: int, size: int, *, tree_size: int | None = None
) -> list[bytes]:
    """The RFC 9162 audit path of leaf ``index`` in the tree of ``size`` leaves, lowest first.

    ``tree_size``, when given, is how many leaves the store holds (the store cannot tell).
    Raises ValueError unless 0 <= index < size <= tree_size.
    """
    _check_size(size, tree_size)
    if not 0 <= index < size:
        raise ValueError(f"The leaf index {index} is not in a tree of {size} leaves.")
    return _span_hashes(store, _inclusion_spans(index, size))


def consistency_proof(
    store: HashStore, first: int, second: int, *, tree_size: int | None = None
) -> list[bytes]:
    """The RFC 9162 consistency proof from tree size ``first`` to ``second``, lowest first.

    Empty when ``first == second``. ``tree_size``, when given, is how many leaves the store
    holds (the store cannot tell). Raises ValueError unless 1 <= first <= second <= tree_size.
    """
    _check_size(second, tree_size)
    if not 1 <= first <= second:
        raise ValueError(
            f"A consistency proof needs 1 <= first <= second; got first={first}, second={second}."
        )
    return _span_hashes(store, _consistency_spans(first, second))


# ---------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)


def _bad_proof(detail: str) -> VerificationError:
    return VerificationError("bad_proof", detail)


def _check_lengths(named: Sequence[tuple[str, bytes]], proof: Sequence[bytes]) -> None:
    """Refuse any named hash or proof hash that is not 32 bytes long."""
    numbered = [(f"proof hash {position}", digest) for position, digest in enumerate(proof)]
    for name, digest in [*named, *numbered]:
        if len(digest) != HASH_SIZE:
            raise _bad_proof(f"The {name} is {len(digest)} bytes long, not {HASH_SIZE}.")


def _shift_to_set_bit(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift both until the low bit of ``fn`` is set or ``fn`` is 0."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises VerificationError ``bad_proof`` saying which check failed: index out of range, a
    hash of the wrong length, too many or too few hashes, or the root reached.
    """
    if not 0 <= index < size:
        raise _bad_proof(f"The leaf index {index} is not in a tree of {size} leaves.")
    _check_lengths([("leaf hash", leaf), ("root", root)], proof)
    expected = len(_inclusion_spans(index, size))
    wrong_length = _bad_proof(
        f"The inclusion proof for leaf {index} in a tree of {size} leaves has "
        f"{len(proof)} hashes; it should have {expected}."
    )
    fn, sn, digest = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise wrong_length
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            fn, sn = _shift_to_set_bit(fn, sn)
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise wrong_length
    if digest != root:
        raise _bad_proof(
            f"The inclusion proof for leaf {index} in a tree of {size} leaves leads to root "
            f"{digest.hex()}, not to the expected {root.hex()}."
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``first`` leaves with ``first_root`` is a prefix of ``second``'s.

    Raises VerificationError ``bad_proof`` saying which check failed: sizes out of order, a
    hash of the wrong length, too many or too few hashes, or either root reached.
    """
    if not 1 <= first <= second:
        raise _bad_proof(
            f"A consistency proof needs 1 <= first <= second; got first={first}, second={second}."
        )
    _check_lengths([("first root", first_root), ("second root", second_root)], proof)
    expected = len(_consistency_spans(first, second))
    wrong_length = _bad_proof(
        f"The consistency proof from {first} to {second} leaves has {len(proof)} hashes; "
        f"it should have {expected}."
    )
    if first == second:
        if proof:
            raise wrong_length
        if first_root != second_root:
            raise _bad_proof(
                f"Two roots for the same tree size {first}: {first_root.hex()} and "
                f"{second_root.hex()}."
            )
        return
    if not proof:
        raise wrong_length
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first_digest = second_digest = path[0]
    for sibling in path[1:]:
        if sn == 0:
            raise wrong_length
        if fn & 1 or fn == sn:
            first_digest = node_hash(sibling, first_digest)
            second_digest = node_hash(sibling, second_digest)
            fn, sn = _shift_to_set_bit(fn, sn)
        else:
            second_digest = node_hash(second_digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise wrong_length
    if first_digest != first_root:
        raise _bad_proof(
            f"The consistency proof from {first} to {second} leaves leads to the first root "
            f"{first_digest.hex()}, not to the expected {first_root.hex()}."
        )
    if second_digest != second_root:
        raise _bad_proof(
            f"The consistency proof from {first} to {second} leaves leads to the second root "
            f"{second_digest.hex()}, not to the expected {second_root.hex()}."
        )
