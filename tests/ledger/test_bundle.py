"""What a provenance bundle holds (PROTOCOL.md section 7), over the in-memory ledger.

A bundle for a head holds: every event reachable from the head through ``prev`` and
``inputs[].prev``; every ``actor.*`` event, up to the checkpoint's size, about every actor
that signed an included event and, transitively, about the registrars that registered or
rotated them, down to seq 0; and the ``site.registered`` / ``site.assessed`` events of every
origin site logged before the registrations that name it. The expected entries are
computed here by a separate, naive reading of that paragraph, and by hand for small cases.
"""

from __future__ import annotations

import copy
from typing import Any

import nacl.signing
import pytest

from clients.scenario import ScenarioPlayer, load_scenario
from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner, open_checkpoint
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.protocol import canonical, event_id, public_key_hex
from ledger.replay import MemoryLedger
from ledger.verify import BUNDLE_FORMAT, Report, verify_bundle
from ledger.views import lot_view
from tests import factories

ORIGIN = "demo.goldtrail.example/log"
BAR = "ALP-2026-118842"
DORE = "KLA-2026-0101"
SCENARIO = load_scenario()
EXPECTED = SCENARIO["expected"]


# ---------------------------------------------------------------------------
# The reference selection: section 7 read literally, over the whole log


def _links(body: dict[str, Any]) -> list[str]:
    return ([body["prev"]] if "prev" in body else []) + [i["prev"] for i in body.get("inputs", [])]


def section7_seqs(envelopes: list[dict[str, Any]], head: str, size: int) -> set[int]:
    """The seqs a bundle for ``head`` at tree ``size`` must hold, by brute force."""
    log = envelopes[:size]
    by_id = {event_id(e["body"]): (seq, e["body"]) for seq, e in enumerate(log)}
    provenance: set[str] = set()
    todo = [head]
    while todo:
        eid = todo.pop()
        if eid not in provenance:
            provenance.add(eid)
            todo += _links(by_id[eid][1])
    seqs = {by_id[eid][0] for eid in provenance}
    last_registration: dict[str, int] = {}
    for eid in provenance:
        seq, body = by_id[eid]
        if body["type"] == "lot.registered":
            last_registration[body["site"]] = max(seq, last_registration.get(body["site"], -1))
    seqs |= {
        seq
        for seq, e in enumerate(log)
        if e["body"]["type"] in ("site.registered", "site.assessed")
        and seq < last_registration.get(e["body"]["site"], -1)
    }
    while True:  # signers, then whoever signed their actor events, to a fixed point
        signers = {log[seq]["body"]["actor"] for seq in seqs}
        more = {
            seq
            for seq, e in enumerate(log)
            if e["body"]["type"].startswith("actor.") and e["body"]["subject"] in signers
        }
        if more <= seqs:
            return seqs
        seqs |= more


def entry_seqs(bundle: dict[str, Any]) -> list[int]:
    return [e["seq"] for e in bundle["entries"]]


def check_proofs(bundle: dict[str, Any], log_key: str) -> None:
    """Every entry's inclusion proof, checked directly against the opened checkpoint."""
    checkpoint = open_checkpoint(bundle["checkpoint"], log_key)
    for item in bundle["entries"]:
        verify_inclusion(
            leaf_hash(canonical(item["envelope"])),
            item["seq"],
            checkpoint.size,
            [bytes.fromhex(h) for h in item["proof"]],
            checkpoint.root,
        )


# ---------------------------------------------------------------------------
# The demo scenario


class Scenario:
    def __init__(self) -> None:
        self.registrar = nacl.signing.SigningKey(b"\x41" * 32)
        self.registrar_key = public_key_hex(self.registrar)
        self.ledger = MemoryLedger(ORIGIN, self.registrar_key)
        self.signer = LogSigner(ORIGIN, b"\x42" * 32)
        player = ScenarioPlayer(ORIGIN, first_registrar_key=self.registrar)
        for raw in SCENARIO["events"]:
            self.ledger.append(player.envelope(raw, self.lookup))

    def lookup(self, lot: str) -> dict[str, Any]:
        return self.ledger.state.lots[lot].model_dump(mode="json", by_alias=True)

    @property
    def size(self) -> int:
        return len(self.ledger.leaves)

    def eid(self, seq: int) -> str:
        return event_id(self.ledger.envelopes[seq]["body"])

    def bundle(
        self,
        lot: str,
        head: str | None = None,
        label_at: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        size = self.size if size is None else size
        return build_bundle(
            self.ledger,
            lot=lot,
            head=head or self.ledger.state.lots[lot].head,
            label_at=label_at,
            origin=ORIGIN,
            verifier_key=self.signer.verifier_key,
            registrar_key=self.registrar_key,
            checkpoint_note=self.signer.sign(size, self.ledger.root(size)).note,
            size=size,
        )

    def verify(self, bundle: dict[str, Any]) -> Report:
        return verify_bundle(canonical(bundle), self.signer.verifier_key, self.registrar_key)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def test_bar_bundle_header_and_entries(scenario: Scenario) -> None:
    head = scenario.ledger.state.lots[BAR].head
    bundle = scenario.bundle(BAR, label_at=head)
    assert set(bundle) == {"format", "lot", "head", "label_at", "log", "checkpoint", "entries"}
    assert BUNDLE_FORMAT == "goldtrail-bundle/1"
    assert (bundle["format"], bundle["lot"], bundle["head"], bundle["label_at"]) == (
        BUNDLE_FORMAT,
        BAR,
        head,
        head,
    )
    assert bundle["log"] == {
        "origin": ORIGIN,
        "verifier_key": scenario.signer.verifier_key,
        "registrar_key": scenario.registrar_key,
    }
    assert bundle["checkpoint"] == scenario.signer.sign(scenario.size, scenario.ledger.root()).note
    seqs = entry_seqs(bundle)
    assert seqs == sorted(set(seqs)), "entries sorted by seq, each once"
    # the bar comes from every lot of the scenario, so every event is in its provenance
    assert set(seqs) == section7_seqs(scenario.ledger.envelopes, head, scenario.size)
    assert seqs == list(range(scenario.size))
    for item in bundle["entries"]:
        assert set(item) == {"seq", "envelope", "proof"}
        assert item["envelope"] == scenario.ledger.envelopes[item["seq"]]
    check_proofs(bundle, scenario.signer.verifier_key)
    report = scenario.verify(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert report.state is not None
    assert report.state["origins"] == EXPECTED["origins"]
    assert report.state["risk"] == EXPECTED["bar_risk"]
    assert report.state["gender"] == EXPECTED["bar_gender"]
    assert sorted(f["code"] for f in report.state["flags"] if f["status"] == "open") == sorted(
        EXPECTED["open_flags_on_bar"]
    )


def test_bundles_are_deterministic(scenario: Scenario) -> None:
    first = canonical(scenario.bundle(BAR))
    again = canonical(scenario.bundle(BAR))
    assert first == again


def test_origin_lot_at_its_acceptance(scenario: Scenario) -> None:
    """The Mambasa gold when Bunia accepted it (seq 26): its own three events, the two
    actors who signed them, the auditor who assessed the site, the registrar at seq 0, and
    the site's registration and assessment; nothing of the other chains."""
    head = scenario.eid(26)
    assert scenario.ledger.envelopes[26]["body"]["type"] == "lot.transfer_accepted"
    bundle = scenario.bundle("MAK-2026-0001", head=head, label_at=scenario.eid(18))
    expected = {
        0,  # the registrar registers itself
        1,  # the auditor (it signed the site's assessment)
        2,  # the Mambasa women's cooperative
        6,  # the Bunia trading house
        11,  # site-mambasa-makala registered
        14,  # and assessed, before the lot's registration
        18,  # lot.registered
        25,  # offered to Bunia
        26,  # accepted by Bunia
    }
    assert set(entry_seqs(bundle)) == expected
    assert expected == section7_seqs(scenario.ledger.envelopes, head, scenario.size)
    check_proofs(bundle, scenario.signer.verifier_key)
    report = scenario.verify(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert [t.seq for t in report.after_label] == [25, 26]
    assert report.state is not None
    assert report.state["custodian"] == "trader-bunia"
    assert report.state["origins"] == ["site-mambasa-makala"]


def test_intermediate_lot_at_an_earlier_head(scenario: Scenario) -> None:
    """The doré accepted by the exporter (seq 38): all three input chains through the
    smelting, every signer, the three sites; not the refiner nor anything after seq 38."""
    head = scenario.eid(38)
    body = scenario.ledger.envelopes[38]["body"]
    assert (body["type"], body["lot"], body["actor"]) == (
        "lot.transfer_accepted",
        DORE,
        "exporter-kampala",
    )
    bundle = scenario.bundle(DORE, head=head, label_at=scenario.eid(36))
    expected = set(range(39)) - {10}  # 10: the Alpine refinery, not yet involved
    assert set(entry_seqs(bundle)) == expected
    assert expected == section7_seqs(scenario.ledger.envelopes, head, scenario.size)
    check_proofs(bundle, scenario.signer.verifier_key)
    report = scenario.verify(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert [t.seq for t in report.after_label] == [37, 38]
    assert report.state is not None
    assert report.state["origins"] == EXPECTED["origins"]
    assert report.state["gender"] == EXPECTED["bar_gender"]  # same origins as the bar


@pytest.mark.parametrize("lot", ["KIT-2026-0007", "TIW-2026-0007", "MAK-2026-0001", DORE, BAR])
def test_every_lot_matches_the_reference_selection(scenario: Scenario, lot: str) -> None:
    head = scenario.ledger.state.lots[lot].head
    bundle = scenario.bundle(lot)
    assert set(entry_seqs(bundle)) == section7_seqs(scenario.ledger.envelopes, head, scenario.size)
    report = scenario.verify(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert report.state == lot_view(scenario.ledger.state, scenario.ledger.state.lots[lot])


def test_bundle_at_an_older_checkpoint(scenario: Scenario) -> None:
    """A bundle for the doré's head as of tree size 39 (before the export) holds no later
    entry and verifies against that older checkpoint."""
    bundle = scenario.bundle(DORE, head=scenario.eid(38), size=39)
    assert max(entry_seqs(bundle)) == 38
    check_proofs(bundle, scenario.signer.verifier_key)
    report = scenario.verify(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert report.checkpoint_size == 39


def test_unknown_head_is_a_key_error(scenario: Scenario) -> None:
    with pytest.raises(KeyError):
        scenario.bundle(BAR, head="ab" * 32)


# ---------------------------------------------------------------------------
# Registrars, rotations, splits and merges (tests/factories.py World)


@pytest.fixture(scope="module")
def world() -> Any:
    """A log with a second registrar, key rotations, a merge and a split.

    seq  0 registrar registers itself
         1 registrar registers registrar2        (registrar2 is rooted at seq 0)
         2 registrar registers the auditor
         3 registrar rotates its own key
         4 registrar2 registers coop             (signed by registrar2)
         5 registrar2 registers trader
         6 registrar registers bystander         (never involved)
         7 bystander rotates its key
         8 registrar registers buyer             (only offered to, never accepting)
         9 registrar2 registers site-a (coop)
        10 auditor assesses site-a green
        11 registrar registers site-b (coop)     (with its rotated key)
        12 registrar assesses site-b green
        13 coop rotates its key
        14 L1 registered at site-a, 15 L2 at site-b
        16 auditor assesses site-a yellow         (before L3: included)
        17 L3 registered at site-a
        18..23 L1, L2, L3 offered to and accepted by trader
        24 trader merges L1 + L2 + L3 into M
        25 trader splits M into S1, S2
        26 trader offers S2 to bystander, 27 bystander accepts
        28 trader offers S1 to buyer             (the head; pending)
        29 auditor assesses site-a green again   (after every registration: excluded)
        30 coop rotates its key again            (an actor event before the checkpoint)
    """
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
    w.assess_site("site-a", "green", signer="auditor")
    w.rotate_key("coop")
    return w


def _world_bundle(w: Any, lot: str, signer: LogSigner, size: int | None = None) -> dict[str, Any]:
    ledger: MemoryLedger = w.ledger
    size = len(ledger.leaves) if size is None else size
    return build_bundle(
        ledger,
        lot=lot,
        head=ledger.state.lots[lot].head,
        label_at=None,
        origin=w.origin,
        verifier_key=signer.verifier_key,
        registrar_key=public_key_hex(w.registrar_key),
        checkpoint_note=signer.sign(size, ledger.root(size)).note,
        size=size,
    )


def _types(w: Any) -> list[tuple[str, str, str]]:
    return [
        (e["body"]["type"], e["body"]["actor"], e["body"].get("subject", e["body"].get("lot", "")))
        for e in w.ledger.envelopes
    ]


def test_world_layout(world: Any) -> None:
    """The seqs the docstring of ``world`` relies on."""
    types = _types(world)
    assert len(types) == 31
    assert types[1] == ("actor.registered", "registrar", "registrar2")
    assert types[3] == ("actor.key_rotated", "registrar", "registrar")
    assert types[4] == ("actor.registered", "registrar2", "coop")
    assert types[7] == ("actor.key_rotated", "bystander", "bystander")
    assert types[13] == ("actor.key_rotated", "coop", "coop")
    assert types[16][0] == "site.assessed" and types[17] == ("lot.registered", "coop", "COOP-L3")
    assert types[24][0] == types[25][0] == "lot.processed"
    assert types[28] == ("lot.transfer_offered", "trader", "TRD-S1")
    assert types[29][0] == "site.assessed" and types[30] == ("actor.key_rotated", "coop", "coop")


def test_transitive_registrars_rotations_splits_and_merges(world: Any) -> None:
    signer = LogSigner(world.origin, b"\x43" * 32)
    bundle = _world_bundle(world, "TRD-S1", signer)
    expected = {
        0, 1, 2, 3, 4, 5,  # both registrars (with seq 0's rotation), auditor, coop, trader
        9, 10, 11, 12, 16,  # site-a up to L3 (signed by registrar2 and the auditor), site-b
        13, 30,  # coop's rotations, up to the checkpoint
        14, 15, 17, *range(18, 24), 24, 25, 28,  # L1-L3, their transfers, merge, split, offer
    }  # fmt: skip
    assert set(entry_seqs(bundle)) == expected
    head = world.ledger.state.lots["TRD-S1"].head
    assert expected == section7_seqs(world.ledger.envelopes, head, len(world.ledger.leaves))
    # never the bystander (6, 7) nor the buyer (8), only named as an offer's recipient;
    # never the sister lot's later events (26, 27) nor the late assessment (29)
    assert not {6, 7, 8, 26, 27, 29} & set(entry_seqs(bundle))
    check_proofs(bundle, signer.verifier_key)

    report = verify_bundle(
        canonical(bundle), signer.verifier_key, public_key_hex(world.registrar_key)
    )
    assert report.ok, [str(f) for f in report.failures]
    assert report.state == lot_view(world.ledger.state, world.ledger.state.lots["TRD-S1"])
    assert report.state["status"] == "offered" and report.state["offer"]["to"] == "buyer"
    assert report.state["origins"] == ["site-a", "site-b"]
    assert report.state["gender"]["producers"] == {"women": 6, "men": 9}
    assert {s["id"]: s["status"] for s in report.sites} == {"site-a": "yellow", "site-b": "green"}
    assert [t.seq for t in report.timeline] == [14, 15, 17, *range(18, 24), 24, 25, 28]

    # the sister lot's bundle holds the bystander, who accepted it, and not the buyer
    sister = _world_bundle(world, "TRD-S2", signer)
    assert {6, 7, 26, 27} <= set(entry_seqs(sister)) and 8 not in entry_seqs(sister)


def test_actor_events_stop_at_the_checkpoint(world: Any) -> None:
    signer = LogSigner(world.origin, b"\x43" * 32)
    bundle = _world_bundle(world, "TRD-S1", signer, size=29)
    assert max(entry_seqs(bundle)) == 28  # coop's rotation at 30 is beyond the tree
    report = verify_bundle(canonical(bundle), signer.verifier_key)
    assert report.ok, [str(f) for f in report.failures]


@pytest.mark.parametrize(
    ("dropped", "failing", "actor"),
    [
        (1, 4, "registrar2"),  # registrar2's registration: its registration of coop fails
        (3, 11, "registrar"),  # seq 0's rotation: the registrar's later signatures fail
        (13, 14, "coop"),  # coop's rotation: its registrations with the new key fail
        (2, 10, "auditor"),  # the auditor's registration: its assessment fails
    ],
)
def test_every_signer_must_be_rooted_at_seq_0(
    world: Any, dropped: int, failing: int, actor: str
) -> None:
    signer = LogSigner(world.origin, b"\x43" * 32)
    bundle = copy.deepcopy(_world_bundle(world, "TRD-S1", signer))
    bundle["entries"] = [e for e in bundle["entries"] if e["seq"] != dropped]
    report = verify_bundle(canonical(bundle), signer.verifier_key)
    assert not report.ok
    first = report.failures[0]
    assert first.seq == failing
    assert first.reason == (
        "refused by the rules (unknown_key): The key that signed this event is not a key of "
        f"'{actor}' in this log."
    )
