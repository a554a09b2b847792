"""PROTOCOL.md sections 3, 4 and 7 through HTTP, checked by Go's own sumdb code.

Section 3: inclusion and consistency proofs "verify with Go's golang.org/x/mod/sumdb/tlog
CheckRecord / CheckTree unchanged"; section 4: the checkpoint and the log's verifier key
"verify with Go's golang.org/x/mod/sumdb/note unchanged". Here everything comes from a
real server over HTTP (``GET /v1/log``, ``/v1/log/checkpoint``, the receipts' checkpoints,
``/v1/log/entries``, ``/v1/log/proof/*`` and a bundle), leaf hashes are recomputed with
hashlib from the served envelopes, and ``goverify`` (tests/goverify.py) gives the verdict.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .conftest import Api, HttpWorld


def _leaf_hash(envelope: dict[str, Any]) -> str:
    """SHA-256(0x00 || JCS(envelope)), JCS written out with json (bodies hold no floats)."""
    jcs = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"\x00" + jcs.encode("utf-8")).hexdigest()


def _size_and_root(note: str) -> tuple[int, str]:
    """The tree size and root (hex) that a checkpoint's text states."""
    _, size, root = note.split("\n")[:3]
    return int(size), base64.b64decode(root).hex()


def test_served_checkpoints_and_proofs_verify_with_go(sqlite_api: Api, goverify: Any) -> None:
    api = sqlite_api
    w: HttpWorld = api.world().standard()
    for n in range(3):  # one request per event: a checkpoint for each size
        lot = w.register_lot(f"COOP-{n + 1:04d}", "site-a").body["lot"]
        w.transfer(lot, "trader")
    w.split("COOP-0001", [1, w.lot("COOP-0001").mass_mg - 1], ids=["TRD-0001", "TRD-0002"])
    get = api.client.get
    log = api.log()
    vkey, size = log["verifier_key"], log["size"]
    latest = get("/v1/log/checkpoint").text
    assert _size_and_root(latest) == (size, log["root"])

    entries: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = get("/v1/log/entries", params={"start": start}).json()
        entries += page["items"]
        start = page["next"]
    assert [e["seq"] for e in entries] == list(range(size))
    for e in entries:
        assert e["leaf_hash"] == _leaf_hash(e["envelope"]), e["seq"]

    # every entry's inclusion in the latest tree, and in a smaller one
    inclusions = []
    for e in entries:
        proof = get("/v1/log/proof/inclusion", params={"index": e["seq"], "size": size})
        assert proof.status_code == 200, proof.text
        inclusions.append({"index": e["seq"], "leaf_hash": e["leaf_hash"], **proof.json()})
    payload = {"vkey": vkey, "checkpoint": latest, "inclusions": inclusions}
    assert goverify.run(payload) == f"ok {log['origin']} {size}"

    # every receipt's checkpoint opens with Go, includes its event and is consistent with
    # the latest (section 4: "every checkpoint is consistent with every earlier one")
    notes = {r["checkpoint"] for r in w.receipts}
    assert len(notes) >= 8
    for receipt in w.receipts:
        old_size, old_root = _size_and_root(receipt["checkpoint"])
        assert receipt["seq"] < old_size
        proof = get(
            "/v1/log/proof/inclusion", params={"index": receipt["seq"], "size": old_size}
        ).json()["proof"]
        inclusion = {"index": receipt["seq"], "leaf_hash": receipt["leaf_hash"], "proof": proof}
        assert (
            goverify.run(
                {"vkey": vkey, "checkpoint": receipt["checkpoint"], "inclusions": [inclusion]}
            )
            == f"ok {log['origin']} {old_size}"
        )
        consistency = get(
            "/v1/log/proof/consistency", params={"first": old_size, "second": size}
        ).json()["proof"]
        assert (
            goverify.run(
                {
                    "vkey": vkey,
                    "checkpoint": latest,
                    "consistency": {
                        "old_size": old_size,
                        "old_root": old_root,
                        "proof": consistency,
                    },
                }
            )
            == f"ok {log['origin']} {size}"
        )

    # a bundle's checkpoint and every entry's proof, as a verifier in Go would read them
    bundle = get("/v1/lots/TRD-0002/bundle").json()
    assert bundle["log"]["verifier_key"] == vkey and bundle["checkpoint"] == latest
    payload = {
        "vkey": vkey,
        "checkpoint": bundle["checkpoint"],
        "inclusions": [
            {"index": e["seq"], "leaf_hash": _leaf_hash(e["envelope"]), "proof": e["proof"]}
            for e in bundle["entries"]
        ],
    }
    assert goverify.run(payload) == f"ok {log['origin']} {size}"
    # and a changed envelope is refused by Go too
    payload["inclusions"][-1]["leaf_hash"] = _leaf_hash(
        {**bundle["entries"][-1]["envelope"], "signature": {"key": "00", "value": "00"}}
    )
    assert goverify.run(payload).startswith("FAIL ")
