"""Tests of ledger.checkpoint: the shared vector, every refusal, and Go's own verifier."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    LogSigner,
    key_id,
    open_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from ledger.errors import VerificationError
from ledger.merkle import (
    MemoryHashStore,
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
)

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
VECTOR = json.loads((VECTORS_DIR / "checkpoint.json").read_text("utf-8"))
MERKLE = json.loads((VECTORS_DIR / "merkle.json").read_text("utf-8"))
ORIGIN = VECTOR["origin"]
SEED = bytes.fromhex(VECTOR["log_key_seed"])
SIGNER = LogSigner(ORIGIN, SEED)
VKEY = VECTOR["verifier_key"]
NOTE = VECTOR["signed_note"]
ROOT = bytes.fromhex(VECTOR["root_hex"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signed(text: str, name: str = ORIGIN, seed: bytes = SEED) -> str:
    """A note over ``text`` signed by hand (to sign what LogSigner never would)."""
    key = nacl.signing.SigningKey(seed)
    signature = key.sign(text.encode("utf-8")).signature
    kid = key_id(name, bytes(key.verify_key))
    return f"{text}\n\u2014 {name} {b64(kid + signature)}\n"


# ---------------------------------------------------------------------------
# The shared vector, byte for byte


def test_vector_verifier_key() -> None:
    public_key = bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert SIGNER.public_key == public_key
    assert SIGNER.origin == ORIGIN
    assert SIGNER.verifier_key == verifier_key(ORIGIN, public_key) == VKEY
    assert key_id(ORIGIN, public_key).hex() == VKEY.split("+")[1]
    assert parse_verifier_key(VKEY) == (ORIGIN, key_id(ORIGIN, public_key), public_key)


def test_vector_note_is_signed_exactly() -> None:
    checkpoint = SIGNER.sign(VECTOR["size"], ROOT)
    assert checkpoint == Checkpoint(ORIGIN, VECTOR["size"], ROOT, NOTE)


def test_vector_note_opens() -> None:
    assert open_checkpoint(NOTE, VKEY) == Checkpoint(ORIGIN, 13, ROOT, NOTE)
    # the checkpoint vector signs the root of the Merkle vector's 13 leaves
    assert MERKLE["roots"]["13"] == VECTOR["root_hex"]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**63 - 1), st.binary(min_size=32, max_size=32))
def test_signed_checkpoints_open(size: int, root: bytes) -> None:
    checkpoint = SIGNER.sign(size, root)
    assert open_checkpoint(checkpoint.note, VKEY) == checkpoint


def test_other_signatures_are_ignored() -> None:
    witness = signed(NOTE.split("\n\n")[0] + "\n", "witness.example", bytes(range(32)))
    cosigned = NOTE + witness.split("\n\n")[1]
    assert open_checkpoint(cosigned, VKEY).size == 13
    # and the log's own line need not come first
    reordered = witness + NOTE.split("\n\n")[1]
    assert open_checkpoint(reordered, VKEY).root == ROOT


# ---------------------------------------------------------------------------
# Refusals

TEXT = NOTE.split("\n\n")[0] + "\n"
ROOT_LINE = b64(ROOT)
OTHER_SIGNER = LogSigner(ORIGIN, bytes(32))


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        pytest.param(NOTE.replace("\n13\n", "\n14\n"), "does not verify", id="size altered"),
        pytest.param(NOTE.replace(ROOT_LINE, b64(bytes(32))), "does not verify", id="root altered"),
        pytest.param(
            NOTE.replace(f"{ORIGIN}\n13", f"{ORIGIN}x\n13"), "does not verify", id="origin altered"
        ),
        pytest.param(
            OTHER_SIGNER.sign(13, ROOT).note, "not signed by the trusted key", id="wrong key"
        ),
        pytest.param(
            signed(TEXT, "other.example"), "not signed by the trusted key", id="other key name"
        ),
        pytest.param(signed(TEXT + "extension line\n"), "exactly three", id="extension line"),
        pytest.param(TEXT + "\n", "not signed", id="missing signature"),
        pytest.param(TEXT, "no blank line", id="no signature block"),
        pytest.param(NOTE[:-1], "does not end in a newline", id="no final newline"),
        pytest.param(NOTE.replace("\u2014", "-"), "Signature line 1", id="no em dash"),
        pytest.param(NOTE[:-2] + "\n", "Signature line 1", id="bad sig base64"),
        pytest.param(
            NOTE.replace(f"\u2014 {ORIGIN}", f"\u2014 {ORIGIN} "),
            "Signature line 1",
            id="two spaces",
        ),
        pytest.param(
            f"{TEXT}\n\u2014 {ORIGIN} {b64(key_id(ORIGIN, SIGNER.public_key) + bytes(10))}\n",
            "does not verify",
            id="short signature",
        ),
        pytest.param(
            signed(f"other.example\n13\n{ROOT_LINE}\n"), "is for the origin", id="origin not key"
        ),
        pytest.param(signed(f"{ORIGIN}\n013\n{ROOT_LINE}\n"), "tree size", id="leading zero"),
        pytest.param(signed(f"{ORIGIN}\n-1\n{ROOT_LINE}\n"), "tree size", id="negative size"),
        pytest.param(signed(f"{ORIGIN}\n2^5\n{ROOT_LINE}\n"), "tree size", id="size not decimal"),
        pytest.param(signed(f"{ORIGIN}\n{2**63}\n{ROOT_LINE}\n"), "tree size", id="size too big"),
        pytest.param(signed(f"{ORIGIN}\n13\n{ROOT.hex()}\n"), "48 bytes", id="root in hex"),
        pytest.param(
            signed(f"{ORIGIN}\n13\n{ROOT_LINE.rstrip('=')}\n"),
            "not standard base64",
            id="no padding",
        ),
        pytest.param(signed(f"{ORIGIN}\n13\n{b64(ROOT[:31])}\n"), "31 bytes", id="short root"),
        pytest.param(signed(f"{ORIGIN}\n13\n\n"), "is 0 bytes", id="empty root"),
        pytest.param(NOTE.replace("\n13\n", "\n1\t3\n"), "character '\\t'", id="control char"),
        pytest.param("", "no blank line", id="empty"),
    ],
)
def test_bad_checkpoints_are_refused(note: str, expected: str) -> None:
    with pytest.raises(VerificationError) as caught:
        open_checkpoint(note, VKEY)
    assert caught.value.code == "bad_checkpoint"
    assert expected in caught.value.detail


@pytest.mark.parametrize(
    ("vkey", "expected"),
    [
        pytest.param(ORIGIN, "is not of the form", id="name only"),
        pytest.param(VKEY.replace("+", " ", 1), "is not of the form", id="one plus"),
        pytest.param(" " + VKEY, "cannot name a note key", id="space in name"),
        pytest.param(VKEY.replace("+f62622f3+", "+f62622f+"), "not 8 hex digits", id="short id"),
        pytest.param(VKEY.replace("+f62622f3+", "+f62622f4+"), "give f62622f3", id="wrong id"),
        pytest.param(VKEY + "=", "not standard base64", id="bad base64"),
        pytest.param(
            verifier_key(ORIGIN, SIGNER.public_key).replace("+AS", "+Ai"),
            "is not an Ed25519 key",
            id="wrong algorithm",
        ),
        pytest.param(
            f"{ORIGIN}+{key_id(ORIGIN, bytes(31)).hex()}+{b64(bytes([1]) + bytes(31))}",
            "is 32 bytes",
            id="short key",
        ),
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str, expected: str) -> None:
    with pytest.raises(VerificationError) as caught:
        parse_verifier_key(vkey)
    assert caught.value.code == "bad_verifier_key"
    assert expected in caught.value.detail
    with pytest.raises(VerificationError):
        open_checkpoint(NOTE, vkey)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: LogSigner("", SEED), "cannot name a note key"),
        (lambda: LogSigner("gold trail", SEED), "cannot name a note key"),
        (lambda: LogSigner("gold+trail", SEED), "cannot name a note key"),
        (lambda: LogSigner("gold\ntrail", SEED), "cannot name a note key"),
        (lambda: LogSigner(ORIGIN, SEED[:31]), "not 31"),
        (lambda: SIGNER.sign(-1, ROOT), "not -1"),
        (lambda: SIGNER.sign(1, ROOT[:31]), "not 31"),
    ],
)
def test_signer_refuses_bad_input(make: Callable[[], object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        make()


# ---------------------------------------------------------------------------
# Go's golang.org/x/mod/sumdb note and tlog agree


def test_goverify_accepts_the_vectors(goverify: Any) -> None:
    leaves = MERKLE["leaf_hashes"]
    inclusions = [
        {"index": v["index"], "leaf_hash": leaves[v["index"]], "proof": v["proof"]}
        for v in MERKLE["inclusion"]
        if v["size"] == 13
    ]
    for v in MERKLE["consistency"]:
        if v["second"] != 13:
            continue
        consistency = {
            "old_size": v["first"],
            "old_root": MERKLE["roots"][str(v["first"])],
            "proof": v["proof"],
        }
        payload = {
            "vkey": VKEY,
            "checkpoint": NOTE,
            "inclusions": inclusions,
            "consistency": consistency,
        }
        assert goverify.run(payload) == f"ok {ORIGIN} 13"


def tree_payload(size: int) -> dict[str, Any]:
    """A random tree of ``size`` leaves, signed, with inclusion and consistency proofs."""
    rng = random.Random(size)
    leaves = [leaf_hash(rng.randbytes(rng.randint(0, 200))) for _ in range(size)]
    store = MemoryHashStore()
    signer = LogSigner(ORIGIN, rng.randbytes(32))
    checkpoint = signer.sign(size, append_leaves(store, 0, leaves))
    assert open_checkpoint(checkpoint.note, signer.verifier_key) == checkpoint
    indices = sorted({0, size - 1, *rng.sample(range(size), min(size, 30))})
    first = rng.randint(1, size)
    return {
        "vkey": signer.verifier_key,
        "checkpoint": checkpoint.note,
        "inclusions": [
            {
                "index": index,
                "leaf_hash": leaves[index].hex(),
                "proof": [h.hex() for h in inclusion_proof(store, index, size)],
            }
            for index in indices
        ],
        "consistency": {
            "old_size": first,
            "old_root": tree_root(store, first).hex(),
            "proof": [h.hex() for h in consistency_proof(store, first, size)],
        },
    }


@pytest.mark.parametrize("size", [1, 2, 3, 13, 64, 1000])
def test_goverify_accepts_our_checkpoints_and_proofs(goverify: Any, size: int) -> None:
    assert goverify.run(tree_payload(size)) == f"ok {ORIGIN} {size}"


def flip_first_hash(hashes: list[str]) -> None:
    hashes[0] = ("1" if hashes[0][0] == "0" else "0") + hashes[0][1:]


def tamper_inclusion(payload: dict[str, Any]) -> None:
    flip_first_hash(payload["inclusions"][-1]["proof"])


def tamper_consistency(payload: dict[str, Any]) -> None:
    flip_first_hash(payload["consistency"]["proof"])


def tamper_old_root(payload: dict[str, Any]) -> None:
    payload["consistency"]["old_root"] = "00" * 32


def tamper_size(payload: dict[str, Any]) -> None:
    payload["checkpoint"] = payload["checkpoint"].replace("\n1000\n", "\n1001\n")


@pytest.mark.parametrize(
    "tamper", [tamper_inclusion, tamper_consistency, tamper_old_root, tamper_size]
)
def test_goverify_refuses_tampering(
    goverify: Any, tamper: Callable[[dict[str, Any]], None]
) -> None:
    payload = tree_payload(1000)
    tamper(payload)
    assert goverify.run(payload).startswith("FAIL ")


# ---------------------------------------------------------------------------
# Every signature line is read, as Go's note.Open reads them (section 4: "it verifies with
# Go's golang.org/x/mod/sumdb/note unchanged"): a note Go refuses is refused here too, even
# when the trusted key's line comes first and verifies


def _witness(name: str, seed: bytes = bytes(range(32))) -> str:
    """One witness's signature line over the vector's text."""
    return signed(TEXT, name, seed).split("\n\n")[1]


def _unused_bit_set(signed_lines: str) -> str:
    """The last signature line with an unused bit of its base64 set: the same bytes to Go's
    decoder, but not their canonical encoding (a 68-byte value ends in one '=')."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    assert signed_lines.endswith("=\n") and not signed_lines.endswith("==\n")
    last = signed_lines[-3]
    return signed_lines[:-3] + alphabet[alphabet.index(last) ^ 1] + "=\n"


#: (note, the word our refusal holds or None for accepted): Go's note.Open agrees on each,
#: but for the log's own line, whose base64 must be canonical here
GO_PARITY = [
    pytest.param(NOTE + "garbage\n", "Signature line 2", id="malformed line after ours"),
    pytest.param(NOTE + "\u2014 w.example AAAA\n", "Signature line 2", id="short line after"),
    pytest.param(NOTE + "\u2014  AAAAAAAA\n", "Signature line 2", id="unnamed line after"),
    pytest.param(NOTE + _witness("w\u00a0x"), "Signature line 2", id="space in a witness name"),
    pytest.param(NOTE + _witness("w+x"), "Signature line 2", id="plus in a witness name"),
    pytest.param(NOTE + _witness("w.example") * 100, "101 signature lines", id="101 lines"),
    pytest.param(NOTE + _witness("w.example") * 99, None, id="100 lines"),
    pytest.param(NOTE + _witness("w\u00adx"), None, id="soft hyphen in a witness name"),
    pytest.param(NOTE + NOTE.split("\n\n")[1], None, id="our line twice"),
    pytest.param(NOTE + _unused_bit_set(_witness("w.example")), None, id="witness unused bit"),
    pytest.param(
        NOTE + _witness("w.example").replace("=\n", "A=\n"), "Signature line 2", id="not quanta"
    ),
    pytest.param(
        NOTE + _witness("w.example").replace("=\n", "\n"), "Signature line 2", id="no padding"
    ),
    pytest.param(_unused_bit_set(NOTE), "Signature line 1", id="our line's unused bit"),
]


@pytest.mark.parametrize(("note", "expected"), GO_PARITY)
def test_every_signature_line_is_read(note: str, expected: str | None) -> None:
    if expected is None:
        assert open_checkpoint(note, VKEY).size == 13
        return
    with pytest.raises(VerificationError) as caught:
        open_checkpoint(note, VKEY)
    assert caught.value.code == "bad_checkpoint"
    assert expected in caught.value.detail


@pytest.mark.parametrize(("note", "expected"), GO_PARITY)
def test_goverify_agrees_on_every_signature_line(
    goverify: Any, note: str, expected: str | None
) -> None:
    verdict = goverify.run({"vkey": VKEY, "checkpoint": note})
    stricter = expected is not None and expected.startswith("Signature line 1")
    assert verdict.startswith("ok ") == (expected is None or stricter), verdict
