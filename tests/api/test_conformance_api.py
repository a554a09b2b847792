"""PROTOCOL.md section 6 as an independent HTTP client reads it, where other tests left gaps.

- "Lists take ``limit`` ... and ``cursor``, and answer ``{items, next}``": a generic client
  pages every list the same way, sending the previous ``next`` as ``cursor``; that holds for
  ``GET /v1/log/entries`` too, whose ``next`` is the next start (``start`` still works);
- "JSON over HTTP": a 405 problem names the methods the resource allows in ``Allow``, as
  HTTP requires of every 405 (RFC 9110, section 15.5.6);
- "Sizes are measured on the request body as received, and for each envelope of a batch on
  its canonical form": both sides of each limit;
- ``GET /v1/actors/{id}`` ("roles, lot prefix, keys and their history, licence, profile,
  status") and ``GET /v1/sites`` ("their current status and latest indicators");
- sites and lots listed oldest first, and the filters of ``GET /v1/lots`` combined;
- the ``/l/{lot}`` page served by the app shows no free text, reference, price or small
  group's payment (sections 1 and 7).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from api.body import BATCH_LIMIT, EVENT_LIMIT
from ledger.protocol import canonical, public_key_hex
from tests import factories as F

from .conftest import Api, check_problem, refusal


def _page_with_cursor(api: Api, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a list, following ``next`` as ``cursor`` (what a generic client does)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(100):
        response = api.client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        items += page["items"]
        if page["next"] is None:
            return items
        params = {"limit": limit, "cursor": page["next"]}
    raise AssertionError(f"{path}: paging with cursor never ends")


def test_log_entries_page_with_cursor_like_every_list(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world()
    with w.batching():
        for i in range(6):
            w.register_actor(f"auditor-{i}", ["auditor"])
    size = api.log()["size"]
    assert size == 7
    entries = _page_with_cursor(api, "/v1/log/entries", 2)
    assert [e["seq"] for e in entries] == list(range(size))  # each once, oldest first
    # the same walk as with start, and the same pages as the other lists give
    actors = _page_with_cursor(api, "/v1/actors", 2)
    assert len(actors) == size
    second = api.client.get("/v1/log/entries", params={"limit": 2, "start": 2}).json()
    by_cursor = api.client.get("/v1/log/entries", params={"limit": 2, "cursor": "2"}).json()
    assert by_cursor == second
    # a cursor the server did not give out is a bad query parameter: 422 schema
    for bad in ("x", "-1", "1.5", "9" * 30, ""):
        refusal(
            api,
            lambda bad=bad: api.client.get("/v1/log/entries", params={"cursor": bad}),
            422,
            "schema",
        )
    # start and cursor naming two places: 422 schema (the same place is accepted)
    refusal(api, lambda: api.client.get("/v1/log/entries?start=1&cursor=3"), 422, "schema")
    same = api.client.get("/v1/log/entries?start=3&cursor=3&limit=2")
    assert same.status_code == 200 and [e["seq"] for e in same.json()["items"]] == [3, 4]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/log", {"GET"}),
        ("POST", "/v1/log/entries", {"GET"}),
        ("PUT", "/v1/lots/COOP-0001", {"GET"}),
        ("GET", "/v1/events", {"POST"}),
        ("GET", "/v1/events/batch", None),  # GET /v1/events/{event_id}: an unknown event
        ("DELETE", "/v1/events/batch", {"POST"}),
    ],
)
def test_405_names_the_allowed_methods(
    sqlite_api: Api, method: str, path: str, allowed: set[str] | None
) -> None:
    response = sqlite_api.client.request(method, path)
    if allowed is None:
        check_problem(response, 404, "unknown_event")
        return
    problem = check_problem(response, 405, "method_not_allowed")
    assert method in problem["detail"]
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed


# ---------------------------------------------------------------------------
# Sizes: "measured on the request body as received, and for each envelope of a batch on
# its canonical form"


def test_batch_envelopes_are_measured_in_canonical_form(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world()
    with w.collecting():
        ev = w.register_actor("auditor-x", ["auditor"])
    # over 256 KiB as received (whitespace), a few hundred bytes in canonical form
    wide = canonical(ev.envelope).decode().replace("{", "{" + " " * (EVENT_LIMIT // 2), 2)
    assert len(wide) > EVENT_LIMIT and len(canonical(ev.envelope)) < 1024
    body = ('{"events": [' + wide + "]}").encode()
    assert len(body) < BATCH_LIMIT
    response = api.client.post("/v1/events/batch", content=body)
    assert response.status_code == 201, response.text
    assert response.json()["receipts"][0]["event_id"] == ev.id
    # the same bytes alone are over the single body's limit, as received: 413
    refusal(api, lambda: api.client.post("/v1/events", content=wide.encode()), 413, "too_large")

    # an envelope of exactly 256 KiB in canonical form is not refused for its size
    def envelope_of(size: int) -> dict[str, Any]:
        padded = {"body": {"note": ""}, "signature": {}}
        padded["body"]["note"] = "n" * (size - len(canonical(padded)))
        assert len(canonical(padded)) == size
        return padded

    at_limit = {"events": [envelope_of(EVENT_LIMIT)]}
    refusal(api, lambda: api.client.post("/v1/events/batch", json=at_limit), 422, "schema", 0)
    over = {"events": [envelope_of(EVENT_LIMIT + 1)]}
    refusal(api, lambda: api.client.post("/v1/events/batch", json=over), 413, "too_large", 0)
    # a batch body of exactly 4 MiB is read and parsed (not JSON here: 400, not 413)
    exact = b"{" + b" " * (BATCH_LIMIT - 2) + b"x"
    assert len(exact) == BATCH_LIMIT
    refusal(api, lambda: api.client.post("/v1/events/batch", content=exact), 400, "malformed")


# ---------------------------------------------------------------------------
# GET /v1/actors/{id}: "actors with roles, lot prefix, keys and their history, licence,
# profile, status"

LICENCE = {"number": "L-77", "issuer": "CAMI", "valid_until": "2027-06-30"}
PROFILE = {
    "women_led": True,
    "members": {"women": 30, "total": 41},
    "leaders": {"women": 3, "total": 5},
}


def test_actor_view_has_roles_prefix_keys_and_their_history_licence_profile_status(
    sqlite_api: Api,
) -> None:
    api = sqlite_api
    w = api.world()
    reg = w.register_actor(
        "coop-v", ["cooperative"], lot_prefix="CPV-", licence=LICENCE, profile=PROFILE
    )
    first_key = public_key_hex(w.keys["coop-v"])
    rotated = w.rotate_key("coop-v")
    second_key = public_key_hex(w.keys["coop-v"])
    actor = api.client.get("/v1/actors/coop-v").json()
    assert actor["id"] == "coop-v" and actor["roles"] == ["cooperative"]
    assert actor["lot_prefix"] == "CPV-"
    assert (actor["licence"], actor["profile"], actor["status"]) == (LICENCE, PROFILE, "active")
    assert actor["key"] == second_key
    history = [(k["key"], k["since_event"], k["ended"]) for k in actor["keys"]]
    assert history == [(first_key, reg.id, "rotated"), (second_key, rotated.id, None)]
    revoked = w.revoke("coop-v")
    actor = api.client.get("/v1/actors/coop-v").json()
    assert actor["status"] == "revoked" and actor["key"] is None
    history = [(k["key"], k["ended"]) for k in actor["keys"]]
    assert history == [(first_key, "rotated"), (second_key, "revoked")]
    seqs = {e["event_id"]: e["seq"] for e in api.client.get("/v1/log/entries").json()["items"]}
    assert [k["until_seq"] for k in actor["keys"]] == [seqs[rotated.id], seqs[revoked.id]]
    # the list shows the same view
    listed = api.client.get("/v1/actors").json()["items"]
    assert next(a for a in listed if a["id"] == "coop-v") == actor


# ---------------------------------------------------------------------------
# GET /v1/sites: "sites with their current status and latest indicators"; lists are
# "oldest first" and /v1/lots filters combine


def test_sites_show_their_current_status_and_latest_indicators(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world().standard()
    w.register_site("site-g", "coop")
    w.assess_site("site-g", "green", valid_until="2026-12-10", workforce={"women": 4, "men": 9})
    w.assess_site("site-g", "green", valid_until="2026-12-10", womens_association=True)
    w.register_site("site-r", "coop")
    w.assess_site("site-r", "red", valid_until="2026-12-10")
    w.register_site("site-n", "coop2")

    def statuses() -> dict[str, str]:
        items = api.client.get("/v1/sites").json()["items"]
        return {s["id"]: s["status"] for s in items}

    assert statuses() == {
        "site-a": "green",
        "site-b": "green",
        "site-g": "green",
        "site-r": "red",
        "site-n": "blue",  # never assessed
    }
    # oldest first: in the order the sites were registered
    assert list(statuses()) == ["site-a", "site-b", "site-g", "site-r", "site-n"]
    # the latest assessment's indicators (an assessment is a snapshot: none carried over)
    site = api.client.get("/v1/sites/site-g").json()
    assert site["assessment"]["indicators"] == {"womens_association": True}
    # "current": the server's date; after valid_until green counts as blue, red stays red
    api.clock.now = dt.datetime(2026, 12, 10, 23, 59, 59, tzinfo=dt.UTC)
    assert statuses()["site-g"] == "green"
    api.clock.now = dt.datetime(2026, 12, 11, 0, 0, 0, tzinfo=dt.UTC)
    assert statuses() | {"site-a": "", "site-b": ""} == {
        "site-a": "",
        "site-b": "",
        "site-g": "blue",
        "site-r": "red",
        "site-n": "blue",
    }
    assert api.client.get("/v1/sites/site-g").json()["status"] == "blue"


def test_lots_are_listed_oldest_first_and_filters_combine(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world().standard()
    # ids that do not sort in the order the lots were created
    for lot in ("COOP-0009", "COOP-0003", "COOP-0007"):
        w.register_lot(lot)
    w.register_lot("CPB-0001", "site-b")
    w.split("COOP-0003", [50_000, 50_000], ids=["COOP-0002", "COOP-0001"])
    w.offer("COOP-0009", "trader")
    w.flag("COOP-0007", "bribery")
    seqs = {e["event_id"]: e["seq"] for e in api.client.get("/v1/log/entries").json()["items"]}

    def listed(**params: str) -> list[str]:
        page = api.client.get("/v1/lots", params=params)
        assert page.status_code == 200, page.text
        return [lot["lot"] for lot in page.json()["items"]]

    lots = api.client.get("/v1/lots").json()["items"]
    created = [seqs[lot["created_event"]] for lot in lots]
    assert created == sorted(created)
    assert [x for x in listed() if x != "COOP-0001"][:5] == [
        "COOP-0009",
        "COOP-0003",
        "COOP-0007",
        "CPB-0001",
        "COOP-0002",
    ]
    # filters combine: every one given must hold
    assert listed(custodian="coop", status="consumed") == ["COOP-0003"]
    assert listed(custodian="coop", status="offered") == ["COOP-0009"]
    assert listed(custodian="coop2", site="site-a") == []
    assert listed(site="site-a", risk="high") == ["COOP-0007"]
    assert set(listed(custodian="coop", status="active", risk="low")) == {"COOP-0001", "COOP-0002"}
    assert listed(site="site-b", custodian="coop2", status="active", risk="low") == ["CPB-0001"]
    # "404 is only for lots, sites, actors, events and flags that a body or a path refers
    # to": a filter naming nobody is an empty list
    assert listed(custodian="nobody") == listed(site="site-zz") == []
    # "next: <cursor or null>": null on the last page, even when it is full
    for path in ("/v1/lots", "/v1/sites", "/v1/actors", "/v1/log/entries"):
        whole = api.client.get(path, params={"limit": 1000}).json()["items"]
        page = api.client.get(path, params={"limit": len(whole)}).json()
        assert page == {"items": whole, "next": None}, path


# ---------------------------------------------------------------------------
# GET /l/{lot}: the page shows no personal data (section 1: the log names no person;
# section 7: payment and income figures only for groups of at least 5 people)


def test_lot_page_shows_no_free_text_references_prices_or_small_group_pay(
    sqlite_api: Api,
) -> None:
    api = sqlite_api
    w = api.world().standard()
    w.assess_site(
        "site-a",
        "green",
        workforce={"women": 2, "men": 3},
        daily_income_median={"women": F.money(246_802, "UGX"), "men": F.money(135_791, "UGX")},
    )
    lot = w.register_lot(
        "COOP-0001",
        women=1,
        men=2,
        tag="TAG-PRIVATE-1",
        pit="PIT-PRIVATE-2",
        payment={"total": F.money(987_651, "UGX"), "to_women": F.money(412_309, "UGX")},
        state_payments=[
            {"kind": "royalty", "amount": F.money(777_113, "UGX"), "receipt": "RCPT-PRIVATE-3"}
        ],
    ).body["lot"]
    flag = w.flag(lot, "bribery", note="NOTE-PRIVATE-4 said so")
    w.resolve(lot, flag.flag_id("bribery"), resolution="RESOLUTION-PRIVATE-5 checked")
    w.offer(lot, "trader", price=F.money(555_337, "USD"), seal="SEAL-PRIVATE-6")
    w.reject(lot, reason="REASON-PRIVATE-7 broken seal")
    w.offer(lot, "exporter", price=F.money(555_339, "USD"), seller_sex="woman")
    w.accept(lot)
    w.assay(lot, 810_000, certificate="CERT-PRIVATE-8")
    w.export(lot, "CH", permit="PERMIT-PRIVATE-9", certificate="CERT-PRIVATE-10")
    head = api.lot(lot)["head"]
    page = api.client.get(f"/l/{lot}", params={"at": head})
    assert page.status_code == 200, page.text
    text = re.sub(r"[0-9a-f]{12,}", "", page.text)  # event ids and keys
    assert "PRIVATE" not in text
    digits = re.sub(r"\D", "", text)
    for figure in ("246802", "135791", "987651", "412309", "777113", "555337", "555339"):
        assert figure not in digits, figure
    assert "UGX: withheld" in page.text  # the small group's payment, withheld


# ---------------------------------------------------------------------------
# "detail (a plain sentence a cooperative treasurer understands)": also for bad query
# parameters, which FastAPI checks (its words name regular expressions and types)

PLAIN_QUERY_DETAILS = [
    ("/v1/lots?status=lost", "status: 'lost' is not one of active, offered, consumed."),
    ("/v1/lots?risk=extreme", "risk: 'extreme' is not one of low, medium, high, hold."),
    ("/v1/lots?custodian=Coop%20A", "custodian: 'Coop A' is not an actor id"),
    ("/v1/lots?site=x", "site: 'x' is not a site id"),
    ("/v1/lots/COOP-0001/bundle?at=XYZ", "at: 'XYZ' is not an event id"),
    ("/v1/log/entries?limit=0", "limit: '0' is not a whole number of at least 1"),
    ("/v1/actors?limit=ten", "limit: 'ten' is not a whole number of at least 1"),
    ("/v1/log/entries?start=-1", "start: '-1' is not a position in the log"),
    ("/v1/log/entries?start=99999999999999999999", "start: 99999999999999999999 is too large"),
    ("/v1/log/proof/inclusion?index=x&size=1", "index: 'x' is not a position in the log"),
    ("/v1/log/proof/inclusion?size=1", "index is missing: it must be a position in the log"),
    ("/v1/log/proof/inclusion?index=0&size=0", "size: '0' is not a size of the log"),
    ("/v1/log/proof/consistency?first=0&second=1", "first: '0' is not a size of the log"),
    ("/v1/log/proof/consistency?first=1", "second is missing: it must be a size of the log"),
]


@pytest.mark.parametrize(("query", "words"), PLAIN_QUERY_DETAILS)
def test_bad_query_parameters_are_explained_in_plain_words(
    sqlite_api: Api, query: str, words: str
) -> None:
    problem = refusal(sqlite_api, lambda: sqlite_api.client.get(query), 422, "schema")
    detail = problem["detail"]
    assert detail.startswith(words), detail
    for jargon in ("Input should", "String should", "pattern", "^", "Field required", "{"):
        assert jargon not in detail, detail
    # a read's 422 is about its parameters, not an event
    assert problem["title"] == "Invalid request parameter"


def test_a_reads_ledger_422_is_titled_for_its_parameters_an_events_for_the_event(
    sqlite_api: Api,
) -> None:
    # the ledger's own parameter check (index beyond the log) on a read
    size = sqlite_api.client.get("/v1/log").json()["size"]
    read = refusal(
        sqlite_api,
        lambda: sqlite_api.client.get(f"/v1/log/proof/inclusion?index={size}&size={size + 1}"),
        422,
        "schema",
    )
    assert read["title"] == "Invalid request parameter"
    # an event the rules find malformed keeps the event's title
    posted = refusal(
        sqlite_api,
        lambda: sqlite_api.client.post("/v1/events", json={"body": {}, "signature": {}}),
        422,
        "schema",
    )
    assert posted["title"] == "Unprocessable event"
