"""PROTOCOL.md sections 1-4 checked through HTTP the way an independent implementation
would: the shared vectors (``tests/vectors``, made by one) posted to a server configured
with their origin, registrar key and log key, and every byte that comes back (event ids,
leaf hashes, roots, checkpoint notes, the verifier key) compared with values computed here
from SHA-256, Ed25519 and base64 alone, not with ``ledger``'s own functions.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from .conftest import Api, check_problem

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
EVENTS = json.loads((VECTORS / "events.json").read_text("utf-8"))
CHECKPOINT = json.loads((VECTORS / "checkpoint.json").read_text("utf-8"))
ORIGIN = EVENTS["origin"]
REGISTRAR = nacl.signing.SigningKey(bytes.fromhex(EVENTS["keys"]["registrar_seed"]))
LOG_KEY = nacl.signing.SigningKey(bytes.fromhex(CHECKPOINT["log_key_seed"]))


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 Merkle Tree Hash over leaf hashes."""
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _note(size: int, root: bytes) -> str:
    """The C2SP checkpoint of section 4, signed here with the vector's log key."""
    text = f"{ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n"
    public = bytes(LOG_KEY.verify_key)
    key_id = _sha256(ORIGIN.encode() + b"\n\x01" + public)[:4]
    signature = LOG_KEY.sign(text.encode()).signature
    return f"{text}\n\u2014 {ORIGIN} {base64.b64encode(key_id + signature).decode()}\n"


def _registrar_event(body: dict[str, Any]) -> dict[str, Any]:
    """A body signed by the vectors' registrar for this origin (section 2's message)."""
    digest = _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    message = b"goldtrail/v1/event\n" + ORIGIN.encode() + b"\n" + digest
    signature = REGISTRAR.sign(message).signature.hex()
    return {
        "body": body,
        "signature": {"key": bytes(REGISTRAR.verify_key).hex(), "value": signature},
    }


def _vector_server(make_api: Callable[..., Api], url: str, tmp_path: Path) -> Api:
    folder = tmp_path / "vector-log"
    folder.mkdir()
    key_file = folder / "log.key"
    key_file.write_text(CHECKPOINT["log_key_seed"] + "\n")
    key_file.chmod(0o600)
    return make_api(folder=folder, origin=ORIGIN, registrar_key=bytes(REGISTRAR.verify_key).hex())


def test_the_vectors_through_http_byte_for_byte(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = _vector_server(make_api, database_url, tmp_path)
    client = api.client
    # section 4: the verifier key of the vectors' log key, and before seq 0 (section 3) the
    # empty tree: size 0, root SHA-256(""), its checkpoint signed all the same
    log = api.log()
    assert log == {
        "origin": ORIGIN,
        "verifier_key": CHECKPOINT["verifier_key"],
        "registrar_key": None,
        "size": 0,
        "root": _sha256(b"").hex(),
        "public_url": api.settings.public_url,
    }
    empty = client.get("/v1/log/checkpoint")
    assert empty.status_code == 200 and empty.headers["content-type"].startswith("text/plain")
    assert empty.text == _note(0, _sha256(b""))
    assert client.get("/v1/log/entries").json() == {"items": [], "next": None}
    # no proof exists in an empty log (section 3: 1 <= first <= second <= size)
    check_problem(client.get("/v1/log/proof/inclusion?index=0&size=1"), 422, "schema")
    check_problem(client.get("/v1/log/proof/consistency?first=1&second=1"), 422, "schema")

    site = _registrar_event(
        {
            "v": 1,
            "type": "site.registered",
            "actor": "registrar",
            "time": "2026-11-01T08:10:00Z",
            "site": "site-mambasa-makala",
            "name": "Makala alluvial site",
            "operator": "coop-reafecom",
            "country": "CD",
            "region": "Ituri",
            "location": {"lat": "1.33871", "lon": "29.08334"},
        }
    )
    vectors = EVENTS["vectors"]
    posted = [vectors[0]["envelope"], vectors[1]["envelope"], site, vectors[2]["envelope"]]
    leaves: list[bytes] = []
    receipts = []
    for seq, envelope in enumerate(posted):
        if envelope is vectors[2]["envelope"]:
            # the lot's registration sent as any JSON writer may: indented, keys reversed.
            # The server hashes JCS(body) and logs JCS(envelope), never the bytes received
            sent = json.dumps(_reversed(envelope), indent=2, ensure_ascii=True).encode()
            response = client.post("/v1/events", content=sent)
        else:
            response = api.post(envelope)
        assert response.status_code == 201, response.text
        receipt = response.json()
        canonical_envelope = json.dumps(
            envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        leaves.append(_sha256(b"\x00" + canonical_envelope))
        assert receipt["seq"] == seq
        assert receipt["leaf_hash"] == leaves[-1].hex()
        # every accepted request is answered with a checkpoint that includes its event
        assert receipt["checkpoint"] == _note(seq + 1, _mth(leaves))
        receipts.append(receipt)
    # the vectors' own ids, leaf data and leaf hashes, byte for byte
    for index, seq in ((0, 0), (1, 1), (2, 3)):
        vector = vectors[index]
        assert receipts[seq]["event_id"] == vector["event_id"]
        assert receipts[seq]["leaf_hash"] == vector["leaf_hash"]
        entry = client.get(f"/v1/events/{vector['event_id']}").json()
        assert entry["envelope"] == vector["envelope"]
        entries = client.get("/v1/log/entries", params={"start": seq, "limit": 1}).json()
        assert (
            json.dumps(
                entries["items"][0]["envelope"],
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            )
            == vector["canonical_envelope"]
        )
    log = api.log()
    assert (log["size"], log["root"]) == (4, _mth(leaves).hex())
    assert log["registrar_key"] == bytes(REGISTRAR.verify_key).hex()
    assert client.get("/v1/log/checkpoint").text == _note(4, _mth(leaves))
    # section 2: re-posting, in canonical form this time, is idempotent: 200 and the
    # receipt as first issued, with the checkpoint of size 1 it was first answered with
    again = client.post("/v1/events", content=vectors[0]["canonical_envelope"].encode())
    assert again.status_code == 200, again.text
    assert again.json() == receipts[0]
    assert api.log()["size"] == 4


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reversed(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(item) for item in value]
    return value
