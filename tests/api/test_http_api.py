"""The HTTP API end to end (PROTOCOL.md sections 6 and 7), on SQLite and PostgreSQL.

- the demo scenario played event by event through ``POST /v1/events`` (and once through
  batches) ends in the expected state of the bar (``GET /v1/lots/{bar}``);
- every receipt: 201, the event's id, seq and leaf hash, and a checkpoint that opens with
  the log's verifier key and includes the event (its inclusion proof from the API verifies);
  re-posts answer 200 with the receipt as first issued, original checkpoint included;
- batches: repeats, all-already-logged (200), all or nothing;
- every list pages with ``limit`` and ``cursor`` to the end, ``limit`` capped at 1000;
- events, checkpoints, consistency proofs, bundles (verified offline), QR codes (decoded),
  the human page, health, readiness and metrics.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nacl.signing
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from api import i18n
from clients.scenario import ScenarioPlayer, load_scenario
from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.protocol import canonical, event_id, public_key_hex
from ledger.replay import MemoryLedger
from ledger.verify import verify_bundle

from .conftest import PUBLIC_URL, Api, HttpWorld, check_problem, fresh_database, open_api

SCENARIO = load_scenario()
EXPECTED = SCENARIO["expected"]
BAR = EXPECTED["bar_lot"]
RECEIPT_KEYS = {"event_id", "seq", "leaf_hash", "checkpoint"}


@dataclass
class Played:
    """The scenario played through single POSTs, with what was sent and answered."""

    api: Api
    envelopes: list[dict[str, Any]]
    receipts: list[dict[str, Any]]
    registrar: nacl.signing.SigningKey

    @property
    def verifier_key(self) -> str:
        return str(self.api.log()["verifier_key"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def played(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Played]:
    folder = tmp_path_factory.mktemp(f"scenario-{request.param}")
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with fresh_database(request.param, folder, pg) as url:
        registrar = nacl.signing.SigningKey.generate()
        api = open_api(url, folder, registrar_key=public_key_hex(registrar))
        try:
            player = ScenarioPlayer(api.settings.origin, first_registrar_key=registrar)
            envelopes, receipts = [], []
            for raw in SCENARIO["events"]:
                envelope = player.envelope(raw, api.lot)
                response = api.post(envelope)
                assert response.status_code == 201, (raw["type"], response.text)
                envelopes.append(envelope)
                receipts.append(response.json())
            yield Played(api, envelopes, receipts, registrar)
        finally:
            api.close()


def check_bar(api: Api) -> dict[str, Any]:
    """The bar's state as the scenario expects it."""
    bar = api.lot(BAR)
    assert bar["lot"] == BAR and bar["form"] == "bar" and bar["bar"] is not None
    assert bar["status"] == "active" and bar["hold"] is False
    assert bar["custodian"] == "refiner-alpine"
    assert bar["risk"] == EXPECTED["bar_risk"]
    assert bar["origins"] == EXPECTED["origins"]
    open_codes = [f["code"] for f in bar["flags"] if f["status"] == "open"]
    assert sorted(open_codes) == sorted(EXPECTED["open_flags_on_bar"])
    assert bar["gender"] == EXPECTED["bar_gender"]
    return bar


def open_cp(note: str, vkey: str) -> Checkpoint:
    return open_checkpoint(note, vkey)


def inclusion_proof(api: Api, index: int, size: int) -> list[bytes]:
    response = api.client.get("/v1/log/proof/inclusion", params={"index": index, "size": size})
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["index"], data["size"]) == (index, size)
    return [bytes.fromhex(h) for h in data["proof"]]


def check_receipt(api: Api, vkey: str, envelope: dict[str, Any], receipt: dict[str, Any]) -> None:
    """The receipt names the event, and its checkpoint opens and includes it."""
    assert set(receipt) == RECEIPT_KEYS
    assert receipt["event_id"] == event_id(envelope["body"])
    leaf = merkle.leaf_hash(canonical(envelope))
    assert receipt["leaf_hash"] == leaf.hex()
    cp = open_cp(receipt["checkpoint"], vkey)
    assert cp.origin == api.settings.origin
    assert cp.size > receipt["seq"]
    proof = inclusion_proof(api, receipt["seq"], cp.size)
    merkle.verify_inclusion(leaf, receipt["seq"], cp.size, proof, cp.root)


# ---------------------------------------------------------------------------
# The scenario


def test_scenario_ends_in_the_expected_state(played: Played) -> None:
    check_bar(played.api)
    log = played.api.log()
    assert log["size"] >= len(SCENARIO["events"])
    assert log["registrar_key"] == public_key_hex(played.registrar)
    assert log["origin"] == played.api.settings.origin


def test_every_receipt_opens_and_includes_its_event(played: Played) -> None:
    api, vkey = played.api, played.verifier_key
    for seq, (envelope, receipt) in enumerate(zip(played.envelopes, played.receipts, strict=True)):
        assert receipt["seq"] == seq
        # one event per request: the checkpoint is the tree just after it
        assert open_cp(receipt["checkpoint"], vkey).size == seq + 1
        check_receipt(api, vkey, envelope, receipt)


def test_reposts_answer_the_original_receipt(played: Played) -> None:
    api = played.api
    size = api.log()["size"]
    for envelope, receipt in zip(played.envelopes, played.receipts, strict=True):
        response = api.post(envelope)
        assert response.status_code == 200, response.text
        assert response.json() == receipt  # the original checkpoint, not the latest
    # in one batch, all already logged: 200 with the same receipts
    response = api.batch(played.envelopes[:10])
    assert response.status_code == 200, response.text
    assert response.json()["receipts"] == played.receipts[:10]
    assert api.log()["size"] == size


def test_get_event(played: Played) -> None:
    api = played.api
    for envelope, receipt in list(zip(played.envelopes, played.receipts, strict=True))[::7]:
        response = api.client.get(f"/v1/events/{receipt['event_id']}")
        assert response.status_code == 200
        assert response.json() == {
            "event_id": receipt["event_id"],
            "seq": receipt["seq"],
            "leaf_hash": receipt["leaf_hash"],
            "envelope": envelope,
        }


def test_checkpoint_is_plain_text_and_consistent(played: Played) -> None:
    api, vkey = played.api, played.verifier_key
    response = api.client.get("/v1/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    latest = open_cp(response.text, vkey)
    log = api.log()
    assert (latest.size, latest.root.hex()) == (log["size"], log["root"])
    # every receipt's checkpoint is consistent with the latest one
    for receipt in played.receipts[::5] + played.receipts[-1:]:
        first = open_cp(receipt["checkpoint"], vkey)
        data = api.client.get(
            "/v1/log/proof/consistency", params={"first": first.size, "second": latest.size}
        ).json()
        assert (data["first"], data["second"]) == (first.size, latest.size)
        proof = [bytes.fromhex(h) for h in data["proof"]]
        merkle.verify_consistency(first.size, latest.size, first.root, latest.root, proof)
    # and between two older ones
    a, b = (open_cp(played.receipts[i]["checkpoint"], vkey) for i in (3, 20))
    data = api.client.get("/v1/log/proof/consistency", params={"first": 4, "second": 21}).json()
    merkle.verify_consistency(4, 21, a.root, b.root, [bytes.fromhex(h) for h in data["proof"]])


def test_bundle_verifies_offline(played: Played) -> None:
    api = played.api
    log = api.log()
    bar = api.lot(BAR)
    response = api.client.get(f"/v1/lots/{BAR}/bundle")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    report = verify_bundle(response.content, log["verifier_key"], log["registrar_key"])
    assert report.ok, [str(f) for f in report.failures]
    assert report.lot == BAR and report.head == bar["head"] and report.label_at is None
    assert report.state is not None
    assert report.state["risk"] == EXPECTED["bar_risk"]
    assert report.state["origins"] == EXPECTED["origins"]
    assert report.state["gender"] == EXPECTED["bar_gender"]
    # pinned to another registrar key: refused
    other = public_key_hex(nacl.signing.SigningKey.generate())
    assert not verify_bundle(response.content, log["verifier_key"], other).ok
    # ?at= an event of the lot's own chain: echoed as label_at
    dore = "KLA-2026-0101"
    chain = api.client.get(f"/v1/lots/{dore}/events").json()["items"]
    first = chain[0]["event_id"]
    labelled = api.client.get(f"/v1/lots/{dore}/bundle", params={"at": first})
    assert labelled.status_code == 200
    report = verify_bundle(labelled.content, log["verifier_key"], log["registrar_key"])
    assert report.ok and report.label_at == first
    assert len(report.after_label) == len(chain) - 1
    # ?at= an event that is not on the lot's own chain: 404 unknown_event
    elsewhere = played.receipts[0]["event_id"]
    check_problem(
        api.client.get(f"/v1/lots/{BAR}/bundle", params={"at": elsewhere}), 404, "unknown_event"
    )


def _decode(image: Image.Image) -> str:
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1, results
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    assert results[0].ec_level == "M"  # section 7: error correction M
    text: str = results[0].text
    return text


def _rasterise_qr_svg(svg: bytes) -> Image.Image:
    """Draw the squares of a qrcode ``SvgPathImage`` (``M x,y H x2 V y2 H x z``) as a PNG.

    No SVG rasteriser is installed (no cairosvg, rsvg or ImageMagick), and the SVG holds one
    path of axis-aligned squares: parse it (it must be well-formed XML) and draw them.
    """
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    assert len(paths) == 1
    squares = re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H([\d.]+)z", paths[0].attrib["d"])
    assert squares and "".join(f"M{a},{b}H{c}V{d}H{e}z" for a, b, c, d, e in squares) == paths[
        0
    ].attrib["d"].replace(" ", "")
    scale = 10
    image = Image.new("L", (round(width * scale), round(height * scale)), 255)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1, _ in squares:
        box = [round(float(v) * scale) for v in (x0, y0, x1, y1)]
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=0)
    return image


def test_qr_codes_hold_the_label_url(played: Played) -> None:
    api = played.api
    for lot in (BAR, "KLA-2026-0101", "MAK-2026-0001"):
        head = api.lot(lot)["head"]
        want = f"{PUBLIC_URL}/l/{lot}?at={head}"
        png = api.client.get(f"/v1/lots/{lot}/qr.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert _decode(Image.open(io.BytesIO(png.content))) == want
        svg = api.client.get(f"/v1/lots/{lot}/qr.svg")
        assert svg.status_code == 200
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert _decode(_rasterise_qr_svg(svg.content)) == want
        label = api.client.get(f"/v1/lots/{lot}/label.png")
        assert label.status_code == 200
        assert _decode(Image.open(io.BytesIO(label.content))) == want


def test_lot_page(played: Played) -> None:
    api = played.api
    head = api.lot(BAR)["head"]
    page = api.client.get(f"/l/{BAR}", params={"at": head})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in page.text and i18n.t("en", "verdict.ok") in page.text
    assert BAR in page.text
    french = api.client.get(f"/l/{BAR}", params={"at": head, "lang": "fr"})
    assert french.status_code == 200
    assert '<html lang="fr">' in french.text and i18n.t("fr", "verdict.ok") in french.text
    by_header = api.client.get(f"/l/{BAR}", headers={"accept-language": "fr-CD,fr;q=0.9"})
    assert '<html lang="fr">' in by_header.text
    # an unknown lot, and a label naming an event off the lot's chain: 404 pages in HTML
    for path in ("/l/NOPE-0001", f"/l/{BAR}?at={played.receipts[0]['event_id']}", "/l/x"):
        missing = api.client.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"].startswith("text/html")
        assert "<html" in missing.text


def test_operations(played: Played) -> None:
    api = played.api
    health = api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"
    # a refusal is counted under its code
    stale = played.api.post(played.envelopes[20] | {"signature": played.envelopes[21]["signature"]})
    check_problem(stale, 401, "bad_signature")
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert re.search(r'^goldtrail_events_refused_total\{code="bad_signature"\} [1-9]', text, re.M)
    size = api.log()["size"]
    assert re.search(rf"^goldtrail_log_size {size}(\.0)?$", text, re.M)
    assert re.search(r"^goldtrail_events_appended_total [1-9]", text, re.M)


# ---------------------------------------------------------------------------
# Lists and pagination


def walk(api: Api, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, page by page (``next`` is a cursor, or a start for entries)."""
    items: list[dict[str, Any]] = []
    cursor: Any = None
    pages = 0
    while True:
        query = {**params, "limit": limit}
        if cursor is not None:
            query["start" if path == "/v1/log/entries" else "cursor"] = cursor
        response = api.client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        if page["next"] is None:
            break
        assert len(page["items"]) == limit
        cursor = page["next"]
        assert pages < 10_000
    return items


def _lists(
    played: Played,
) -> dict[str, tuple[str, dict[str, Any], Callable[[dict[str, Any]], Any]]]:
    return {
        "actors": ("/v1/actors", {}, lambda x: x["id"]),
        "sites": ("/v1/sites", {}, lambda x: x["id"]),
        "lots": ("/v1/lots", {}, lambda x: x["lot"]),
        "lots by custodian": ("/v1/lots", {"custodian": "trader-kampala"}, lambda x: x["lot"]),
        "lots by site": ("/v1/lots", {"site": "site-busia-tiira"}, lambda x: x["lot"]),
        "lots by status": ("/v1/lots", {"status": "consumed"}, lambda x: x["lot"]),
        "lots by risk": ("/v1/lots", {"risk": "medium"}, lambda x: x["lot"]),
        "entries": ("/v1/log/entries", {}, lambda x: x["seq"]),
        "lot events": ("/v1/lots/KLA-2026-0101/events", {}, lambda x: x["seq"]),
    }


def test_every_list_pages_to_the_end(played: Played) -> None:
    api = played.api
    for name, (path, params, key) in _lists(played).items():
        whole = walk(api, path, 1000, **params)
        assert whole, name
        for limit in (1, 2, 5):
            assert walk(api, path, limit, **params) == whole, (name, limit)
        default = api.client.get(path, params=params).json()
        assert default["items"] == whole[:100]
        keys = [key(item) for item in whole]
        assert len(set(keys)) == len(keys), name
        if name == "lots by custodian":
            assert {x["custodian"] for x in whole} == {"trader-kampala"}
        if name == "lots by site":
            assert all("site-busia-tiira" in x["origins"] for x in whole)
        if name == "lots by status":
            assert {x["status"] for x in whole} == {"consumed"}
        if name == "lots by risk":
            assert {x["risk"] for x in whole} == {"medium"}
        if name in ("entries", "lot events"):
            assert keys == sorted(keys)  # oldest first
    # lists are oldest first
    actors = walk(api, "/v1/actors", 1000)
    assert actors[0]["id"] == "registrar-ituri"
    assert [a["registered_seq"] for a in actors] == sorted(a["registered_seq"] for a in actors)
    entries = walk(api, "/v1/log/entries", 1000)
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    lots = walk(api, "/v1/lots", 1000)
    assert {lot["lot"] for lot in lots} >= {BAR, "KLA-2026-0101", "MAK-2026-0001"}
    # the lot's own chain, shaped as log entries
    chain = walk(api, "/v1/lots/KLA-2026-0101/events", 1000)
    assert all(set(e) == {"seq", "event_id", "leaf_hash", "envelope"} for e in chain)
    assert chain[-1]["event_id"] == api.lot("KLA-2026-0101")["head"]


def test_limit_is_capped_at_1000(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world()
    with w.collecting() as events:
        for i in range(1000):
            w.register_actor(f"auditor-{i:04d}", ["auditor"])
    response = api.batch(events)
    assert response.status_code == 201, response.text[:500]
    assert api.log()["size"] == 1001
    for path, next_value in (("/v1/log/entries", 1000), ("/v1/actors", None)):
        page = api.client.get(path, params={"limit": 5000}).json()
        assert len(page["items"]) == 1000
        assert page["next"] is not None
        if next_value is not None:
            assert page["next"] == next_value
        rest = api.client.get(
            path, params={"start" if path.endswith("entries") else "cursor": page["next"]}
        ).json()
        assert len(rest["items"]) == 1 and rest["next"] is None
    assert len(walk(api, "/v1/actors", 333)) == 1001


# ---------------------------------------------------------------------------
# The scenario through batches, and the rules of batches


def test_scenario_through_batches(database_url: str, make_api: Callable[..., Api]) -> None:
    registrar = nacl.signing.SigningKey.generate()
    api = make_api(database_url, registrar_key=public_key_hex(registrar))
    mirror = MemoryLedger(api.settings.origin, public_key_hex(registrar))
    player = ScenarioPlayer(api.settings.origin, first_registrar_key=registrar)

    def lookup(lot: str) -> dict[str, Any]:
        state: dict[str, Any] = mirror.state.lots[lot].model_dump(mode="json", by_alias=True)
        return state

    envelopes = []
    for raw in SCENARIO["events"]:
        envelope = player.envelope(raw, lookup)
        mirror.append(envelope)
        envelopes.append(envelope)
    vkey = api.log()["verifier_key"]
    size = 0
    for at in range(0, len(envelopes), 10):
        chunk = envelopes[at : at + 10]
        response = api.batch(chunk)
        assert response.status_code == 201, response.text
        data = response.json()
        assert set(data) == {"receipts", "checkpoint"}
        cp = open_cp(data["checkpoint"], vkey)
        size += len(chunk)
        assert cp.size == size
        assert [r["seq"] for r in data["receipts"]] == list(range(at, at + len(chunk)))
        for envelope, receipt in zip(chunk, data["receipts"], strict=True):
            assert receipt["checkpoint"] == data["checkpoint"]
            check_receipt(api, vkey, envelope, receipt)
    check_bar(api)
    assert api.log()["root"] == mirror.root().hex()


def test_batch_repeats_reposts_and_all_or_nothing(api: Api) -> None:
    w = api.world().standard()
    vkey = api.log()["verifier_key"]
    with w.collecting() as events:
        a = w.register_lot("COOP-0001").envelope
        b = w.register_lot("COOP-0002").envelope
    size = api.log()["size"]
    # an envelope repeated in the batch gets the receipt of its first occurrence
    response = api.batch([a, b, a])
    assert response.status_code == 201, response.text
    first = response.json()
    receipts = first["receipts"]
    assert receipts[2] == receipts[0] and receipts[0]["seq"] == size
    assert receipts[1]["seq"] == size + 1 and api.log()["size"] == size + 2
    assert {r["checkpoint"] for r in receipts} == {first["checkpoint"]}
    assert open_cp(first["checkpoint"], vkey).size == size + 2
    for envelope, receipt in zip([a, b, a], receipts, strict=True):
        check_receipt(api, vkey, envelope, receipt)
    assert [e["body"]["lot"] for e in events] == ["COOP-0001", "COOP-0002"]
    # a batch all already logged: 200, same receipts, nothing appended
    again = api.batch([b, a])
    assert again.status_code == 200, again.text
    assert again.json()["receipts"] == [receipts[1], receipts[0]]
    # the log moves on; a re-post still gets the receipt as first issued
    w.offer("COOP-0001", "trader")
    w.accept("COOP-0001")
    w.rotate_key("coop")  # even after the signer's key was rotated
    single = api.post(a)
    assert single.status_code == 200
    assert single.json() == receipts[0]
    # a mixed batch: the logged envelope keeps its receipt, the new one gets the new checkpoint
    with w.collecting():
        c = w.register_lot("COOP-0003").envelope
    mixed = api.batch([a, c])
    assert mixed.status_code == 201, mixed.text
    data = mixed.json()
    assert data["receipts"][0] == receipts[0]
    assert data["receipts"][1]["checkpoint"] == data["checkpoint"] != receipts[0]["checkpoint"]
    check_receipt(api, vkey, c, data["receipts"][1])
    # all or nothing: a failing event appends nothing, and the error names it
    with w.collecting():
        d = w.register_lot("COOP-0004").envelope
    stale = w.offer("COOP-0004", "trader", prev="0" * 64, post=False).envelope
    before = api.log()
    response = api.batch([d, stale])
    check_problem(response, 409, "stale_prev", index=1)
    assert api.log() == before
    check_problem(api.client.get("/v1/lots/COOP-0004"), 404, "unknown_lot")


def test_receipt_shape_on_201(api: Api) -> None:
    w: HttpWorld = api.world()
    vkey = api.log()["verifier_key"]
    with w.collecting():
        ev = w.register_actor("auditor", ["auditor"])
    response = api.post(ev)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    receipt = response.json()
    assert receipt["seq"] == 1
    check_receipt(api, vkey, ev.envelope, receipt)
    # the checkpoint includes the event: its tree is exactly the log now
    cp = open_cp(receipt["checkpoint"], vkey)
    assert (cp.size, cp.root.hex()) == (api.log()["size"], api.log()["root"])
    assert base64.b64decode(receipt["checkpoint"].splitlines()[2]) == cp.root
