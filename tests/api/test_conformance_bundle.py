"""PROTOCOL.md section 7, "A bundle ...", as served by ``GET /v1/lots/{lot}/bundle``.

The entry selection had been checked sentence by sentence only on bundles built over the
in-memory ledger (tests/ledger/test_bundle.py); the server builds its bundles over SQL
(``SqlLogReader``), and a verifier accepts a bundle holding more than it needs, so that
extra or missing site and actor events would have gone unseen. Here a log with a second
registrar, key rotations, re-assessments before and after registrations, a merge, a split
and a pending offer is posted to the app (SQLite and PostgreSQL), and for every lot the
served bundle must be exactly the bundle of the page:

- its header: ``format``, ``lot``, ``head`` (the lot's current head), ``label_at``
  (``?at=`` echoed, or null), ``log`` ``{origin, verifier_key, registrar_key}``, and the
  latest ``checkpoint``;
- its ``entries``: sorted by ``seq``, each once, each with its inclusion proof against
  ``checkpoint``, and exactly the seqs ``tests/ledger/test_bundle.section7_seqs`` picks
  by brute force from the sentence (provenance, the origin sites' events logged before the
  registrations that name them, the signers' ``actor.*`` events to a fixed point);
- the same entries as the in-memory ledger builds, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.bundle import build_bundle
from ledger.checkpoint import open_checkpoint
from ledger.verify import BUNDLE_FORMAT, verify_bundle
from tests import factories
from tests.ledger.test_bundle import check_proofs, section7_seqs

from .conftest import Api, check_problem


def _world() -> factories.World:
    """A log whose bundles need every clause of the selection (see test_bundle's world)."""
    w = factories.World()
    w.register_actor("registrar2", ["registrar"])
    w.register_actor("auditor", ["auditor"], country="UG")
    w.rotate_key("registrar")
    w.register_actor("coop", ["cooperative"], signer="registrar2", lot_prefix="COOP-")
    w.register_actor("trader", ["trader"], signer="registrar2", lot_prefix="TRD-")
    w.register_actor("bystander", ["trader"], lot_prefix="BYS-")
    w.rotate_key("bystander")
    w.register_actor("buyer", ["trader"], lot_prefix="BUY-")
    w.register_site("site-a", "coop", signer="registrar2")
    w.assess_site("site-a", "green", signer="auditor")
    w.register_site("site-b", "coop")
    w.assess_site("site-b", "green")
    w.register_site("site-c", "coop")  # never an origin
    w.rotate_key("coop")
    lots = [w.register_lot("COOP-L1", "site-a").body["lot"]]
    lots.append(w.register_lot("COOP-L2", "site-b").body["lot"])
    w.assess_site("site-a", "yellow", signer="auditor")
    lots.append(w.register_lot("COOP-L3", "site-a").body["lot"])
    for lot in lots:
        w.transfer(lot, "trader")
    w.merge(lots, into="TRD-M")
    mass = w.lot("TRD-M").mass_mg
    w.split("TRD-M", [mass // 2, mass - mass // 2], ids=["TRD-S1", "TRD-S2"])
    w.transfer("TRD-S2", "bystander")
    w.offer("TRD-S1", "buyer")
    w.assess_site("site-a", "green", signer="auditor")  # after every registration
    w.assess_site("site-b", "red", signer="auditor")
    w.rotate_key("coop")
    w.update_actor("trader", name="Trader renamed")
    w.register_lot("COOP-L4", "site-a")
    w.flag("COOP-L4", "bribery")
    return w


def test_served_bundles_hold_exactly_what_section_7_lists(
    database_url: str, make_api: Callable[..., Api]
) -> None:
    w = _world()
    envelopes = w.ledger.envelopes
    api = make_api(database_url, registrar_key=factories.public_key_hex(w.registrar_key))
    response = api.batch(envelopes)
    assert response.status_code == 201, response.text
    log = api.log()
    size = log["size"]
    assert size == len(envelopes)
    latest = api.client.get("/v1/log/checkpoint").text
    checkpoint = open_checkpoint(latest, log["verifier_key"])
    assert (checkpoint.size, checkpoint.root.hex()) == (size, log["root"])

    for lot, state in sorted(w.ledger.state.lots.items()):
        chain = api.client.get(f"/v1/lots/{lot}/events").json()["items"]
        for at in (None, chain[0]["event_id"]):
            params = {} if at is None else {"at": at}
            served = api.client.get(f"/v1/lots/{lot}/bundle", params=params)
            assert served.status_code == 200, served.text
            bundle: dict[str, Any] = served.json()
            assert {k: v for k, v in bundle.items() if k != "entries"} == {
                "format": BUNDLE_FORMAT,
                "lot": lot,
                "head": state.head,
                "label_at": at,
                "log": {
                    "origin": log["origin"],
                    "verifier_key": log["verifier_key"],
                    "registrar_key": log["registrar_key"],
                },
                "checkpoint": latest,
            }, lot
            seqs = [e["seq"] for e in bundle["entries"]]
            assert seqs == sorted(set(seqs)), lot
            assert set(seqs) == section7_seqs(envelopes, state.head, size), lot
            for item in bundle["entries"]:
                assert item["envelope"] == envelopes[item["seq"]]
            check_proofs(bundle, log["verifier_key"])
            memory = build_bundle(
                w.ledger,
                lot=lot,
                head=state.head,
                label_at=at,
                origin=log["origin"],
                verifier_key=log["verifier_key"],
                registrar_key=log["registrar_key"],
                checkpoint_note=latest,
                size=size,
            )
            assert bundle == memory, lot
            report = verify_bundle(served.content, log["verifier_key"], log["registrar_key"])
            assert report.ok, (lot, [str(f) for f in report.failures])
            assert report.label_at == at
            assert len(report.after_label) == (0 if at is None else len(chain) - 1)

    # the clauses this log exercises (seqs as built above)
    s1 = {e["seq"] for e in api.client.get("/v1/lots/TRD-S1/bundle").json()["entries"]}
    types = [
        (e["body"]["type"], e["body"].get("subject", e["body"].get("site"))) for e in envelopes
    ]
    before, after = (i for i, t in enumerate(types) if t == ("site.assessed", "site-b"))
    assert before in s1 and after not in s1  # site-b: assessed before L2, not after
    never = {i for i, t in enumerate(types) if t[1] in ("bystander", "buyer", "site-c")}
    assert never and not never & s1  # not the offer's recipient, nor an unrelated site
    renamed = types.index(("actor.updated", "trader"))
    assert renamed in s1  # every actor.* event about a signer, up to the checkpoint

    # ?at= an event off the lot's own chain: 404 unknown_event
    other = api.lot("COOP-L4")["head"]
    check_problem(
        api.client.get("/v1/lots/TRD-S1/bundle", params={"at": other}), 404, "unknown_event"
    )
