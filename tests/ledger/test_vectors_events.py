"""The event vectors of ``shared/vectors/events.json``, every field byte for byte.

PROTOCOL.md: "``shared/vectors/`` holds test vectors made by an independent implementation:
the project's tests reproduce every one of them byte for byte." Each vector gives an
envelope and what sections 1 to 3 derive from it: ``canonical_body`` (RFC 8785),
``event_id`` (SHA-256 of it), ``signing_message_hex`` (section 2's message, bound to the
vectors' origin), ``canonical_envelope`` (the leaf data) and ``leaf_hash``. The keys are
given as Ed25519 seeds and RFC 8032 signatures are deterministic, so the project's own
signer must reproduce every signature too. (``tests/api/test_conformance_encoding_log.py``
posts the same envelopes to a server.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ledger.errors import SignatureError
from ledger.events import check_body
from ledger.merkle import leaf_hash
from ledger.protocol import (
    body_digest,
    canonical,
    canonical_reference,
    event_id,
    parse_strict,
    public_key_hex,
    sha256,
    sign_body,
    signing_key_from_seed,
    signing_message,
    verify_signature,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "events.json"
#: read by the strict reader of section 1: the vector file itself is acceptable JSON
EVENTS: dict[str, Any] = parse_strict(VECTORS_FILE.read_bytes())
ORIGIN: str = EVENTS["origin"]
KEYS: dict[str, nacl.signing.SigningKey] = {
    name: signing_key_from_seed(seed) for name, seed in EVENTS["keys"].items()
}
VECTORS: list[dict[str, Any]] = EVENTS["vectors"]


def test_the_seeds_are_the_keys_the_vectors_use() -> None:
    registrar, coop = public_key_hex(KEYS["registrar_seed"]), public_key_hex(KEYS["coop_seed"])
    # seq 0: the registrar registers itself with its own key (section 3)
    seq0 = VECTORS[0]["envelope"]
    assert seq0["body"]["key"] == seq0["signature"]["key"] == registrar
    # the cooperative's key, as registered, signs its lot
    assert VECTORS[1]["envelope"]["body"]["key"] == coop
    assert VECTORS[2]["envelope"]["signature"]["key"] == coop
    assert {v["envelope"]["signature"]["key"] for v in VECTORS} == {registrar, coop}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["title"] for v in VECTORS])
def test_every_event_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    envelope = vector["envelope"]
    body = envelope["body"]
    check_body(body)  # a valid body of section 5

    # section 1: the canonical body, by the fast path and by the reference package
    assert canonical(body) == vector["canonical_body"].encode("utf-8")
    assert canonical_reference(body) == vector["canonical_body"].encode("utf-8")
    # section 2: event_id = hex(SHA-256(JCS(body)))
    assert event_id(body) == vector["event_id"]
    assert sha256(vector["canonical_body"].encode("utf-8")).hex() == vector["event_id"]
    # section 2: the message, bound to the vectors' log
    digest = body_digest(body)
    message = signing_message(ORIGIN, digest)
    assert message.hex() == vector["signing_message_hex"]
    assert message == b"goldtrail/v1/event\n" + ORIGIN.encode("utf-8") + b"\n" + digest
    # the project's signer gives the very signature (pure Ed25519, deterministic)
    signer = next(k for k in KEYS.values() if public_key_hex(k) == envelope["signature"]["key"])
    assert sign_body(body, signer, ORIGIN) == envelope
    verify_signature(ORIGIN, digest, envelope["signature"]["key"], envelope["signature"]["value"])
    # "An event signed for one log never verifies in another"
    with pytest.raises(SignatureError) as refused:
        verify_signature(
            ORIGIN + "2", digest, envelope["signature"]["key"], envelope["signature"]["value"]
        )
    assert refused.value.code == "bad_signature"
    # section 3: leaf data and leaf hash
    assert canonical(envelope) == vector["canonical_envelope"].encode("utf-8")
    assert leaf_hash(canonical(envelope)).hex() == vector["leaf_hash"]
    # the canonical envelope read back by the strict reader is the same envelope, and holds
    # the canonical body unchanged ("one canonicalisation per event is enough")
    assert parse_strict(vector["canonical_envelope"].encode("utf-8")) == envelope
    assert vector["canonical_envelope"].startswith('{"body":' + vector["canonical_body"] + ",")
    # the vector's envelope as its file writes it (indented, escaped) canonicalises the same
    indented = json.dumps(envelope, indent=2, ensure_ascii=True).encode("ascii")
    assert canonical(parse_strict(indented)) == vector["canonical_envelope"].encode("utf-8")
