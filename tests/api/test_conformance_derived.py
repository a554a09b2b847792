"""The derived lot state agrees four ways, exactly as PROTOCOL.md sections 5-7 compute it.

One log with the edge cases of the derived fields is built over HTTP; for every lot,
``GET /v1/lots/{lot}`` (the server's projections), ``lot_view`` over the client's
``MemoryLedger`` mirror, the offline verifier's report on ``GET /v1/lots/{lot}/bundle``
and ``tests/protocol_state.py`` (the page read literally, no ledger code) give the same
fields; the values the page fixes are then checked one by one.
"""

from __future__ import annotations

from typing import Any

from ledger.verify import verify_bundle
from ledger.views import lot_view
from tests import factories as F
from tests import protocol_state
from tests.factories import out

from .conftest import Api


def test_four_ways_agree_on_every_derived_field(api: Api) -> None:
    w = api.world().standard()
    w.register_actor("exporter-cd", ["exporter"], lot_prefix="EXC-")
    w.assess_site("site-a", "yellow", cahra=True)
    a = w.register_lot(
        mass_mg=1_500,
        fineness_ppm=999_999,
        producers={"women": 3, "men": 1, "women_led": True},
        payment={"total": F.money(5_000, "USD"), "to_women": F.money(4_000, "USD")},
    )
    b = w.register_lot(
        site="site-b",
        mass_mg=1_500,
        fineness_ppm=999_999,
        producers={"women": 2, "men": 2, "women_led": True},
        declarations={"armed_groups": "nearby"},
        payment={"total": F.money(700_000, "CDF"), "to_women": F.money(100_000, "CDF")},
    )
    c = w.register_lot(site="site-b", mass_mg=10**9, fineness_ppm=900_000, women=1, men=0, days=1)
    la, lb, lc = (x.body["lot"] for x in (a, b, c))
    hold = w.flag(la, "serious_abuse")
    w.resolve(la, hold.flag_id("serious_abuse"), "remediated")
    bribery = w.flag(la, "bribery")
    w.split(la, [700, 700], ids=["COOP-A1", "COOP-A2"])
    w.resolve("COOP-A1", bribery.flag_id("bribery"), "unfounded")
    w.transfer(lb, "coop")
    # the registration of `la` is reached through two paths (COOP-A1 and COOP-A2)
    merged = w.process(
        ["COOP-A1", "COOP-A2", lb], [out("COOP-M", 2_000, 900_000)], process="amalgamation_open"
    )
    w.transfer("COOP-M", "exporter-cd")
    w.export("COOP-M", "CH")
    crossing = w.transfer("COOP-M", "exporter")  # CD -> UG, exported to CH: undeclared
    offer = w.offer("COOP-M", "refiner", mass_mg=1_000)
    w.transfer(lc, "trader")
    w.offer(lc, "trader2")
    w.reject(lc)
    w.offer(lc, "trader2")
    w.cancel(lc)
    assay = w.assay(lc, 950_001, mass_mg=10**9 - 5 * 10**6)

    log = api.log()
    recomputed = protocol_state.lot_states(w.envelopes())
    assert sorted(recomputed) == sorted(w.ledger.state.lots)
    for lot_id, lot in w.ledger.state.lots.items():
        server = api.lot(lot_id)
        mirror = lot_view(w.ledger.state, lot)
        assert server == mirror, lot_id
        response = api.client.get(f"/v1/lots/{lot_id}/bundle")
        assert response.status_code == 200, response.text
        report = verify_bundle(response.content, log["verifier_key"], log["registrar_key"])
        assert report.ok, [str(f) for f in report.failures]
        assert report.state == server, lot_id
        assert protocol_state.comparable(server) == recomputed[lot_id], lot_id
        if lot.status != "consumed":
            listed = api.client.get("/v1/lots", params={"risk": server["risk"], "limit": 1000})
            assert lot_id in [item["lot"] for item in listed.json()["items"]]

    m = api.lot("COOP-M")
    flags: dict[str, Any] = {f["id"]: f for f in m["flags"]}
    assert flags == {
        a.flag_id("cahra_origin"): {
            "id": a.flag_id("cahra_origin"),
            "code": "cahra_origin",
            "class": "medium",
            "status": "open",
        },
        a.flag_id("site_yellow"): {
            "id": a.flag_id("site_yellow"),
            "code": "site_yellow",
            "class": "medium",
            "status": "open",
        },
        # a hold resolved as remediated is carried with its status and outcome
        hold.flag_id("serious_abuse"): {
            "id": hold.flag_id("serious_abuse"),
            "code": "serious_abuse",
            "class": "hold",
            "status": "resolved",
            "outcome": "remediated",
        },
        # resolved on COOP-A1 only: still open on COOP-A2, so open on the merge
        bribery.flag_id("bribery"): {
            "id": bribery.flag_id("bribery"),
            "code": "bribery",
            "class": "high",
            "status": "open",
        },
        b.flag_id("armed_groups_nearby"): {
            "id": b.flag_id("armed_groups_nearby"),
            "code": "armed_groups_nearby",
            "class": "medium",
            "status": "open",
        },
        merged.flag_id("mercury_worst_practice"): {
            "id": merged.flag_id("mercury_worst_practice"),
            "code": "mercury_worst_practice",
            "class": "medium",
            "status": "open",
        },
        crossing.flag_id("undeclared_border_crossing"): {
            "id": crossing.flag_id("undeclared_border_crossing"),
            "code": "undeclared_border_crossing",
            "class": "high",
            "status": "open",
        },
        offer.flag_id("mass_discrepancy"): {
            "id": offer.flag_id("mass_discrepancy"),
            "code": "mass_discrepancy",
            "class": "high",
            "status": "open",
        },
    }
    assert {k: m[k] for k in ("status", "hold", "risk", "exported", "destination")} == {
        "status": "offered",
        "hold": False,
        "risk": "high",
        "exported": True,  # exported on its own chain
        "destination": None,  # cleared by the acceptance
    }
    assert (m["custodian"], m["country"], m["head"], m["mass_mg"]) == (
        "exporter",
        "UG",
        offer.id,
        2_000,
    )
    assert m["offer"] == {"id": offer.id, "to": "refiner", "mass_mg": 1_000}
    assert m["origins"] == ["site-a", "site-b"]
    # la once (though reached twice) and lb: 2 × 1 500 × 999 999 = 2 999 997 000, rounded
    # down once to 2 999 mg (1 499 + 1 499 = 2 998 if each lot were rounded)
    assert m["gender"] == {
        "producers": {"women": 5, "men": 3},
        "women_led_fine_mg": 2_999,
        "origin_fine_mg": 2_999,
        "paid": [
            {"currency": "CDF", "total": 700_000, "to_women": 100_000},
            {"currency": "USD", "total": 5_000, "to_women": 4_000},
        ],
    }

    # a lot with no payment; its offers rejected and cancelled leave no offer
    c_view = api.lot(lc)
    assert (c_view["status"], c_view["offer"], c_view["custodian"], c_view["country"]) == (
        "active",
        None,
        "trader",
        "CD",
    )
    assert (c_view["mass_mg"], c_view["fineness_ppm"], c_view["head"]) == (
        10**9 - 5 * 10**6,
        950_001,
        assay.id,
    )
    assert [(f["id"], f["class"]) for f in c_view["flags"]] == [
        (c.flag_id("implausible_volume"), "high"),
        (assay.flag_id("fineness_discrepancy"), "medium"),  # raised by 50 001 ppm
    ]
    assert c_view["risk"] == "high"
    assert c_view["gender"] == {
        "producers": {"women": 1, "men": 0},
        "women_led_fine_mg": 0,
        "origin_fine_mg": 900_000_000,
        "paid": [],
    }
    # the inputs of the merge: consumed, head the merge, not inherited anything back
    for consumed in ("COOP-A1", "COOP-A2", lb):
        view = api.lot(consumed)
        assert (view["status"], view["head"], view["offer"]) == ("consumed", merged.id, None)
