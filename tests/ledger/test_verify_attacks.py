"""Crafted bundles handed to ``verify_bundle`` (PROTOCOL.md section 7), as an independent
implementation or a dishonest log would make them.

The attacker here holds a log key (the buyer was given it, or it leaked): its checkpoint
and every inclusion proof are genuine for the leaves it chose, so only the verifier's own
checks stand between a forged provenance and a buyer. Each forgery must be refused with the
entry and the reason; each honest variant accepted; and nothing may raise.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import nacl.signing
import pytest

from ledger import merkle
from ledger.checkpoint import LogSigner
from ledger.errors import LedgerError
from ledger.protocol import canonical, event_id, public_key_hex, sign_body
from ledger.verify import BUNDLE_FORMAT, Report, verify_bundle
from tests import factories

LOG = LogSigner(factories.ORIGIN, b"\x5a" * 32)


def fake_bundle(
    envelopes: list[dict[str, Any]],
    lot: str,
    head: str,
    *,
    seqs: list[int] | None = None,
    label_at: str | None = None,
) -> dict[str, Any]:
    """A bundle over a log of exactly ``envelopes`` (no rules applied), holding the entries
    ``seqs`` (all by default), each with a genuine inclusion proof against a checkpoint
    signed by ``LOG``."""
    tree = merkle.MemoryHashStore()
    merkle.append_leaves(tree, 0, [merkle.leaf_hash(canonical(e)) for e in envelopes])
    size = len(envelopes)
    root = merkle.tree_root(tree, size)
    return {
        "format": BUNDLE_FORMAT,
        "lot": lot,
        "head": head,
        "label_at": label_at,
        "log": {
            "origin": LOG.origin,
            "verifier_key": LOG.verifier_key,
            "registrar_key": seq0_key(envelopes),
        },
        "checkpoint": LOG.sign(size, root).note,
        "entries": [
            {
                "seq": seq,
                "envelope": envelopes[seq],
                "proof": [h.hex() for h in merkle.inclusion_proof(tree, seq, size)],
            }
            for seq in (range(size) if seqs is None else seqs)
        ],
    }


def seq0_key(envelopes: list[dict[str, Any]]) -> Any:
    """The key seq 0 is signed with, as the bundle's ``log.registrar_key`` names it (None
    when seq 0 has no well-shaped signature)."""
    signature = envelopes[0].get("signature") if envelopes else None
    return signature.get("key") if isinstance(signature, dict) else None


def verify(bundle: dict[str, Any], pinned: str | None = None, **label: Any) -> Report:
    """The report on the bundle's canonical bytes, as a buyer's device reads them."""
    return verify_bundle(canonical(bundle), LOG.verifier_key, pinned, **label)


def failures(report: Report) -> list[tuple[int | None, str]]:
    return [(f.seq, f.reason) for f in report.failures]


def refused(report: Report) -> tuple[int | None, str]:
    """The first failure of a report that must not verify, as (seq, reason)."""
    assert not report.ok, "the bundle verified but should not have"
    assert report.state is None, "a failed report must not show a recomputed state"
    return report.failures[0].seq, report.failures[0].reason


@pytest.fixture
def world() -> factories.World:
    """The standard cast, one lot registered at site-a and handed to the trader."""
    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    w.transfer("COOP-1", "trader")
    return w


def test_control_the_fake_log_bundle_verifies(world: factories.World) -> None:
    bundle = fake_bundle(world.envelopes(), "COOP-1", world.head("COOP-1"))
    report = verify(bundle, public_key_hex(world.registrar_key))
    assert report.ok, failures(report)
    assert report.state is not None and report.state["custodian"] == "trader"


# ---------------------------------------------------------------------------
# Section 7, step 3: the registrar at seq 0, whatever its envelope holds


@pytest.mark.parametrize(
    ("signature", "pinned"),
    [
        (factories.DROP, True),
        (factories.DROP, False),
        ("not an object", True),
        ({"key": 5, "value": "00" * 64}, True),
        ({"key": ["ab" * 32], "value": "00" * 64}, False),
    ],
)
def test_seq_0_with_a_malformed_signature_is_reported_not_raised(
    world: factories.World, signature: Any, pinned: bool
) -> None:
    envelopes = world.envelopes()
    if signature is factories.DROP:
        del envelopes[0]["signature"]
    else:
        envelopes[0]["signature"] = signature
    bundle = fake_bundle(envelopes, "COOP-1", world.head("COOP-1"))
    report = verify(bundle, public_key_hex(world.registrar_key) if pinned else None)
    seq, reason = refused(report)
    assert seq == 0
    assert report.failures[0].event_id == event_id(envelopes[0]["body"])
    assert reason.startswith("refused by the rules (schema): ")


# ---------------------------------------------------------------------------
# Section 3: one leaf per seq, one seq per event


@pytest.mark.parametrize(("position", "fake_seq"), [(0, False), (1, True)])
def test_a_seq_that_is_a_boolean_is_not_an_entry(
    world: factories.World, position: int, fake_seq: bool
) -> None:
    """JSON ``false`` and ``true`` are not the integers 0 and 1 (Python's bool is an int)."""
    bundle = fake_bundle(world.envelopes(), "COOP-1", world.head("COOP-1"))
    bundle["entries"][position]["seq"] = fake_seq
    assert refused(verify(bundle)) == (None, "an entry is not {seq, envelope, proof}")


def test_the_same_event_logged_twice_is_refused(world: factories.World) -> None:
    """A server answers a re-post with the first receipt and never appends it again
    (section 2): a log holding the same envelope at two seqs is not a goldtrail log."""
    envelopes = world.envelopes()
    last = len(envelopes) - 1
    envelopes.append(copy.deepcopy(envelopes[last]))  # the acceptance, again
    bundle = fake_bundle(envelopes, "COOP-1", world.head("COOP-1"))
    report = verify(bundle)
    seq, reason = refused(report)
    assert seq == last + 1
    assert report.failures[0].event_id == world.head("COOP-1")
    assert reason == f"the event is already in the log at seq {last}"


# ---------------------------------------------------------------------------
# "Never raises for a bad bundle": a bundle given as a dict may hold any Python value


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [10**30, float("nan"), {1, 2}, b"bytes", {1: "non-string key"}, _deep(100_000)],
    ids=["huge-int", "nan", "set", "bytes", "int-key", "deep"],
)
@pytest.mark.parametrize("where", ["body", "signature", "envelope"])
def test_values_json_cannot_hold_are_reported_not_raised(
    world: factories.World, value: Any, where: str
) -> None:
    bundle = fake_bundle(world.envelopes(), "COOP-1", world.head("COOP-1"))
    last = bundle["entries"][-1]
    envelope = copy.copy(last["envelope"])  # shallow copies: the deep value is never copied
    if where == "body":
        envelope["body"] = {**envelope["body"], "mass_mg": value}
    elif where == "signature":
        envelope["signature"] = {**envelope["signature"], "value": value}
    else:
        envelope["extra"] = value
    last["envelope"] = envelope
    report = verify_bundle(bundle, LOG.verifier_key)
    seq, reason = refused(report)
    assert seq == last["seq"]
    assert reason.startswith("the inclusion proof does not match the checkpoint: ")


# ---------------------------------------------------------------------------
# Section 7: the label a buyer scanned, /l/{lot}?at={event}


@pytest.fixture
def two_lots() -> factories.World:
    """COOP-1 with a label printed at its registration, then sold to the trader; COOP-2,
    a second lot of the same cooperative."""
    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    w.register_lot("COOP-2", "site-a")
    w.transfer("COOP-1", "trader")
    return w


def test_a_genuine_bundle_for_another_lot_is_not_the_labels(two_lots: factories.World) -> None:
    """A server answering /l/COOP-1?at=… with COOP-2's (valid) bundle."""
    label = two_lots.ledger.envelopes[14]["body"]
    assert (label["type"], label["lot"]) == ("lot.registered", "COOP-1")
    at = event_id(label)
    other = fake_bundle(two_lots.envelopes(), "COOP-2", two_lots.head("COOP-2"))
    assert verify(other).ok  # a bundle for COOP-2, as such
    report = verify(other, lot="COOP-1", label_at=at)
    assert refused(report) == (None, "the bundle is for lot 'COOP-2', not the label's 'COOP-1'")
    # the right lot, answered without the label: nothing would be listed since it
    bundle = fake_bundle(two_lots.envelopes(), "COOP-1", two_lots.head("COOP-1"))
    report = verify(bundle, lot="COOP-1", label_at=at)
    assert refused(report) == (
        None,
        f"the bundle's label_at is null, not the label's event {at[:12]}…",
    )
    # and with the label's event, every later event of its chain is listed
    bundle["label_at"] = at
    report = verify(bundle, lot="COOP-1", label_at=at)
    assert report.ok, failures(report)
    assert [t.type for t in report.after_label] == [
        "lot.transfer_offered",
        "lot.transfer_accepted",
    ]


# ---------------------------------------------------------------------------
# Section 7, step 5: what is shown is as the log stood when the gold was registered


def test_a_later_assessment_does_not_recolour_the_origin_site() -> None:
    """Section 7 asks a bundle to hold the site events logged before the registrations; a
    bundle may hold more (every entry is genuine), such as a green assessment made after
    the gold was registered at a yellow site. The lot's flag stays ``site_yellow`` and the
    origin site is still shown as the gold was registered under: yellow, with that
    assessment."""
    w = factories.World.standard()
    w.assess_site("site-a", "yellow")
    w.register_lot("COOP-1", "site-a")
    w.assess_site("site-a", "green", cahra=False)  # after the registration
    envelopes, head = w.envelopes(), w.head("COOP-1")
    minimal = verify(fake_bundle(envelopes, "COOP-1", head, seqs=list(range(16))))
    assert minimal.ok, failures(minimal)
    report = verify(fake_bundle(envelopes, "COOP-1", head))  # with the later assessment
    assert report.ok, failures(report)
    assert report.state is not None
    assert [f["code"] for f in report.state["flags"]] == ["site_yellow"]
    assert report.sites == minimal.sites
    assert report.sites[0]["status"] == "yellow"
    assert report.sites[0]["assessment"]["status"] == "yellow"


# ---------------------------------------------------------------------------
# Section 5, Custody: an offer's `to` must be an actor (404 unknown_actor)


def _offer_to_a_newcomer(w: factories.World, *, accepted: bool) -> tuple[list[Any], str, str]:
    """A dishonest log: COOP-1 (coop's) offered to 'newbie' before any actor 'newbie'
    exists, then the registrar registers 'newbie' and, if ``accepted``, it takes the lot.
    Returns (envelopes, the offer's id, the last event's id)."""
    w.register_lot("COOP-2", "site-a")
    offer = w.offer("COOP-2", "newbie", post=False)
    with pytest.raises(LedgerError) as refused_here:
        w.append(offer)
    assert refused_here.value.code == "unknown_actor"  # as the server refuses it
    key = nacl.signing.SigningKey.generate()
    registration = w.register_actor(
        "newbie", ["trader"], lot_prefix="NEW-", new_key=key, post=False
    )
    envelopes = [*w.envelopes(), offer.envelope, registration.envelope]
    last = offer.id
    if accepted:
        body = {
            "v": 1,
            "type": "lot.transfer_accepted",
            "actor": "newbie",
            "time": w.tick(),
            "lot": "COOP-2",
            "prev": offer.id,
            "offer": offer.id,
            "mass_mg": offer.body["mass_mg"],
        }
        envelopes.append(sign_body(body, key, factories.ORIGIN))
        last = event_id(body)
    return envelopes, offer.id, last


@pytest.mark.parametrize("accepted", [True, False], ids=["then-accepted", "still-pending"])
def test_an_offer_to_an_actor_registered_only_later_is_refused(
    world: factories.World, accepted: bool
) -> None:
    """Section 7 lets a bundle leave out the recipient of an offer never accepted, so a
    verifier cannot refuse an offer to an actor the bundle does not hold. But when the
    bundle does hold the recipient, it holds its registration: registered after the offer,
    it proves that the recipient did not exist when the lot was offered to it."""
    envelopes, offer, last = _offer_to_a_newcomer(world, accepted=accepted)
    report = verify(fake_bundle(envelopes, "COOP-2", last))
    seq, reason = refused(report)
    assert seq == envelopes.index(next(e for e in envelopes if event_id(e["body"]) == offer))
    assert report.failures[0].event_id == offer
    assert reason.startswith("refused by the rules (unknown_actor): ")
    assert "'newbie'" in reason
    if not accepted:
        # without the newcomer's registration (the last entry) it cannot tell: it verifies
        assert envelopes[-1]["body"]["subject"] == "newbie"
        seqs = list(range(len(envelopes) - 1))
        report = verify(fake_bundle(envelopes, "COOP-2", last, seqs=seqs))
        assert report.ok, failures(report)
        assert report.state is not None and report.state["offer"]["to"] == "newbie"


# ---------------------------------------------------------------------------
# Section 5, Roles: a registrar cannot remove the custody roles of an actor that holds lots


def _roles_removed_from_the_trader(w: factories.World) -> tuple[list[Any], int]:
    """A dishonest log: the registrar removes the trader's custody roles while it holds
    COOP-1. Returns (envelopes, the update's seq)."""
    update = w.update_actor("trader", roles=["auditor"], post=False)
    with pytest.raises(LedgerError) as refused_here:
        w.append(update)
    assert refused_here.value.code == "holds_lots"  # as the server refuses it
    envelopes = [*w.envelopes(), update.envelope]
    return envelopes, len(envelopes) - 1


def test_custody_roles_removed_from_the_holder_of_the_bundles_lot(
    world: factories.World,
) -> None:
    """The trader holds COOP-1 at its head, the bundle's head: a later update removing its
    custody roles is one the server refuses (409 ``holds_lots``)."""
    envelopes, at = _roles_removed_from_the_trader(world)
    report = verify(fake_bundle(envelopes, "COOP-1", world.head("COOP-1")))
    assert refused(report)[0] == at
    assert refused(report)[1].startswith("refused by the rules (holds_lots): ")
    assert "'trader'" in refused(report)[1] and "COOP-1" in refused(report)[1]


def test_custody_roles_removed_from_a_holder_whose_lot_moved_on_later(
    world: factories.World,
) -> None:
    """The trader held COOP-1 when its roles were removed, and the lot's chain goes on
    from that very head afterwards (here the trader, still its custodian, offers it on): the
    bundle proves the trader held it then."""
    envelopes, at = _roles_removed_from_the_trader(world)
    offer = world.offer("COOP-1", "trader2", post=False)  # prev: the head at the update
    envelopes.append(offer.envelope)
    report = verify(fake_bundle(envelopes, "COOP-1", offer.id))
    seq, reason = refused(report)
    assert seq == at
    assert reason.startswith("refused by the rules (holds_lots): ")


def test_custody_roles_removed_while_a_lot_of_unknown_fate_was_held() -> None:
    """A bundle holds the lots of its provenance, not where their siblings went: the
    processor split COOP-1 into PRC-1 (sold on, the bundle's lot) and PRC-2, whose later
    events the bundle of PRC-1 does not hold. An update removing the processor's custody
    roles is right if PRC-2 had left it, so the bundle verifies."""
    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    w.transfer("COOP-1", "processor")
    w.split("COOP-1", [50_000, 50_000], ids=["PRC-1", "PRC-2"])
    w.transfer("PRC-1", "trader")
    w.transfer("PRC-2", "trader2")  # not in PRC-1's bundle
    w.update_actor("processor", roles=["assayer"])  # the server accepts it
    envelopes = w.envelopes()
    sibling = {i for i, e in enumerate(envelopes) if e["body"].get("lot") == "PRC-2"}
    assert len(sibling) == 2
    seqs = [i for i in range(len(envelopes)) if i not in sibling]
    report = verify(fake_bundle(envelopes, "PRC-1", w.head("PRC-1"), seqs=seqs))
    assert report.ok, failures(report)


# ---------------------------------------------------------------------------
# Size: a hostile bundle must not make a buyer's phone hang. Whatever it holds, the
# verifier's work grows with the bundle's entries (each one signature, one replay step),
# never with their square: here a bundle whose report is large takes about as long as one
# of the same entries whose report is small.


def _timed(bundle: dict[str, Any]) -> tuple[float, Report]:
    data = canonical(bundle)
    start = time.perf_counter()
    report = verify_bundle(data, LOG.verifier_key)
    return time.perf_counter() - start, report


def _merge_all(w: factories.World, lots: list[str]) -> str:
    """Merge the lots, 100 at a time (the most inputs a process takes), into one."""
    while len(lots) > 1:
        merged = []
        for start in range(0, len(lots), 100):
            group = lots[start : start + 100]
            if len(group) > 1:
                group = [w.merge(group).body["outputs"][0]["lot"]]
            merged += group
        lots = merged
    return lots[0]


def test_a_lot_from_thousands_of_origin_sites_is_verified_in_linear_time() -> None:
    """Section 7, step 5 (origins): the origin sites of a bar merged from 3000 lots of 3000
    sites, each with its registrations, are found in one pass, not one pass per site."""
    w = factories.World.standard()
    lots = []
    for i in range(3000):
        w.register_site(f"site-{i:05d}", "coop")
        lots.append(w.register_lot(f"COOP-{i:05d}", f"site-{i:05d}").body["lot"])
    bar = _merge_all(w, lots)
    envelopes = w.envelopes()
    small, control = _timed(fake_bundle(envelopes, "COOP-00000", w.head("COOP-00000")))
    large, report = _timed(fake_bundle(envelopes, bar, w.head(bar)))
    assert control.ok and report.ok, failures(report)
    assert len(report.sites) == 3000 and report.sites[-1]["registrations"] == 1
    assert large < 2 * small + 0.5, (large, small)


def test_a_lot_with_a_long_chain_verifies_with_each_event_on_its_own_chain() -> None:
    """Section 7, steps 4 and 5 (the timeline), an honest history: 2000 offers and
    cancellations on one lot. (Asking of each event whether it is on the chain by scanning
    the chain took 6 s more for 30 000 such events; it is now a set.)"""
    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    for _ in range(2000):
        w.offer("COOP-1", "trader")
        w.cancel("COOP-1")
    report = verify(fake_bundle(w.envelopes(), "COOP-1", w.head("COOP-1")))
    assert report.ok, failures(report)
    assert len(report.timeline) == 4001 and all(t.on_own_chain for t in report.timeline)
    assert report.state is not None and report.state["status"] == "active"


def _lots_and_updates(n: int, *, remove_roles: bool) -> dict[str, Any]:
    """A dishonest log: the coop registers ``n`` lots, then the registrar updates it ``n``
    times, each time removing (or, the control, keeping) its custody role by turns."""
    w = factories.World.standard()
    for i in range(n):
        w.register_lot(f"COOP-{i:05d}", "site-a")
    envelopes = w.envelopes()
    for i in range(n):
        roles = ["auditor"] if remove_roles and i % 2 == 0 else ["cooperative"]
        update = w.update_actor("coop", roles=roles, name=f"coop {i}", post=False)
        envelopes.append(update.envelope)
    return fake_bundle(envelopes, "COOP-00000", w.head("COOP-00000"))


def test_thousands_of_custody_role_removals_are_checked_in_linear_time() -> None:
    """Section 5, Roles (``holds_lots``), as the verifier proves it once the replay is over:
    3000 removals of the custody role of a cooperative holding 3000 lots are each refused,
    without looking at every lot at every removal (which took 4 s more here)."""
    small, control = _timed(_lots_and_updates(3000, remove_roles=False))
    bundle = _lots_and_updates(3000, remove_roles=True)
    large, report = _timed(bundle)
    assert control.ok, failures(control)
    assert not report.ok and report.state is None
    assert len(report.failures) == 1500
    first = report.failures[0]
    assert first.seq == bundle["entries"][-3000]["seq"]  # the first update
    assert first.reason.startswith("refused by the rules (holds_lots): ")
    assert "'coop' still held lot 'COOP-00000'" in first.reason
    assert large < 2 * small + 0.5, (large, small)
