"""Offline verification of provenance bundles (PROTOCOL.md section 7, verifier steps 1-5).

The demo scenario (clients/data/scenario.json) is played once into a ``MemoryLedger`` and
checkpointed with a ``LogSigner``; bundles are built from it with ``build_bundle`` and
checked with ``verify_bundle``. Every way of breaking a bundle is refused with a precise
reason naming the entry it concerns; nothing is "mostly verified".
"""

from __future__ import annotations

import base64
import copy
import gc
import json
import operator
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.scenario import load_scenario
from ledger import merkle
from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner
from ledger.errors import LedgerError
from ledger.protocol import canonical, event_id, public_key_hex, sign_body
from ledger.replay import MemoryLedger
from ledger.verify import BUNDLE_FORMAT, Report, _ProvenPaths, verify_bundle
from ledger.views import lot_view
from tests import factories

REPO_ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "demo.goldtrail.example/log"
LOG_SEED = b"\x07" * 32
BAR = "ALP-2026-118842"
DORE = "KLA-2026-0101"
SCENARIO = load_scenario()
EXPECTED = SCENARIO["expected"]


# ---------------------------------------------------------------------------
# The played scenario


def play(
    events: list[dict[str, Any]], registrar: nacl.signing.SigningKey, origin: str = ORIGIN
) -> tuple[MemoryLedger, dict[str, nacl.signing.SigningKey]]:
    """The scenario's events signed and appended to a fresh in-memory ledger."""
    ledger, player = factories.play_scenario(events, origin=origin, registrar=registrar)
    return ledger, player.keys


@dataclass
class Played:
    """The demo scenario in a ledger, with the log key and registrar key a buyer trusts."""

    ledger: MemoryLedger
    registrar: nacl.signing.SigningKey
    keys: dict[str, nacl.signing.SigningKey]
    signer: LogSigner

    @property
    def registrar_key(self) -> str:
        return public_key_hex(self.registrar)

    @property
    def log_key(self) -> str:
        return self.signer.verifier_key

    @property
    def size(self) -> int:
        return len(self.ledger.leaves)

    def eid(self, seq: int) -> str:
        return event_id(self.ledger.envelopes[seq]["body"])

    def head(self, lot: str) -> str:
        return self.ledger.state.lots[lot].head

    def bundle(
        self,
        lot: str = BAR,
        *,
        head: str | None = None,
        label_at: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        size = self.size if size is None else size
        checkpoint = self.signer.sign(size, self.ledger.root(size))
        return build_bundle(
            self.ledger,
            lot=lot,
            head=head or self.head(lot),
            label_at=label_at,
            origin=ORIGIN,
            verifier_key=self.log_key,
            registrar_key=self.registrar_key,
            checkpoint_note=checkpoint.note,
            size=size,
        )

    def verify(
        self, bundle: dict[str, Any] | bytes, *, log_key: str | None = None, pinned: bool = True
    ) -> Report:
        data = bundle if isinstance(bundle, bytes) else canonical(bundle)
        return verify_bundle(data, log_key or self.log_key, self.registrar_key if pinned else None)


@pytest.fixture(scope="module")
def played() -> Played:
    registrar = nacl.signing.SigningKey(b"\x11" * 32)
    ledger, keys = play(SCENARIO["events"], registrar)
    return Played(ledger, registrar, keys, LogSigner(ORIGIN, LOG_SEED))


@pytest.fixture(scope="module")
def bar_bundle(played: Played) -> dict[str, Any]:
    return played.bundle(BAR, label_at=played.head(BAR))


def seq_of(played: Played, type_: str, lot: str) -> int:
    """The seq of the last event of this type about this lot."""
    found = [
        seq
        for seq, env in enumerate(played.ledger.envelopes)
        if env["body"]["type"] == type_
        and (
            env["body"].get("lot") == lot
            or lot in [o["lot"] for o in env["body"].get("outputs", [])]
        )
    ]
    assert found, (type_, lot)
    return found[-1]


def seq_where(played: Played, type_: str, lot: str, *, actor: str) -> int:
    """The seq of the only event of this type about this lot signed by ``actor``."""
    found = [
        seq
        for seq, env in enumerate(played.ledger.envelopes)
        if (env["body"]["type"], env["body"].get("lot"), env["body"]["actor"])
        == (type_, lot, actor)
    ]
    assert len(found) == 1, (type_, lot, actor, found)
    return found[0]


def failures(report: Report) -> list[tuple[int | None, str]]:
    return [(f.seq, f.reason) for f in report.failures]


def refused(report: Report) -> tuple[int | None, str]:
    """The first failure of a report that must not verify, as (seq, reason)."""
    assert not report.ok, "the bundle verified but should not have"
    assert report.failures
    assert report.state is None, "a failed report must not show a recomputed state"
    first = report.failures[0]
    return first.seq, first.reason


def entry(bundle: dict[str, Any], seq: int) -> dict[str, Any]:
    found = [e for e in bundle["entries"] if e["seq"] == seq]
    assert len(found) == 1, seq
    return found[0]


def without(bundle: dict[str, Any], *seqs: int) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    out["entries"] = [e for e in out["entries"] if e["seq"] not in seqs]
    return out


# ---------------------------------------------------------------------------
# A faithful bundle verifies and its figures are recomputed


def test_bar_bundle_verifies_and_recomputes_the_expected_figures(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    report = played.verify(bar_bundle)
    assert report.ok, failures(report)
    assert report.failures == []
    assert (report.lot, report.head, report.label_at) == (BAR, played.head(BAR), played.head(BAR))
    assert (report.origin, report.checkpoint_size) == (ORIGIN, played.size)
    state = report.state
    assert state is not None
    assert state["origins"] == EXPECTED["origins"]
    assert sorted(f["code"] for f in state["flags"] if f["status"] == "open") == sorted(
        EXPECTED["open_flags_on_bar"]
    )
    assert state["risk"] == EXPECTED["bar_risk"]
    assert state["gender"] == EXPECTED["bar_gender"]
    assert state["form"] == "bar" and state["bar"] == {"serial": "AP-2026-118842", "year": 2026}
    assert (state["mass_mg"], state["fineness_ppm"]) == (44_800, 999_900)
    assert state["custodian"] == "refiner-alpine" and state["country"] == "CH"
    # recomputed from the bundle alone, yet equal to what the ledger itself holds
    assert state == lot_view(played.ledger.state, played.ledger.state.lots[BAR])
    assert {s["id"]: s["status"] for s in report.sites} == {
        "site-busia-tiira": "green",
        "site-kassanda-kitumbi": "yellow",
        "site-mambasa-makala": "green",
    }
    mambasa = next(s for s in report.sites if s["id"] == "site-mambasa-makala")
    assert mambasa["operator_name"] == "Coopérative des femmes minières de Mambasa"
    assert mambasa["assessment"]["cahra"] is True


def test_timeline_is_the_provenance_in_log_order(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    report = played.verify(bar_bundle)
    assert report.ok, failures(report)
    seqs = [t.seq for t in report.timeline]
    # every lot event of the scenario leads to the bar: registrations at 17-20, the bar at 43
    assert seqs == list(range(17, 44))
    assert [t.event_id for t in report.timeline] == [played.eid(s) for s in seqs]
    first, last = report.timeline[0], report.timeline[-1]
    assert (first.type, first.actor_name, first.lots) == (
        "lot.registered",
        "Kassanda Artisanal Diggers Association",
        ["KIT-2026-0007"],
    )
    assert (last.type, last.actor, last.lots) == ("lot.processed", "refiner-alpine", [DORE, BAR])
    assert [t.seq for t in report.timeline if t.on_own_chain] == [43]
    assert report.after_label == []  # the label is at the head


def test_intermediate_lot_at_an_earlier_head_and_label(played: Played) -> None:
    """The doré KLA-2026-0101 as it was when the exporter accepted it (seq 38), with a
    label printed at the assay (seq 36): the bundle verifies against today's checkpoint
    and recomputes the lot exactly as the log stood then."""
    accepted = seq_where(played, "lot.transfer_accepted", DORE, actor="exporter-kampala")
    assay = seq_of(played, "lot.assayed", DORE)
    bundle = played.bundle(DORE, head=played.eid(accepted), label_at=played.eid(assay))
    report = played.verify(bundle)
    assert report.ok, failures(report)
    assert report.head == played.eid(accepted)

    then, _ = play(SCENARIO["events"][: accepted + 1], played.registrar)
    assert report.state == lot_view(then.state, then.state.lots[DORE])
    assert report.state is not None
    assert report.state["custodian"] == "exporter-kampala"
    assert report.state["fineness_ppm"] == 872_000
    assert sorted(f["code"] for f in report.state["flags"] if f["status"] == "open") == [
        "cahra_origin",
        "mercury_worst_practice",
        "site_yellow",
    ]
    assert [(t.seq, t.type) for t in report.after_label] == [
        (assay + 1, "lot.transfer_offered"),
        (accepted, "lot.transfer_accepted"),
    ]
    assert all(t.on_own_chain for t in report.after_label)


def test_after_label_lists_exactly_the_own_chain_events_after_the_label(played: Played) -> None:
    processed = seq_of(played, "lot.processed", DORE)  # the smelting that created the doré
    assert played.ledger.envelopes[processed]["body"]["process"] == "smelting"
    bundle = played.bundle(DORE, label_at=played.eid(processed))
    report = played.verify(bundle)
    assert report.ok, failures(report)
    own = [t.seq for t in report.timeline if t.on_own_chain]
    assert own == list(range(processed, 44))  # 35..43: smelted, assayed, ... refined into the bar
    assert [t.seq for t in report.after_label] == list(range(processed + 1, 44))
    assert [t.type for t in report.after_label] == [
        "lot.assayed",
        "lot.transfer_offered",
        "lot.transfer_accepted",
        "lot.exported",
        "lot.transfer_offered",
        "lot.transfer_accepted",
        "lot.flag_resolved",
        "lot.processed",
    ]
    # upstream events of the inputs are in the timeline, but never "after the label"
    assert all(t.on_own_chain for t in report.timeline if t.seq > processed)
    assert any(not t.on_own_chain for t in report.timeline)
    assert report.state is not None and report.state["status"] == "consumed"


def test_each_step_says_what_it_did_without_free_text_or_prices(played: Played) -> None:
    """Issue 5: the report's custody timeline says what happened after the label (to whom a
    lot went, what it was made into, where it was exported, which flag), from the verified
    bodies only: never a note, a price or a seller's sex."""
    processed = seq_of(played, "lot.processed", DORE)
    report = played.verify(played.bundle(DORE, label_at=played.eid(processed)))
    assert report.ok, failures(report)
    after = {t.type: t.details for t in report.after_label}
    assert after["lot.assayed"] == {"method": "fire_assay", "fineness_ppm": 872_000}
    assert after["lot.transfer_accepted"]["mass_mg"] == 51_480  # the refiner's weighing
    assert after["lot.exported"] == {"destination": "CH"}
    assert after["lot.flag_resolved"]["outcome"] == "remediated"
    assert after["lot.flag_resolved"]["flag"].endswith("/mercury_worst_practice")
    assert after["lot.processed"] == {
        "process": "refining",
        "outputs": [{"lot": BAR, "form": "bar", "mass_mg": 44_800, "fineness_ppm": 999_900}],
    }
    offers = [t.details for t in report.after_label if t.type == "lot.transfer_offered"]
    assert [o["to_name"] for o in offers] == [
        "Lake Victoria Bullion Exporters (demo)",
        "Alpine Precious Metals Refinery (demo)",
    ]
    registered = [t.details for t in report.timeline if t.type == "lot.registered"]
    assert {"site": "site-mambasa-makala", "site_name": "Makala alluvial site"}.items() <= next(
        d for d in registered if d["site"] == "site-mambasa-makala"
    ).items()
    shown = json.dumps([t.details for t in report.timeline])
    for private in ("price", "seller_sex", "note", "resolution", "reason", "payment", "UGX"):
        assert private not in shown, private
    # the JSON report carries them too
    assert report.to_json()["after_label"][-1]["details"]["process"] == "refining"


# ---------------------------------------------------------------------------
# Tampering: every change is refused with the entry and the reason


def test_changed_body_field_breaks_the_inclusion_proof(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    accepted = seq_where(played, "lot.transfer_accepted", "MAK-2026-0001", actor="trader-bunia")
    bad = copy.deepcopy(bar_bundle)
    entry(bad, accepted)["envelope"]["body"]["mass_mg"] += 1
    seq, reason = refused(played.verify(bad))
    assert seq == accepted
    assert reason.startswith("the inclusion proof does not match the checkpoint: ")
    assert f"leaf {accepted} in a tree of {played.size} leaves" in reason
    assert played.verify(bad).failures[0].event_id != played.eid(accepted)  # the changed body's id


def test_changed_body_byte_in_the_raw_bundle(played: Played, bar_bundle: dict[str, Any]) -> None:
    raw = canonical(bar_bundle)
    assert raw.count(b"Kampala Assay Laboratory (demo)") == 1
    bad = raw.replace(b"Kampala Assay Laboratory (demo)", b"Kampala Assay Laboratorx (demo)")
    seq, reason = refused(played.verify(bad))
    assert seq == 8  # the assayer's registration
    assert reason.startswith("the inclusion proof does not match the checkpoint")


@pytest.mark.parametrize(
    ("dropped", "failing", "code"),
    [
        # the assay of the doré: the next event on its chain names a head the replay lacks
        (36, 37, "stale_prev"),
        # a registration of an input of the gravity plant: its offer names an unknown lot
        (20, 22, "unknown_lot"),
        # a site's registration: its assessment names an unknown site
        (13, 16, "unknown_site"),
        # the assayer's registration: its assay is signed by a key no actor holds
        (8, 36, "unknown_key"),
    ],
)
def test_dropped_ancestor_is_refused_by_the_rules(
    played: Played, bar_bundle: dict[str, Any], dropped: int, failing: int, code: str
) -> None:
    seq, reason = refused(played.verify(without(bar_bundle, dropped)))
    assert seq == failing
    assert reason.startswith(f"refused by the rules ({code}): ")


def test_dropped_head_and_dropped_tail_of_the_chain(played: Played) -> None:
    mak_accepted = 26
    bundle = played.bundle("MAK-2026-0001", head=played.eid(mak_accepted))
    report = played.verify(bundle)
    assert report.ok, failures(report)

    # without the last two events of its chain, the lot stops at its registration
    seq, reason = refused(played.verify(without(bundle, 25, 26)))
    assert seq is None
    assert reason == (
        f"the lot's last event in the bundle is {played.eid(18)[:12]}…, not the bundle's "
        f"head {played.eid(26)[:12]}…"
    )
    # without any event creating the lot
    bar = played.bundle(BAR)
    seq, reason = refused(played.verify(without(bar, 43)))
    assert (seq, reason) == (None, f"the bundle holds no event creating lot {BAR}")


def test_head_event_of_another_lot_is_refused(played: Played, bar_bundle: dict[str, Any]) -> None:
    bad = copy.deepcopy(bar_bundle)
    bad["head"] = played.eid(42)  # an event of the doré, in the bundle
    bad["label_at"] = None
    seq, reason = refused(played.verify(bad))
    assert seq is None
    assert reason.startswith(f"the lot's last event in the bundle is {played.eid(43)[:12]}…")


def test_broken_proof_hash(played: Played, bar_bundle: dict[str, Any]) -> None:
    bad = copy.deepcopy(bar_bundle)
    proof = entry(bad, 30)["proof"]
    proof[0] = proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1")
    seq, reason = refused(played.verify(bad))
    assert seq == 30
    assert reason.startswith("the inclusion proof does not match the checkpoint: ")
    assert failures(played.verify(bad)) == [(30, reason)]  # only that entry


@pytest.mark.parametrize(
    "breakage",
    ["drop a hash", "extra hash", "not hex", "proof of another leaf"],
)
def test_malformed_proofs(played: Played, bar_bundle: dict[str, Any], breakage: str) -> None:
    bad = copy.deepcopy(bar_bundle)
    target = entry(bad, 12)
    if breakage == "drop a hash":
        target["proof"] = target["proof"][:-1]
    elif breakage == "extra hash":
        target["proof"] = [*target["proof"], "00" * 32]
    elif breakage == "not hex":
        target["proof"][0] = "zz" * 32
    else:
        target["proof"] = entry(bad, 13)["proof"]
    seq, reason = refused(played.verify(bad))
    assert seq == 12
    assert reason.startswith("the inclusion proof does not match the checkpoint: ")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("upper", "proof hash 1 is not 64 lowercase hex characters"),
        ("spaced", "proof hash 1 is not 64 lowercase hex characters"),
        ("not text", "proof hash 1 is not 64 lowercase hex characters"),
        ("short", "proof hash 1 is not 64 lowercase hex characters"),
    ],
)
def test_proof_hashes_are_64_lowercase_hex(
    played: Played, bar_bundle: dict[str, Any], breakage: str, expected: str
) -> None:
    # section 1: binary values inside JSON are lowercase hex, hashes 64 characters; an
    # uppercase or spaced hash names the same bytes but is not a hash as the page writes it
    bad = copy.deepcopy(bar_bundle)
    proof = entry(bad, 12)["proof"]
    proof[1] = {
        "upper": proof[1].upper(),
        "spaced": proof[1][:2] + " " + proof[1][2:],
        "not text": 12,
        "short": proof[1][:62],
    }[breakage]
    report = played.verify(bad)
    assert failures(report) == [
        (12, f"the inclusion proof does not match the checkpoint: {expected}")
    ]


def _note_parts(note: str) -> tuple[list[str], str]:
    text, _, signature = note.partition("\n\n")
    return text.split("\n"), signature


@pytest.mark.parametrize("part", ["size", "root", "signature", "origin", "unsigned"])
def test_altered_checkpoint(played: Played, bar_bundle: dict[str, Any], part: str) -> None:
    lines, signature = _note_parts(bar_bundle["checkpoint"])
    if part == "size":
        lines[1] = str(int(lines[1]) + 1)
    elif part == "root":
        lines[2] = base64.b64encode(b"\x00" * 32).decode()
    elif part == "origin":
        lines[0] = "evil.example/log"
    elif part == "signature":
        name, _, encoded = signature.rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(encoded))
        raw[-1] ^= 1
        signature = f"{name} {base64.b64encode(bytes(raw)).decode()}\n"
    note = "\n".join(lines) + "\n\n" + ("" if part == "unsigned" else signature)
    bad = copy.deepcopy(bar_bundle)
    bad["checkpoint"] = note
    seq, reason = refused(played.verify(bad))
    assert seq is None
    assert reason.startswith("the checkpoint does not verify with the trusted log key: ")
    if part == "unsigned":
        assert reason.endswith("no signature line follows the blank line.")
    else:
        assert reason.endswith(
            f"The checkpoint's signature by {ORIGIN} does not verify: its text was changed "
            "after signing, or the signature is not this key's."
        )


def test_genuine_but_older_checkpoint_does_not_cover_later_entries(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    bad = copy.deepcopy(bar_bundle)
    bad["checkpoint"] = played.signer.sign(30, played.ledger.root(30)).note
    report = played.verify(bad)
    refused(report)
    reasons = dict(failures(report))
    # entries from 30 on are not in that tree at all
    for seq in range(30, 44):
        assert reasons[seq] == f"seq {seq} is outside the checkpoint's tree of size 30"
    # entries below 30 carry proofs for the tree of 44: they fail too, each named
    for seq in range(30):
        assert reasons[seq].startswith("the inclusion proof does not match the checkpoint: ")


def key_name_and_id(verifier_key: str) -> str:
    """``<name>+<key id>`` of a note verifier key (its base64 part may hold a '+')."""
    name, key_id, _ = verifier_key.split("+", 2)
    return f"{name}+{key_id}"


def test_wrong_log_key(played: Played, bar_bundle: dict[str, Any]) -> None:
    other = LogSigner(ORIGIN, b"\x08" * 32)
    seq, reason = refused(played.verify(bar_bundle, log_key=other.verifier_key))
    assert seq is None
    assert reason == (
        "the checkpoint does not verify with the trusted log key: The checkpoint is not signed "
        f"by the trusted key {key_name_and_id(other.verifier_key)}; it is signed by "
        f"{key_name_and_id(played.log_key)}."
    )
    # a log key for another origin is refused the same way
    elsewhere = LogSigner("other.goldtrail.example/log", LOG_SEED)
    seq, reason = refused(played.verify(bar_bundle, log_key=elsewhere.verifier_key))
    assert reason.startswith("the checkpoint does not verify with the trusted log key: ")


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path to every member, element and scalar of a JSON value (not the root)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        out.append((*path, key))
        if isinstance(inner, dict | list):
            out += _paths(inner, (*path, key))
    return out


def _changed(value: Any) -> Any:
    """Another JSON value of the same kind (a digit of a string turned, a number moved)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None:
        return "00" * 32
    if isinstance(value, str):
        at = len(value) // 2
        return (value[:at] + ("1" if value[at : at + 1] == "0" else "0") + value[at + 1 :]) or "x"
    return []


def test_every_changed_value_and_every_dropped_member_is_refused(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    """Each scalar of the bundle changed, each list emptied and each object member dropped,
    one at a time, in the header and in the first entry of every type and the last: never
    verified, never raised. (Dropping a whole entry may verify: a bundle proves inclusion,
    not absence.)"""
    first_of_type: dict[str, int] = {}
    for e in bar_bundle["entries"]:
        first_of_type.setdefault(e["envelope"]["body"]["type"], e["seq"])
    kept = {*first_of_type.values(), bar_bundle["entries"][-1]["seq"]}
    tried = 0
    for path in _paths(bar_bundle):
        in_entry = path[0] == "entries" and len(path) > 1
        if in_entry and (len(path) == 2 or bar_bundle["entries"][path[1]]["seq"] not in kept):
            continue  # a whole entry, or one of an entry not kept
        parent = reduce(operator.getitem, path[:-1], bar_bundle)
        for change in ("value", "drop"):
            if change == "drop" and not isinstance(parent, dict):
                continue
            bad = copy.deepcopy(bar_bundle)
            target = reduce(operator.getitem, path[:-1], bad)
            if change == "drop":
                del target[path[-1]]
            else:
                target[path[-1]] = _changed(target[path[-1]])
            report = played.verify(bad)
            assert not report.ok and report.failures, (change, path)
            tried += 1
    assert tried > 500


# ---------------------------------------------------------------------------
# Fake logs: a consistent log and checkpoint under another log key


class RawLog:
    """A log of arbitrary envelopes (no rules), readable by ``build_bundle``: what a
    dishonest server could serve."""

    def __init__(self, envelopes: list[dict[str, Any]]) -> None:
        self.envelopes = envelopes
        self.seq_by_id = {event_id(e["body"]): i for i, e in enumerate(envelopes)}
        self.tree = merkle.MemoryHashStore()
        merkle.append_leaves(self.tree, 0, [merkle.leaf_hash(canonical(e)) for e in envelopes])

    def root(self) -> bytes:
        return merkle.tree_root(self.tree, len(self.envelopes))

    def event_at(self, eid: str) -> tuple[int, dict[str, Any]] | None:
        seq = self.seq_by_id.get(eid)
        return None if seq is None else (seq, self.envelopes[seq])

    def actor_events(self, actor_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        return [
            (s, e)
            for s, e in enumerate(self.envelopes[:max_seq])
            if e["body"]["type"].startswith("actor.") and e["body"]["subject"] == actor_id
        ]

    def site_events(self, site_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        return [
            (s, e)
            for s, e in enumerate(self.envelopes[:max_seq])
            if e["body"]["type"].startswith("site.") and e["body"]["site"] == site_id
        ]

    def proof(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(self.tree, seq, size, tree_size=len(self.envelopes))

    def bundle(self, signer: LogSigner, lot: str, head: str, registrar_key: str) -> dict[str, Any]:
        size = len(self.envelopes)
        return build_bundle(
            self,
            lot=lot,
            head=head,
            label_at=None,
            origin=signer.origin,
            verifier_key=signer.verifier_key,
            registrar_key=registrar_key,
            checkpoint_note=signer.sign(size, self.root()).note,
            size=size,
        )


FAKE_LOG = LogSigner(ORIGIN, b"\x66" * 32)


def test_fake_log_replays_the_genuine_one_faithfully(played: Played) -> None:
    """Control for the fake-log tests: the same envelopes under another log key verify
    with that key, so the refusals below come from what was changed, not from RawLog."""
    fake = RawLog(copy.deepcopy(played.ledger.envelopes))
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)
    assert fake.root() == played.ledger.root()
    report = played.verify(bundle, log_key=FAKE_LOG.verifier_key)
    assert report.ok, failures(report)


def test_event_resigned_with_a_key_its_actor_never_held(played: Played) -> None:
    """Re-sign the trader's acceptance of the Mambasa gold with a fresh key and serve it in
    a consistent fake log: the trusted log key refuses the checkpoint, and even a buyer
    tricked into trusting the fake log's key gets ``unknown_key`` from the rules."""
    accepted = seq_where(played, "lot.transfer_accepted", "MAK-2026-0001", actor="trader-bunia")
    envelopes = copy.deepcopy(played.ledger.envelopes)
    original = envelopes[accepted]
    intruder = nacl.signing.SigningKey.generate()
    envelopes[accepted] = sign_body(copy.deepcopy(original["body"]), intruder, ORIGIN)
    assert envelopes[accepted]["body"] == original["body"]  # same event id, new signature
    assert envelopes[accepted]["signature"]["key"] != original["signature"]["key"]
    fake = RawLog(envelopes)
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)

    seq, reason = refused(played.verify(bundle))
    assert seq is None
    assert reason.startswith("the checkpoint does not verify with the trusted log key: ")

    report = played.verify(bundle, log_key=FAKE_LOG.verifier_key)
    seq, reason = refused(report)
    assert seq == accepted
    assert report.failures[0].event_id == played.eid(accepted)
    assert reason == (
        "refused by the rules (unknown_key): The key that signed this event is not a key of "
        "'trader-bunia' in this log."
    )


def test_event_signed_by_another_actor_key(played: Played) -> None:
    """The assay signed with the trader's (genuine) key instead of the assayer's."""
    assay = seq_of(played, "lot.assayed", DORE)
    envelopes = copy.deepcopy(played.ledger.envelopes)
    envelopes[assay] = sign_body(
        copy.deepcopy(envelopes[assay]["body"]), played.keys["trader-kampala"], ORIGIN
    )
    fake = RawLog(envelopes)
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)
    seq, reason = refused(played.verify(bundle, log_key=FAKE_LOG.verifier_key))
    assert seq == assay
    assert reason.startswith("refused by the rules (unknown_key): ")
    assert "'assayer-kampala'" in reason


def test_bad_signature_value_in_a_fake_log(played: Played) -> None:
    envelopes = copy.deepcopy(played.ledger.envelopes)
    sig = envelopes[31]["signature"]
    sig["value"] = sig["value"][:-2] + ("00" if sig["value"][-2:] != "00" else "01")
    fake = RawLog(envelopes)
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)
    seq, reason = refused(played.verify(bundle, log_key=FAKE_LOG.verifier_key))
    assert seq == 31
    assert reason.startswith("refused by the rules (bad_signature): ")


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_bad_signature_after_an_earlier_refusal_is_not_the_one_named(
    played: Played, as_bytes: bool
) -> None:
    """The verifier checks every signature before the replay; a bad one is still refused
    in its turn, so an earlier entry's refusal is the one named."""
    envelopes = copy.deepcopy(played.ledger.envelopes)
    sig = envelopes[31]["signature"]
    sig["value"] = sig["value"][:-2] + ("00" if sig["value"][-2:] != "00" else "01")
    fake = RawLog(envelopes)
    bundle = without(fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key), 20)
    given: bytes | dict[str, Any] = canonical(bundle) if as_bytes else bundle
    seq, reason = refused(verify_bundle(given, FAKE_LOG.verifier_key, played.registrar_key))
    assert seq == 22
    assert reason.startswith("refused by the rules (unknown_lot): ")
    # without the earlier refusal, the bad signature is named, at its entry
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)
    given = canonical(bundle) if as_bytes else bundle
    seq, reason = refused(verify_bundle(given, FAKE_LOG.verifier_key, played.registrar_key))
    assert seq == 31
    assert reason.startswith("refused by the rules (bad_signature): ")


# ---------------------------------------------------------------------------
# The registrar at seq 0


def test_fake_log_rooted_in_another_registrar(played: Played) -> None:
    """A whole parallel log played with another registrar key: consistent, signed by its
    own log key, and refused once the buyer pins the programme's registrar key."""
    impostor = nacl.signing.SigningKey(b"\x22" * 32)
    other, _ = play(SCENARIO["events"], impostor)
    fake = RawLog(list(other.envelopes))
    bundle = fake.bundle(FAKE_LOG, BAR, other.state.lots[BAR].head, public_key_hex(impostor))

    unpinned = played.verify(bundle, log_key=FAKE_LOG.verifier_key, pinned=False)
    assert unpinned.ok, failures(unpinned)  # without a pin, only the log key protects

    report = played.verify(bundle, log_key=FAKE_LOG.verifier_key)
    seq, reason = refused(report)
    assert seq == 0
    assert report.failures[0].event_id == event_id(other.envelopes[0]["body"])
    assert reason == (
        f"the registrar at seq 0 signs with {public_key_hex(impostor)[:16]}…, not the pinned "
        f"registrar key {played.registrar_key[:16]}…"
    )
    # and under the trusted log key it never gets that far
    seq, reason = refused(played.verify(bundle))
    assert reason.startswith("the checkpoint does not verify with the trusted log key: ")


def test_bundle_not_starting_at_seq_0(played: Played, bar_bundle: dict[str, Any]) -> None:
    seq, reason = refused(played.verify(without(bar_bundle, 0)))
    assert (seq, reason) == (
        None,
        "the bundle does not start with the registrar's self-registration at seq 0",
    )
    seq, reason = refused(played.verify(without(bar_bundle, 0), pinned=False))
    assert reason == "the bundle does not start with the registrar's self-registration at seq 0"


def test_seq_0_that_is_not_a_self_registration(played: Played) -> None:
    """A fake log whose seq 0 registers the registrar under another actor's name."""
    envelopes = copy.deepcopy(played.ledger.envelopes)
    body = copy.deepcopy(envelopes[0]["body"])
    body["actor"] = "someone-else"
    envelopes[0] = sign_body(body, played.registrar, ORIGIN)
    fake = RawLog(envelopes)
    bundle = fake.bundle(FAKE_LOG, BAR, played.head(BAR), played.registrar_key)
    seq, reason = refused(played.verify(bundle, log_key=FAKE_LOG.verifier_key))
    assert seq == 0
    assert reason.startswith("refused by the rules (log_not_started): ")


def test_bundle_registrar_key_field_must_be_seq_0_key(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    bad = copy.deepcopy(bar_bundle)
    bad["log"]["registrar_key"] = "ab" * 32
    seq, reason = refused(played.verify(bad, pinned=False))
    assert (seq, reason) == (None, "the bundle's registrar_key is not the key of seq 0")


@pytest.mark.parametrize("value", [None, "AB" * 32, 7])
def test_bundle_registrar_key_field_is_seq_0_key_in_lowercase_hex(
    played: Played, bar_bundle: dict[str, Any], value: object
) -> None:
    # section 7's format: "registrar_key": "<hex>", seq 0's key (a bundle always has seq 0)
    bad = copy.deepcopy(bar_bundle)
    bad["log"]["registrar_key"] = value if value != "AB" * 32 else played.registrar_key.upper()
    seq, reason = refused(played.verify(bad, pinned=False))
    assert (seq, reason) == (None, "the bundle's registrar_key is not the key of seq 0")


@pytest.mark.parametrize("value", ["other key", "junk", None, "missing"])
def test_bundle_verifier_key_field_must_be_the_trusted_key(
    played: Played, bar_bundle: dict[str, Any], value: str | None
) -> None:
    # the bundle names the log it comes from: origin, verifier key and registrar key must
    # all be the log the buyer trusts, or the bundle misdescribes itself
    bad = copy.deepcopy(bar_bundle)
    if value == "missing":
        del bad["log"]["verifier_key"]
    else:
        bad["log"]["verifier_key"] = (
            LogSigner(ORIGIN, b"\x08" * 32).verifier_key if value == "other key" else value
        )
    seq, reason = refused(played.verify(bad))
    assert (seq, reason) == (None, "the bundle's verifier_key is not the trusted log key")


def test_a_trusted_key_with_an_uppercase_key_id_is_the_same_key(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    name, kid, key = played.log_key.split("+", 2)
    report = played.verify(bar_bundle, log_key=f"{name}+{kid.upper()}+{key}")
    assert report.ok, failures(report)


def test_bundle_origin_must_be_the_checkpoint_origin(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    bad = copy.deepcopy(bar_bundle)
    bad["log"]["origin"] = "elsewhere.example/log"
    seq, reason = refused(played.verify(bad))
    assert (seq, reason) == (
        None,
        f"the bundle's origin 'elsewhere.example/log' is not the checkpoint's '{ORIGIN}'",
    )


# ---------------------------------------------------------------------------
# The bundle's own structure


def test_label_at_not_on_the_lots_chain(played: Played) -> None:
    upstream = seq_of(played, "lot.assayed", DORE)  # in the bar's provenance, not its own chain
    for label in (played.eid(upstream), "ab" * 32):
        bundle = played.bundle(BAR, label_at=label)
        seq, reason = refused(played.verify(bundle))
        assert (seq, reason) == (
            None,
            f"the label's event {label[:12]}… is not on the lot's own chain",
        )


def test_entries_out_of_order(played: Played, bar_bundle: dict[str, Any]) -> None:
    bad = copy.deepcopy(bar_bundle)
    entries = bad["entries"]
    entries[10], entries[11] = entries[11], entries[10]
    report = played.verify(bad)
    seq, reason = refused(report)
    assert (seq, reason) == (10, "entries are not sorted by seq, each once")
    assert report.failures[0].event_id == played.eid(10)


def test_entries_duplicated(played: Played, bar_bundle: dict[str, Any]) -> None:
    bad = copy.deepcopy(bar_bundle)
    bad["entries"].insert(21, copy.deepcopy(entry(bad, 20)))
    seq, reason = refused(played.verify(bad))
    assert (seq, reason) == (20, "entries are not sorted by seq, each once")


def test_entry_with_seq_beyond_the_checkpoint(played: Played, bar_bundle: dict[str, Any]) -> None:
    bad = copy.deepcopy(bar_bundle)
    entry(bad, 43)["seq"] = 44
    seq, reason = refused(played.verify(bad))
    assert (seq, reason) == (44, "seq 44 is outside the checkpoint's tree of size 44")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda b: b.update(format="goldtrail-bundle/2"),
            "unknown bundle format 'goldtrail-bundle/2', expected goldtrail-bundle/1",
        ),
        (
            lambda b: b.pop("format"),
            "unknown bundle format None, expected goldtrail-bundle/1",
        ),
        (lambda b: b.pop("lot"), "the bundle does not name its lot and head"),
        (
            lambda b: b.pop("label_at"),
            "the bundle has no label_at: it is the label's event id, or null",
        ),
        (lambda b: b.update(head=None), "the bundle does not name its lot and head"),
        (lambda b: b.update(entries={}), "the bundle has no list of entries"),
        (
            lambda b: b["entries"][3].pop("proof"),
            "an entry is not {seq, envelope, proof}",
        ),
        (
            lambda b: b["entries"][3].update(seq="3"),
            "an entry is not {seq, envelope, proof}",
        ),
        (
            lambda b: b.update(entries=[]),
            "the bundle does not start with the registrar's self-registration at seq 0",
        ),
    ],
)
def test_malformed_bundles(
    played: Played,
    bar_bundle: dict[str, Any],
    change: Callable[[dict[str, Any]], Any],
    expected: str,
) -> None:
    bad = copy.deepcopy(bar_bundle)
    change(bad)
    assert refused(played.verify(bad)) == (None, expected)


@pytest.mark.parametrize(
    ("data", "starts"),
    [
        (b"", "the bundle is not valid JSON: "),
        (b"<html>not json</html>", "the bundle is not valid JSON: "),
        (b'{"format": "goldtrail-bundle/1", "format": "x"}', "the bundle is not valid JSON: "),
        (b'{"format": 1.5}', "the bundle is not valid JSON: "),
        (b'{"format": ' + b"1" * 5000 + b"}", "the bundle is not valid JSON: "),
        (b"\xff\xfe{}", "the bundle is not valid JSON: "),
        (b"[]", "the bundle is not a JSON object"),
        (b'"goldtrail-bundle/1"', "the bundle is not a JSON object"),
    ],
)
def test_not_a_json_bundle(played: Played, data: bytes, starts: str) -> None:
    report = played.verify(data)
    seq, reason = refused(report)
    assert seq is None and reason.startswith(starts)
    assert (report.lot, report.head) == (None, None)


def test_truncated_bundle_bytes(played: Played, bar_bundle: dict[str, Any]) -> None:
    raw = canonical(bar_bundle)
    _, reason = refused(played.verify(raw[: len(raw) // 2]))
    assert reason.startswith("the bundle is not valid JSON: ")


def test_bundle_bytes_and_dict_give_the_same_report(
    played: Played, bar_bundle: dict[str, Any]
) -> None:
    from_bytes = played.verify(canonical(bar_bundle))
    from_dict = verify_bundle(copy.deepcopy(bar_bundle), played.log_key, played.registrar_key)
    assert from_bytes.to_json() == from_dict.to_json()
    assert json.loads(json.dumps(from_bytes.to_json()))["ok"] is True
    assert bar_bundle["format"] == BUNDLE_FORMAT


# ---------------------------------------------------------------------------
# Offline: the bundle stands alone


VERIFY_FROM_FILE = """
import json, sys
from pathlib import Path
from ledger.verify import verify_bundle
report = verify_bundle(Path(sys.argv[1]).read_bytes(), sys.argv[2], sys.argv[3])
print(json.dumps(report.to_json()))
"""


def test_bundle_verifies_after_the_ledger_is_gone(tmp_path: Path) -> None:
    registrar = nacl.signing.SigningKey.generate()
    ledger, keys = play(SCENARIO["events"], registrar)
    signer = LogSigner(ORIGIN, b"\x09" * 32)
    size = len(ledger.leaves)
    bundle = build_bundle(
        ledger,
        lot=BAR,
        head=ledger.state.lots[BAR].head,
        label_at=ledger.state.lots[BAR].head,
        origin=ORIGIN,
        verifier_key=signer.verifier_key,
        registrar_key=public_key_hex(registrar),
        checkpoint_note=signer.sign(size, ledger.root()).note,
        size=size,
    )
    path = tmp_path / "bundle.json"
    path.write_bytes(canonical(bundle))
    log_key, registrar_key = signer.verifier_key, public_key_hex(registrar)
    del ledger, keys, signer, bundle, registrar
    gc.collect()

    # in this process, from the file only
    report = verify_bundle(path.read_bytes(), log_key, registrar_key)
    assert report.ok, failures(report)
    assert report.state is not None and report.state["gender"] == EXPECTED["bar_gender"]

    # and in a fresh interpreter that never saw a ledger
    done = subprocess.run(
        [sys.executable, "-c", VERIFY_FROM_FILE, str(path), log_key, registrar_key],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout)
    assert fresh["ok"] is True and fresh["failures"] == []
    assert fresh["state"]["origins"] == EXPECTED["origins"]
    assert fresh["state"]["risk"] == EXPECTED["bar_risk"]
    assert fresh["state"]["gender"] == EXPECTED["bar_gender"]
    assert fresh == report.to_json()


# ---------------------------------------------------------------------------
# Known gap, reported to the lead: the origin sites' colour ignores expiry


def _expired_site_report() -> Report:
    """A lot registered at a site whose green assessment expired before the registration:
    the rules flag it ``site_unassessed`` (the site counts as blue, PROTOCOL.md 5)."""
    w = factories.World()
    w.register_actor("coop", ["cooperative"], lot_prefix="COOP-")
    w.register_site("site-a", "coop")
    w.assess_site("site-a", "green", assessed_on="2026-10-01", valid_until="2026-10-15")
    w.register_lot("COOP-1", "site-a")
    assert w.open_codes("COOP-1") == ["site_unassessed"]
    signer = LogSigner(w.origin, b"\x05" * 32)
    bundle = factories.signed_bundle(w.ledger, signer, "COOP-1")
    report = verify_bundle(canonical(bundle), signer.verifier_key)
    assert report.ok, failures(report)
    return report


def test_origin_site_colour_counts_an_expired_assessment_as_blue() -> None:
    report = _expired_site_report()
    assert report.sites[0]["status"] == "blue"


# ---------------------------------------------------------------------------
# The inclusion-proof shortcut agrees with ledger.merkle.verify_inclusion


def _accepted(leaf: bytes, index: int, size: int, proof: list[Any], root: bytes) -> bool:
    """The reference verdict on a proof as a bundle gives it: every item 64 lowercase hex
    characters, decoded (else refused), then ``verify_inclusion``."""
    try:
        if not all(isinstance(i, str) and re.fullmatch("[0-9a-f]{64}", i) for i in proof):
            return False
        hashes = [bytes.fromhex(item) for item in proof]
        merkle.verify_inclusion(leaf, index, size, hashes, root)
    except (LedgerError, ValueError, TypeError):
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proven_paths_accept_exactly_what_verify_inclusion_accepts(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 300), "size")
    leaves = [merkle.leaf_hash(b"leaf %d" % i) for i in range(size)]
    store = merkle.MemoryHashStore()
    merkle.append_leaves(store, 0, leaves)
    root = merkle.root_from_leaves(leaves)
    paths = _ProvenPaths(size, root)
    for _ in range(data.draw(st.integers(1, 40), "checks")):
        index = data.draw(st.integers(0, size - 1), "index")
        proof: list[Any] = [h.hex() for h in merkle.inclusion_proof(store, index, size)]
        leaf = leaves[index]
        tamper = data.draw(
            st.sampled_from(
                [
                    "none",
                    "flip",
                    "drop",
                    "extra",
                    "index",
                    "leaf",
                    "short",
                    "upper",
                    "spaced",
                    "not-hex",
                    "not-text",
                ]
            ),
            "tamper",
        )
        at = data.draw(st.integers(0, max(len(proof) - 1, 0)), "at")
        if tamper == "flip" and proof:
            proof[at] = ("1" if proof[at][0] == "0" else "0") + proof[at][1:]
        elif tamper == "drop" and proof:
            del proof[at]
        elif tamper == "extra":
            proof.append(leaves[data.draw(st.integers(0, size - 1), "extra")].hex())
        elif tamper == "index":
            index = data.draw(st.integers(-1, size), "other index")
        elif tamper == "leaf":
            leaf = leaves[data.draw(st.integers(0, size - 1), "other leaf")]
        elif tamper == "short" and proof:
            proof[at] = proof[at][:62]
        elif tamper == "upper" and proof:
            proof[at] = proof[at].upper()  # the same bytes, but not a hash as JSON holds one
        elif tamper == "spaced" and proof:
            proof[at] = proof[at][:2] + " " + proof[at][2:]  # fromhex would skip the space
        elif tamper == "not-hex" and proof:
            proof[at] = "zz" + proof[at][2:]
        elif tamper == "not-text" and proof:
            proof[at] = 12
        # the shortcut may only say yes when the reference says yes
        if paths.holds(leaf, index, proof):
            assert _accepted(leaf, index, size, proof, root)
        elif tamper == "none":
            raise AssertionError(f"a genuine proof for leaf {index} of {size} was refused")


def test_verification_pauses_the_collector_and_resumes_it(
    played: Played, bar_bundle: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import verify

    seen: list[bool] = []
    inner = verify._verify_bundle

    def spy(*args: Any) -> Report:
        seen.append(gc.isenabled())
        return inner(*args)

    monkeypatch.setattr(verify, "_verify_bundle", spy)
    was = gc.isenabled()
    gc.enable()
    try:
        report = played.verify(bar_bundle)
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
    assert report.ok, failures(report)
    assert seen == [False]
