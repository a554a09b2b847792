"""PROTOCOL.md section 5 through HTTP, where no test read it back from the API.

- "A site's status on a date comes from its latest assessment in the log: as assessed
  while `valid_until` is on or after that date; after it, a green or yellow site counts as
  `blue`, a red one stays red. A site never assessed is `blue`. Site `findings` are
  recorded but raise no lot flag": ``GET /v1/sites`` gives the status on the server's
  date, while a registration's flags follow the status on the event's own date;
- "An actor with a custody role has a `lot_prefix`, given by the registrar with the first
  custody role and never changed", "(the old key stops being valid)", "final: its keys stop
  being valid, it can no longer ... be updated or rotated": ``GET /v1/actors/{id}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conftest import NOW, Api, refusal

TODAY = NOW.date()
YESTERDAY = (TODAY - dt.timedelta(days=1)).isoformat()


def _site(api: Api, site: str) -> dict[str, Any]:
    response = api.client.get(f"/v1/sites/{site}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_a_sites_status_is_its_latest_assessment_while_valid(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world().standard()
    colours = {
        "site-g": ("green", YESTERDAY, "blue"),  # expired: a green site counts as blue
        "site-y": ("yellow", YESTERDAY, "blue"),  # so does a yellow one
        "site-r": ("red", YESTERDAY, "red"),  # a red one stays red
        "site-v": ("yellow", TODAY.isoformat(), "yellow"),  # valid on valid_until itself
    }
    with w.batching():
        for site, (status, valid_until, _) in colours.items():
            w.register_site(site, "coop")
            w.assess_site(site, status, assessed_on="2026-10-01", valid_until=valid_until)
        w.register_site("site-n", "coop")  # never assessed
        w.register_site("site-l", "coop")
        w.assess_site("site-l", "red")
        workforce = {"women": 3, "men": 4}
        w.assess_site("site-l", "green", findings=["child_labour"], workforce=workforce)
    for site, (_, _, today) in colours.items():
        assert _site(api, site)["status"] == today, site
    assert _site(api, "site-n")["status"] == "blue"
    latest = _site(api, "site-l")  # the latest assessment in the log, not the worst
    assert latest["status"] == "green"
    assert latest["assessment"]["findings"] == ["child_labour"]  # recorded
    assert latest["assessment"]["indicators"] == {"workforce": {"women": 3, "men": 4}}
    listed = {s["id"]: s["status"] for s in api.client.get("/v1/sites").json()["items"]}
    assert {s: listed[s] for s in colours} == {s: c[2] for s, c in colours.items()}
    # a registration reads the status on its own date (still green there), not today's;
    # and the findings raise no lot flag
    lot = w.register_lot(site="site-g", actor="coop").body["lot"]
    assert api.lot(lot)["flags"] == [] and api.lot(lot)["risk"] == "low"
    lot = w.register_lot(site="site-l", actor="coop").body["lot"]
    assert api.lot(lot)["flags"] == []
    reg = w.register_lot(site="site-n", actor="coop")
    assert [f["code"] for f in api.lot(reg.body["lot"])["flags"]] == ["site_unassessed"]
    refused = w.register_lot(site="site-r", actor="coop", post=False)
    refusal(api, lambda: api.post(refused), 409, "site_red")


def test_an_actors_prefix_keys_and_status_read_back(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world().standard()
    with w.batching():
        w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="ASY-")
        w.update_actor("assayer", roles=["assayer"])
        w.update_actor("assayer", roles=["assayer", "exporter"])  # the same prefix again
        w.rotate_key("assayer", signer="registrar")
        w.revoke("assayer")
    actor = api.client.get("/v1/actors/assayer").json()
    assert actor["roles"] == ["assayer", "exporter"] and actor["lot_prefix"] == "ASY-"
    assert actor["status"] == "revoked"
    assert [k["ended"] for k in actor["keys"]] == ["rotated", "revoked"]
    assert actor["keys"][0]["until_seq"] == actor["keys"][1]["since_seq"]
    refusal(
        api,
        lambda: api.post(w.update_actor("assayer", name="Renamed", post=False)),
        403,
        "actor_revoked",
    )
    refusal(
        api,
        lambda: api.post(w.rotate_key("assayer", signer="registrar", post=False)),
        403,
        "actor_revoked",
    )
    lot = w.register_lot(actor="coop").body["lot"]  # it can no longer receive lots
    refusal(api, lambda: api.post(w.offer(lot, "assayer", post=False)), 403, "actor_revoked")
