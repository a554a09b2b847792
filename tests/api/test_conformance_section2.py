"""PROTOCOL.md section 2, the sentences on time and re-posts, at their edges through HTTP.

- "The server refuses a ``time`` more than 5 minutes ahead of its own clock": exactly 5
  minutes ahead is not more;
- "... a ``time`` earlier than the time of any event the body names (``prev``,
  ``inputs[].prev``, ``offer``), and a ``time`` earlier than the event that gave the signer
  its key": an equal time is not earlier; and (section 6) "The time rule compares only with
  named events that exist; an unknown ``prev`` then fails as ``stale_prev``";
- "Re-posting an envelope already in the log, byte for byte in canonical form, is
  idempotent: once its signature checks out against ``signature.key``, the server answers
  with the receipt as first issued, original checkpoint included, whatever has happened
  since ... The same body under a different signature is refused (409
  ``duplicate_event``)."
"""

from __future__ import annotations

import copy
import datetime as dt
import json

from .conftest import NOW, Api, HttpWorld, check_problem, factories, refusal

fmt = factories.fmt_time


def _at(when: str, seconds: int) -> str:
    return fmt(factories.parse_time(when) + dt.timedelta(seconds=seconds))


def test_time_rules_at_their_edges(sqlite_api: Api) -> None:
    api = sqlite_api
    w: HttpWorld = api.world().standard()
    # "more than 5 minutes ahead" of the server's clock: one second more is, 5:00 is not
    assert api.clock.now == NOW
    ahead = NOW + dt.timedelta(minutes=5)
    refusal(
        api,
        lambda: api.post(w.register_lot(post=False, time=ahead + dt.timedelta(seconds=1))),
        422,
        "future_time",
    )
    lot = w.register_lot(time=ahead).body["lot"]
    api.clock.now = NOW + dt.timedelta(days=1)
    registered = w.head(lot)
    when = w.ledger.state.event(registered).time

    # prev: one second earlier is refused, the same second is not
    too_early = w.offer(lot, "trader", post=False, time=_at(when, -1))
    refusal(api, lambda: api.post(too_early), 422, "time_order")
    offer = w.offer(lot, "trader", time=when)
    # offer (named by an answer, here after a flag moved the head)
    flag = w.flag(lot, "bribery", time=when)
    early = w.reject(lot, post=False, time=_at(when, -1))
    assert early.body["prev"] == flag.id and early.body["offer"] == offer.id
    refusal(api, lambda: api.post(early), 422, "time_order")
    w.reject(lot, time=when)
    # an unknown prev: the time rule has nothing to compare with, the lot has moved on
    unknown = w.offer(lot, "trader", post=False, prev="ab" * 32, time=_at(when, -3600))
    refusal(api, lambda: api.post(unknown), 409, "stale_prev")
    # inputs[].prev: a merge one second before its second input's head
    other = w.register_lot(time=_at(when, 60))
    merge = w.merge([lot, other.body["lot"]], post=False, time=_at(when, 59))
    refusal(api, lambda: api.post(merge), 422, "time_order")

    # the event that gave the signer its key: a rotation signed by the registrar
    rotation = w.rotate_key("coop", signer="registrar", time=_at(when, 120))
    before_key = w.register_lot(post=False, time=_at(rotation.body["time"], -1))
    refusal(api, lambda: api.post(before_key), 422, "time_order")
    problem = check_problem(api.post(before_key), 422, "time_order")
    assert "'coop' its key" in problem["detail"]
    w.register_lot(time=rotation.body["time"])  # the same second: accepted

    # a new actor's first event may not come before its registration
    registration = w.register_actor("auditor2", ["auditor"], time=_at(when, 180))
    flag = w.flag(lot, "bribery", actor="auditor2", post=False, time=_at(when, 179))
    refusal(api, lambda: api.post(flag), 422, "time_order")
    w.flag(lot, "bribery", actor="auditor2", time=registration.body["time"])


def test_reposts_whatever_has_happened_since(api: Api) -> None:
    w: HttpWorld = api.world().standard()
    w.register_actor("coop3", ["cooperative"], lot_prefix="CP3-")
    w.register_site("site-c", "coop3")
    registration = w.register_lot(site="site-c")
    first = w.receipts[-1]
    lot = registration.body["lot"]
    # since then: the lot was sold, split (consumed), its signer's key rotated, the signer
    # revoked
    w.transfer(lot, "trader")
    w.split(lot, [1000, 2000])
    w.rotate_key("coop3")
    w.revoke("coop3")
    size = api.log()["size"]

    # byte for byte in canonical form, whatever the bytes sent: indented, keys reversed
    envelope = registration.envelope
    for sent in (
        json.dumps(envelope).encode(),
        json.dumps(envelope, indent=3, ensure_ascii=True).encode(),
        json.dumps(dict(reversed(list(envelope.items())))).encode(),
    ):
        response = api.client.post("/v1/events", content=sent)
        assert response.status_code == 200, response.text
        assert response.json() == first  # the checkpoint it was first answered with
        batch = api.client.post("/v1/events/batch", content=b'{"events": [' + sent + b"]}")
        assert batch.status_code == 200, batch.text
        assert batch.json()["receipts"] == [first]
    assert api.log()["size"] == size

    # the signature is checked first: a broken one is not a re-post
    broken = copy.deepcopy(envelope)
    value = broken["signature"]["value"]
    broken["signature"]["value"] = ("1" if value[0] == "0" else "0") + value[1:]
    refusal(api, lambda: api.post(broken), 401, "bad_signature")
    # the same body under another valid signature: by the same key (Ed25519 verification
    # accepts any nonce), by another key the signer held, or by someone else's key
    twins = [
        factories.alt_signature(registration, w.old_keys["coop3"][-1], api.settings.origin),
        factories.resign(registration, w.keys["coop3"], api.settings.origin),
        factories.resign(registration, w.keys["coop"], api.settings.origin),
    ]
    for twin in twins:
        assert twin.id == registration.id and twin.envelope != envelope
        refusal(api, lambda twin=twin: api.post(twin), 409, "duplicate_event")
        refusal(api, lambda twin=twin: api.batch([envelope, twin]), 409, "duplicate_event", 1)
