"""Tests of ledger.rules through MemoryLedger: every refusal code of PROTOCOL.md section 6
that a rule can produce, the order of the checks, who may sign what, the derived flags and
the rules that are easy to get wrong (sections 1, 2, 5 and 6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import protocol, rules
from ledger.errors import (
    ConflictError,
    ForbiddenError,
    LedgerError,
    MalformedError,
    NotFoundError,
    RuleError,
    SchemaError,
    SignatureError,
)
from ledger.events import FLAG_CLASS
from ledger.protocol import canonical, parse_strict, public_key_hex
from ledger.state import gender_summary
from tests import factories as F

World = F.World
Event = F.Event
out = F.out

GHOST_EVENT = "ab" * 32
#: a profile as section 5 gives it: women_led, members and leaders, none optional
PROFILE = {
    "women_led": True,
    "members": {"women": 3, "total": 10},
    "leaders": {"women": 1, "total": 3},
}
#: an on-curve point outside the prime-order subgroup (a valid key plus the point of order 2)
MIXED_ORDER_KEY = bytes(
    nacl.bindings.crypto_core_ed25519_add(
        bytes(nacl.signing.SigningKey(b"\x01" * 32).verify_key),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    )
).hex()

# PROTOCOL.md section 6: the HTTP status of every code, and the error class the ledger uses
STATUS = {
    **dict.fromkeys(["malformed"], 400),
    **dict.fromkeys(["bad_signature", "unknown_key", "key_inactive"], 401),
    **dict.fromkeys(
        [
            "forbidden_role",
            "not_custodian",
            "not_operator",
            "not_recipient",
            "not_offerer",
            "licence_expired",
            "actor_revoked",
            "wrong_prefix",
        ],
        403,
    ),
    **dict.fromkeys(
        ["unknown_actor", "unknown_site", "unknown_lot", "unknown_event", "unknown_flag"], 404
    ),
    **dict.fromkeys(
        [
            "log_not_started",
            "stale_prev",
            "offer_pending",
            "no_pending_offer",
            "lot_consumed",
            "lot_on_hold",
            "site_red",
            "duplicate_lot",
            "duplicate_actor",
            "duplicate_site",
            "key_reused",
            "prefix_reused",
            "flag_not_open",
            "duplicate_event",
            "last_registrar",
            "holds_lots",
        ],
        409,
    ),
    **dict.fromkeys(
        [
            "schema",
            "future_time",
            "time_order",
            "mass_balance",
            "fine_gold_balance",
            "fineness_raise",
        ],
        422,
    ),
}
CLASS_OF_STATUS: dict[int, type[LedgerError]] = {
    400: MalformedError,
    401: SignatureError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
}


def error_class(code: str) -> type[LedgerError]:
    if code == "schema":
        return SchemaError
    if STATUS[code] == 422:
        return RuleError
    return CLASS_OF_STATUS[STATUS[code]]


def new_lot(w: Any, **kw: Any) -> str:
    lot: str = w.register_lot(**kw).body["lot"]
    return lot


def held_lot(w: Any, code: str = "serious_abuse") -> tuple[str, str]:
    """A lot of coop's with an open hold flag; returns (lot, flag id)."""
    lot = new_lot(w)
    ev = w.flag(lot, code)
    return lot, ev.flag_id(code)


def consumed_lot(w: Any) -> str:
    lot = new_lot(w)
    w.split(lot, [50_000, 50_000])
    return lot


@dataclass
class Refusal:
    """What a case returns when it needs its own world or a server clock."""

    ev: Any
    world: Any = None
    now: dt.datetime | None = None


# ---------------------------------------------------------------------------
# 1. Every code of section 6 that a rule can produce, reached through the ledger

CASES: list[Any] = []


def case(code: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        CASES.append(pytest.param(code, fn, id=f"{code}:{fn.__name__}"))
        return fn

    return register


# -- 422 schema ------------------------------------------------------------------------


@case("schema")
def unknown_body_field(w: Any) -> Any:
    return w.register_lot(post=False, colour="yellowish")


@case("schema")
def optional_field_null(w: Any) -> Any:
    return w.register_lot(post=False, tag=None)


@case("schema")
def envelope_with_extra_key(w: Any) -> Any:
    ev = w.register_lot(post=False)
    ev.envelope["receipt"] = "x"
    return ev


@case("schema")
def signature_key_upper_case(w: Any) -> Any:
    ev = w.register_lot(post=False)
    ev.envelope["signature"]["key"] = ev.envelope["signature"]["key"].upper()
    return ev


@case("schema")
def offer_to_oneself(w: Any) -> Any:
    return w.offer(new_lot(w), "coop", post=False)


@case("schema")
def key_outside_prime_order_subgroup(w: Any) -> Any:
    body = {
        "type": "actor.registered",
        "actor": "registrar",
        "subject": "auditor-two",
        "name": "Second audit",
        "roles": ["auditor"],
        "key": MIXED_ORDER_KEY,
        "country": "UG",
    }
    return w.emit(body, post=False)


@case("schema")
def rotation_to_key_outside_prime_order_subgroup(w: Any) -> Any:
    body = {"type": "actor.key_rotated", "actor": "coop", "subject": "coop", "key": MIXED_ORDER_KEY}
    return w.emit(body, post=False)


@case("schema")
def update_first_custody_role_without_prefix(w: Any) -> Any:
    return w.update_actor("assayer", roles=["assayer", "trader"], post=False)


@case("schema")
def update_prefix_without_roles(w: Any) -> Any:
    return w.update_actor("assayer", lot_prefix="ASY-", post=False)


@case("schema")
def update_prefix_with_roles_holding_no_custody_role(w: Any) -> Any:
    return w.update_actor("assayer", roles=["assayer", "auditor"], lot_prefix="ASY-", post=False)


@case("schema")
def update_prefix_for_actor_with_custody_role(w: Any) -> Any:
    return w.update_actor("trader", roles=["trader", "exporter"], lot_prefix="TRN-", post=False)


@case("schema")
def update_prefix_when_custody_role_comes_back(w: Any) -> Any:
    # trader had a prefix; it lost its custody role and gets one back: the prefix is
    # never changed, so none may be given
    w.update_actor("trader", roles=["auditor"])
    return w.update_actor("trader", roles=["trader"], lot_prefix="TRN-", post=False)


# -- 409 log_not_started ------------------------------------------------------------------


@case("log_not_started")
def event_before_seq0(w: Any) -> Any:
    fresh = World(registrar=None)
    fresh.keys["registrar"] = fresh.registrar_key
    return Refusal(fresh.register_site("site-x", "registrar", post=False), world=fresh)


@case("log_not_started")
def registering_another_actor_first(w: Any) -> Any:
    fresh = World(registrar=None)
    fresh.keys["registrar"] = fresh.registrar_key
    return Refusal(fresh.register_actor("auditor", ["auditor"], post=False), world=fresh)


# -- 401 -----------------------------------------------------------------------------------


@case("bad_signature")
def body_changed_after_signing(w: Any) -> Any:
    return F.tamper(w.register_lot(post=False), mass_mg=1_000)


@case("bad_signature")
def signed_for_another_log(w: Any) -> Any:
    ev = w.register_lot(post=False)
    return F.resign(ev, w.keys["coop"], origin="other.goldtrail.example/log")


@case("bad_signature")
def signature_of_another_key(w: Any) -> Any:
    ev = w.register_lot(post=False)
    other = F.resign(ev, w.keys["trader"])
    ev.envelope["signature"]["value"] = other.envelope["signature"]["value"]
    return ev


@case("bad_signature")
def non_canonical_s(w: Any) -> Any:
    return F.malleate(w.register_lot(post=False))


@case("unknown_key")
def unknown_actor_signs(w: Any) -> Any:
    key = nacl.signing.SigningKey.generate()
    return w.register_site("site-x", "coop", signer="ghost-registrar", key=key, post=False)


@case("unknown_key")
def key_of_another_actor(w: Any) -> Any:
    return w.register_lot(post=False, key=w.keys["coop2"])


@case("unknown_key")
def seq0_signed_by_unconfigured_key(w: Any) -> Any:
    fresh = World(registrar=None)
    key = nacl.signing.SigningKey.generate()
    fresh.keys["registrar"] = key
    body = {
        "type": "actor.registered",
        "actor": "registrar",
        "subject": "registrar",
        "name": "Impostor",
        "roles": ["registrar"],
        "key": public_key_hex(key),
        "country": "CD",
    }
    return Refusal(fresh.emit(body, post=False), world=fresh)


@case("key_inactive")
def key_rotated_away(w: Any) -> Any:
    old = w.keys["coop"]
    w.rotate_key("coop")
    return w.register_lot(post=False, key=old)


@case("key_inactive")
def actor_revoked_signs(w: Any) -> Any:
    w.revoke("auditor")
    return w.flag(new_lot(w), post=False)


# -- the re-post rule -----------------------------------------------------------------------


@case("duplicate_event")
def same_body_signed_by_another_key(w: Any) -> Any:
    ev = w.register_lot()
    return F.resign(ev, nacl.signing.SigningKey.generate())


@case("duplicate_event")
def same_body_same_key_other_nonce(w: Any) -> Any:
    ev = w.register_lot()
    return F.alt_signature(ev, w.keys["coop"])


@case("duplicate_event")
def same_body_signed_by_rotated_in_key(w: Any) -> Any:
    ev = w.register_lot()
    w.rotate_key("coop")
    return F.resign(ev, w.keys["coop"])


# -- 422 time -------------------------------------------------------------------------------


@case("future_time")
def more_than_five_minutes_ahead(w: Any) -> Any:
    now = w.clock
    return Refusal(
        w.register_lot(post=False, time=now + dt.timedelta(minutes=5, seconds=1)), now=now
    )


@case("time_order")
def before_prev(w: Any) -> Any:
    lot = new_lot(w)
    return w.offer(lot, "trader", post=False, time=w.clock - dt.timedelta(seconds=1))


@case("time_order")
def before_the_offer(w: Any) -> Any:
    lot = new_lot(w)
    offer = w.offer(lot, "trader")
    # prev is unknown, so only the named offer gives a time to compare with
    return w.accept(
        lot,
        prev=GHOST_EVENT,
        post=False,
        time=F.parse_time(offer.body["time"]) - dt.timedelta(seconds=1),
    )


@case("time_order")
def before_an_input_prev(w: Any) -> Any:
    a, b = new_lot(w), new_lot(w)
    return w.merge([a, b], post=False, time=w.clock - dt.timedelta(seconds=1))


@case("time_order")
def before_the_event_giving_the_key(w: Any) -> Any:
    reg = w.register_actor("auditor-two", ["auditor"])
    earlier = F.parse_time(reg.body["time"]) - dt.timedelta(seconds=1)
    return w.assess_site("site-a", signer="auditor-two", post=False, time=earlier)


# -- 404 -------------------------------------------------------------------------------------


@case("unknown_actor")
def offer_to_unknown_actor(w: Any) -> Any:
    return w.offer(new_lot(w), "ghost-actor", post=False)


@case("unknown_actor")
def update_unknown_actor(w: Any) -> Any:
    return w.update_actor("ghost-actor", name="Nobody", post=False)


@case("unknown_actor")
def rotate_unknown_actor(w: Any) -> Any:
    return w.rotate_key("ghost-actor", signer="registrar", post=False)


@case("unknown_actor")
def revoke_unknown_actor(w: Any) -> Any:
    return w.revoke("ghost-actor", post=False)


@case("unknown_actor")
def site_with_unknown_operator(w: Any) -> Any:
    return w.register_site("site-x", "ghost-actor", post=False)


@case("unknown_site")
def lot_at_unknown_site(w: Any) -> Any:
    return w.register_lot("COOP-0099", "site-zz", actor="coop", post=False)


@case("unknown_site")
def assess_unknown_site(w: Any) -> Any:
    return w.assess_site("site-zz", post=False)


@case("unknown_lot")
def offer_unknown_lot(w: Any) -> Any:
    new_lot(w)
    body = {
        "type": "lot.transfer_offered",
        "actor": "coop",
        "lot": "COOP-9999",
        "prev": GHOST_EVENT,
        "to": "trader",
        "mass_mg": 1,
    }
    return w.emit(body, post=False)


@case("unknown_lot")
def process_unknown_input(w: Any) -> Any:
    lot = new_lot(w)
    return w.process([lot, ("COOP-9999", GHOST_EVENT)], [out("COOP-7000", 1)], post=False)


@case("unknown_lot")
def flag_unknown_lot(w: Any) -> Any:
    body = {
        "type": "lot.flagged",
        "actor": "auditor",
        "lot": "COOP-9999",
        "prev": GHOST_EVENT,
        "code": "bribery",
        "note": "tip-off",
    }
    return w.emit(body, post=False)


@case("unknown_event")
def accept_unknown_offer(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.accept(lot, offer=GHOST_EVENT, post=False)


@case("unknown_flag")
def resolve_flag_the_lot_does_not_carry(w: Any) -> Any:
    lot = new_lot(w)
    return w.resolve(lot, f"{GHOST_EVENT}/serious_abuse", post=False)


@case("unknown_flag")
def resolve_flag_of_another_lot(w: Any) -> Any:
    _, flag = held_lot(w)
    return w.resolve(new_lot(w), flag, post=False)


# -- 409 stale_prev ----------------------------------------------------------------------------


@case("stale_prev")
def prev_known_but_not_head(w: Any) -> Any:
    reg = w.register_lot()
    w.assay(reg.body["lot"], 790_000)
    return w.offer(reg.body["lot"], "trader", prev=reg.id, post=False)


@case("stale_prev")
def prev_unknown(w: Any) -> Any:
    return w.offer(new_lot(w), "trader", prev=GHOST_EVENT, post=False)


@case("stale_prev")
def input_prev_not_head(w: Any) -> Any:
    a = w.register_lot()
    w.flag(a.body["lot"], "bribery")
    b = new_lot(w)
    return w.process([(a.body["lot"], a.id), b], [out("COOP-7000", 1)], post=False)


# -- 403 ---------------------------------------------------------------------------------------


@case("forbidden_role")
def lot_registered_by_non_cooperative(w: Any) -> Any:
    return w.register_lot("TRD-0099", actor="trader", post=False)


@case("forbidden_role")
def actor_registered_by_non_registrar(w: Any) -> Any:
    return w.register_actor("trader-three", ["trader"], signer="auditor", post=False)


@case("forbidden_role")
def export_by_custodian_without_exporter_role(w: Any) -> Any:
    lot = new_lot(w)
    w.transfer(lot, "trader")
    return w.export(lot, post=False)


@case("forbidden_role")
def smelting_by_custodian_without_processing_role(w: Any) -> Any:
    lot = new_lot(w)
    w.transfer(lot, "trader")
    return w.process([lot], [out("TRD-7000", 90_000)], process="smelting", post=False)


@case("forbidden_role")
def offer_to_actor_without_custody_role(w: Any) -> Any:
    return w.offer(new_lot(w), "auditor", post=False)


@case("forbidden_role")
def site_operated_by_non_cooperative(w: Any) -> Any:
    return w.register_site("site-x", "trader", post=False)


@case("forbidden_role")
def flag_resolved_by_custodian(w: Any) -> Any:
    lot, flag = held_lot(w, "bribery")
    return w.resolve(lot, flag, actor="coop", post=False)


@case("not_custodian")
def offer_by_non_custodian(w: Any) -> Any:
    return w.offer(new_lot(w), "trader2", actor="trader", post=False)


@case("not_custodian")
def process_by_non_custodian(w: Any) -> Any:
    return w.process([new_lot(w)], [out("PRC-7000", 1)], actor="processor", post=False)


@case("not_custodian")
def export_by_non_custodian_exporter(w: Any) -> Any:
    return w.export(new_lot(w), actor="exporter", post=False)


@case("not_custodian")
def assay_by_non_custodian_non_assayer(w: Any) -> Any:
    return w.assay(new_lot(w), 700_000, actor="auditor", post=False)


@case("not_operator")
def lot_registered_by_another_cooperative(w: Any) -> Any:
    return w.register_lot("CPB-0099", "site-a", actor="coop2", post=False)


@case("not_recipient")
def accept_by_third_party(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.accept(lot, actor="trader2", post=False)


@case("not_recipient")
def reject_by_offerer(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.reject(lot, actor="coop", post=False)


@case("not_offerer")
def cancel_by_recipient(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.cancel(lot, actor="trader", post=False)


@case("licence_expired")
def registration_after_licence_expired(w: Any) -> Any:
    w.update_actor(
        "coop", licence={"number": "L-1", "issuer": "Mines", "valid_until": "2026-11-01"}
    )
    return w.register_lot(post=False, time="2026-11-02T00:00:00Z")


@case("actor_revoked")
def offer_to_revoked_actor(w: Any) -> Any:
    w.revoke("trader2")
    return w.offer(new_lot(w), "trader2", post=False)


@case("actor_revoked")
def update_revoked_actor(w: Any) -> Any:
    w.revoke("trader2")
    return w.update_actor("trader2", name="Renamed", post=False)


@case("actor_revoked")
def rotate_revoked_actor(w: Any) -> Any:
    w.revoke("trader2")
    return w.rotate_key("trader2", signer="registrar", post=False)


@case("actor_revoked")
def revoke_twice(w: Any) -> Any:
    w.revoke("trader2")
    return w.revoke("trader2", post=False)


@case("actor_revoked")
def site_operated_by_revoked_cooperative(w: Any) -> Any:
    w.revoke("coop2")
    return w.register_site("site-x", "coop2", post=False)


@case("wrong_prefix")
def lot_registered_with_another_prefix(w: Any) -> Any:
    return w.register_lot("CPB-0099", post=False)


@case("wrong_prefix")
def processing_output_with_another_prefix(w: Any) -> Any:
    lot = new_lot(w)
    return w.process([lot], [out("COOP-7000", 1_000), out("TRD-7001", 1_000)], post=False)


# -- other 409 -----------------------------------------------------------------------------------


@case("lot_consumed")
def offer_consumed_lot(w: Any) -> Any:
    return w.offer(consumed_lot(w), "trader", post=False)


@case("lot_consumed")
def flag_consumed_lot(w: Any) -> Any:
    return w.flag(consumed_lot(w), post=False)


@case("lot_consumed")
def assay_consumed_lot(w: Any) -> Any:
    return w.assay(consumed_lot(w), 700_000, post=False)


@case("lot_consumed")
def process_consumed_lot(w: Any) -> Any:
    return w.process([consumed_lot(w)], [out("COOP-7000", 1)], post=False)


@case("offer_pending")
def second_offer(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.offer(lot, "trader2", post=False)


@case("offer_pending")
def process_offered_lot(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.process([lot], [out("COOP-7000", 1)], post=False)


@case("offer_pending")
def assay_offered_lot(w: Any) -> Any:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return w.assay(lot, 700_000, post=False)


@case("no_pending_offer")
def answer_naming_a_cancelled_offer(w: Any) -> Any:
    lot = new_lot(w)
    offer = w.offer(lot, "trader")
    w.cancel(lot)
    return w.accept(lot, actor="trader", offer=offer.id, mass_mg=100_000, post=False)


@case("no_pending_offer")
def answer_naming_an_event_that_is_no_offer(w: Any) -> Any:
    reg = w.register_lot()
    w.offer(reg.body["lot"], "trader")
    return w.accept(reg.body["lot"], offer=reg.id, post=False)


@case("lot_on_hold")
def offer_held_lot(w: Any) -> Any:
    lot, _ = held_lot(w)
    return w.offer(lot, "trader", post=False)


@case("site_red")
def lot_at_red_site(w: Any) -> Any:
    w.assess_site("site-a", "red")
    return w.register_lot(post=False)


@case("duplicate_lot")
def lot_registered_twice(w: Any) -> Any:
    lot = new_lot(w)
    return w.register_lot(lot, post=False)


@case("duplicate_lot")
def processing_output_already_used(w: Any) -> Any:
    old = consumed_lot(w)
    return w.process([new_lot(w)], [out(old, 1_000)], post=False)


@case("duplicate_actor")
def actor_registered_twice(w: Any) -> Any:
    return w.register_actor("trader", ["trader"], lot_prefix="TRX-", post=False)


@case("duplicate_site")
def site_registered_twice(w: Any) -> Any:
    return w.register_site("site-a", "coop", post=False)


@case("key_reused")
def registration_with_a_held_key(w: Any) -> Any:
    return w.register_actor("auditor-two", ["auditor"], new_key=w.keys["coop"], post=False)


@case("key_reused")
def registration_with_a_key_held_in_the_past(w: Any) -> Any:
    old = w.keys["coop"]
    w.rotate_key("coop")
    return w.register_actor("auditor-two", ["auditor"], new_key=old, post=False)


@case("key_reused")
def rotation_to_another_actors_key(w: Any) -> Any:
    return w.rotate_key("coop", new_key=w.keys["trader"], post=False)


@case("key_reused")
def rotation_back_to_an_old_key(w: Any) -> Any:
    old = w.keys["coop"]
    w.rotate_key("coop")
    return w.rotate_key("coop", new_key=old, post=False)


@case("key_reused")
def rotation_to_a_revoked_actors_key(w: Any) -> Any:
    w.revoke("trader2")
    return w.rotate_key("coop", new_key=w.keys["trader2"], post=False)


@case("prefix_reused")
def registration_with_a_given_prefix(w: Any) -> Any:
    return w.register_actor("trader-three", ["trader"], lot_prefix="COOP-", post=False)


@case("prefix_reused")
def update_with_a_given_prefix(w: Any) -> Any:
    return w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="TRD-", post=False)


@case("flag_not_open")
def resolve_twice(w: Any) -> Any:
    lot, flag = held_lot(w)
    w.resolve(lot, flag)
    return w.resolve(lot, flag, post=False)


@case("last_registrar")
def revoke_last_registrar(w: Any) -> Any:
    return w.revoke("registrar", post=False)


@case("last_registrar")
def update_removes_last_registrars_role(w: Any) -> Any:
    return w.update_actor("registrar", roles=["auditor"], post=False)


@case("holds_lots")
def remove_custody_role_of_holder(w: Any) -> Any:
    new_lot(w)
    return w.update_actor("coop", roles=["auditor"], post=False)


# -- 422 balance ----------------------------------------------------------------------------------


@case("mass_balance")
def outputs_heavier_than_inputs(w: Any) -> Any:
    lot = new_lot(w)
    return w.process([lot], [out("COOP-7000", 60_000), out("COOP-7001", 40_001)], post=False)


@case("fine_gold_balance")
def outputs_richer_than_inputs(w: Any) -> Any:
    lot = new_lot(w)  # 100 000 mg at 800 000 ppm
    return w.process([lot], [out("COOP-7000", 90_000, 900_000)], post=False)


@case("fineness_raise")
def custodian_raises_fineness(w: Any) -> Any:
    return w.assay(new_lot(w), 800_001, actor="coop", post=False)


@pytest.mark.parametrize(("code", "make"), CASES)
def test_every_code_is_reached_through_the_ledger(code: str, make: Callable[[Any], Any]) -> None:
    w = World.standard()
    made = make(w)
    refusal = made if isinstance(made, Refusal) else Refusal(made)
    world = refusal.world or w
    err = world.refuse(refusal.ev, now=refusal.now)
    assert err.code == code, err
    assert isinstance(err, error_class(code)), type(err)
    assert err.index is None  # a single append names no batch index


def test_the_table_covers_every_code_a_rule_can_produce() -> None:
    reached = {p.values[0] for p in CASES}
    http_level = {"malformed", "too_large", "not_found"}
    assert reached == set(STATUS) - http_level


def test_error_in_a_batch_names_its_index_and_nothing_is_kept() -> None:
    w = World.standard()
    good = w.register_lot(post=False)
    bad = w.register_lot(post=False, colour="x")
    before = w.snapshot()
    with pytest.raises(SchemaError) as info:
        w.ledger.append_batch([good.envelope, bad.envelope])
    assert info.value.index == 1
    assert w.snapshot() == before


def test_later_events_of_a_batch_build_on_earlier_ones() -> None:
    w = World.standard()
    reg = w.register_lot(post=False)
    lot = reg.body["lot"]
    offer = w.emit(
        {
            "type": "lot.transfer_offered",
            "actor": "coop",
            "lot": lot,
            "prev": reg.id,
            "to": "trader",
            "mass_mg": 100_000,
        },
        post=False,
    )
    results = w.ledger.append_batch([reg.envelope, offer.envelope])
    assert [r.event_id for r in results] == [reg.id, offer.id]
    assert w.lot(lot).offer is not None and w.lot(lot).offer.id == offer.id


# ---------------------------------------------------------------------------
# 2. The re-post rule of section 2


def test_exact_repost_returns_the_existing_event_and_changes_nothing() -> None:
    w = World.standard()
    ev = w.register_lot()
    before = w.snapshot()
    again = w.append(ev)
    assert again.existing is not None
    assert again.existing.event_id == ev.id == again.event_id
    assert again.existing.seq == before["count"] - 1
    assert w.snapshot() == before


def test_repost_is_answered_whatever_happened_since() -> None:
    w = World.standard()
    reg = w.register_lot()
    lot = reg.body["lot"]
    w.transfer(lot, "trader")  # the lot moved on
    w.rotate_key("coop")  # the signer's key was rotated away
    w.revoke("coop")  # and the signer revoked
    before = w.snapshot()
    assert w.append(reg).existing is not None
    assert w.snapshot() == before


def test_repost_inside_a_batch_gets_the_first_receipt() -> None:
    w = World.standard()
    ev = w.register_lot(post=False)
    first, second = w.ledger.append_batch([ev.envelope, ev.envelope])
    assert first.existing is None
    assert second.existing is not None and second.existing.event_id == ev.id
    assert len(w.ledger.leaves) == w.ledger.state.count


def test_duplicate_event_needs_a_signature_that_verifies() -> None:
    """Reachability of duplicate_event: bad_signature runs first, so only a *valid* other
    signature over the same body gets there. Ed25519 is deterministic for a given key, but
    verification accepts any nonce, and ``signature.key`` may be any key: a random key, the
    actor's rotated-in key, or the same key with another nonce all verify and are refused
    as duplicate_event, never as unknown_key."""
    w = World.standard()
    ev = w.register_lot()
    assert w.code(F.malleate(ev)) == "bad_signature"
    assert w.code(F.tamper(ev, tag="T-1")) == "bad_signature"
    assert w.code(F.resign(ev, nacl.signing.SigningKey.generate())) == "duplicate_event"
    assert w.code(F.alt_signature(ev, w.keys["coop"])) == "duplicate_event"


# ---------------------------------------------------------------------------
# 3. malformed: the strict reader (the only 400 check the ledger code holds)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        pytest.param(b'{"a": "\xff"}', "UTF-8", id="not-utf8"),
        pytest.param(b'{"a": "\\ud800"}', "UTF-8", id="lone-surrogate"),
        pytest.param(b'{"a": 1', "not JSON", id="not-json"),
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b'{"a": 1, "a": 1}', "duplicate key", id="duplicate-key"),
        pytest.param(b'{"b": {"a": 1, "a": 2}}', "duplicate key", id="nested-duplicate-key"),
        pytest.param(b'{"a": 1.5}', "fraction", id="float"),
        pytest.param(b'{"a": 1.0}', "fraction", id="float-integral"),
        pytest.param(b'{"a": 1e3}', "exponent", id="exponent"),
        pytest.param(b'{"a": NaN}', "not a number", id="nan"),
        pytest.param(b'{"a": 9007199254740992}', "integer range", id="integer-above"),
        pytest.param(b'{"a": -9007199254740992}', "integer range", id="integer-below"),
        # more digits than Python's int() converts (4300): still 400 integer range, not a crash
        pytest.param(b'{"a": ' + b"1" * 5000 + b"}", "integer range", id="integer-5000-digits"),
        pytest.param(b"[-" + b"9" * 4301 + b"]", "integer range", id="integer-4301-digits-below"),
        pytest.param('{"a": "e\u0301"}'.encode(), "NFC", id="non-nfc-value"),
        pytest.param('{"a": ["e\u0301"]}'.encode(), "NFC", id="non-nfc-in-array"),
        pytest.param('"e\u0301"'.encode(), "NFC", id="non-nfc-top-level"),
        pytest.param('{"\u00e9": 1}'.encode(), "non-ASCII key", id="non-ascii-key"),
        pytest.param(b'\xef\xbb\xbf{"a": 1}', "byte-order mark", id="bom"),
    ],
)
def test_parse_strict_refuses_and_names_the_check(data: bytes, named: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_strict(data)
    assert info.value.code == "malformed"
    assert named in info.value.detail


def test_parse_strict_accepts_the_edges() -> None:
    value = parse_strict('{"a": 9007199254740991, "b": -9007199254740991, "c": "\u00e9"}'.encode())
    assert value == {"a": 2**53 - 1, "b": -(2**53 - 1), "c": "\u00e9"}


def test_a_signed_envelope_reads_back_through_the_strict_reader() -> None:
    w = World.standard()
    ev = w.register_lot(post=False)
    assert parse_strict(canonical(ev.envelope)) == ev.envelope
    w.append(parse_strict(canonical(ev.envelope)))
    assert ev.body["lot"] in w.ledger.state.lots


# ---------------------------------------------------------------------------
# 4. Precedence: an event that breaks two rules reports the one section 6 puts first


def _precedence_cases() -> list[Any]:
    cases: list[Any] = []

    def add(first: str, second: str) -> Callable[[Callable[[Any], Any]], Any]:
        def register(fn: Callable[[Any], Any]) -> Any:
            cases.append(pytest.param(first, fn, id=f"{first}-before-{second}:{fn.__name__}"))
            return fn

        return register

    @add("schema", "log_not_started")
    def schema_on_empty_log(w: Any) -> Any:
        fresh = World(registrar=None)
        fresh.keys["registrar"] = fresh.registrar_key
        return Refusal(
            fresh.register_site("site-x", "registrar", post=False, colour="red"), world=fresh
        )

    @add("log_not_started", "bad_signature")
    def tampered_on_empty_log(w: Any) -> Any:
        fresh = World(registrar=None)
        fresh.keys["registrar"] = fresh.registrar_key
        ev = fresh.register_site("site-x", "registrar", post=False)
        return Refusal(F.tamper(ev, name="Changed"), world=fresh)

    @add("schema", "bad_signature")
    def schema_and_tampered(w: Any) -> Any:
        return F.tamper(w.register_lot(post=False), mass_mg=0)

    @add("bad_signature", "unknown_lot")
    def tampered_offer_of_unknown_lot(w: Any) -> Any:
        ev = w.offer(new_lot(w), "trader", post=False)
        return F.tamper(ev, lot="COOP-9999")

    @add("bad_signature", "re-post")
    def malleated_repost(w: Any) -> Any:
        return F.malleate(w.register_lot())

    @add("duplicate_event", "unknown_key")
    def logged_body_signed_by_a_stranger(w: Any) -> Any:
        return F.resign(w.register_lot(), nacl.signing.SigningKey.generate())

    @add("unknown_key", "future_time")
    def stranger_from_the_future(w: Any) -> Any:
        now = w.clock
        return Refusal(
            w.register_lot(
                post=False, key=nacl.signing.SigningKey.generate(), time=now + dt.timedelta(hours=1)
            ),
            now=now,
        )

    @add("key_inactive", "time_order")
    def old_key_and_old_time(w: Any) -> Any:
        lot = new_lot(w)
        old = w.keys["coop"]
        w.rotate_key("coop")
        return w.offer(lot, "trader", key=old, post=False, time="2026-10-01T00:00:00Z")

    @add("time_order", "unknown_lot")
    def early_flag_on_unknown_lot(w: Any) -> Any:
        body = {
            "type": "lot.flagged",
            "actor": "auditor",
            "lot": "COOP-9999",
            "prev": GHOST_EVENT,
            "code": "bribery",
            "note": "tip-off",
        }
        return w.emit(body, post=False, time="2026-10-01T00:00:00Z")

    @add("future_time", "unknown_lot")
    def future_flag_on_unknown_lot(w: Any) -> Any:
        now = w.clock
        body = {
            "type": "lot.flagged",
            "actor": "auditor",
            "lot": "COOP-9999",
            "prev": GHOST_EVENT,
            "code": "bribery",
            "note": "tip-off",
        }
        return Refusal(w.emit(body, post=False, time=now + dt.timedelta(minutes=6)), now=now)

    @add("time_order", "stale_prev")
    def unknown_prev_before_the_offer(w: Any) -> Any:
        return before_the_offer(w)

    @add("unknown_lot", "not_custodian")
    def process_unknown_and_foreign_inputs(w: Any) -> Any:
        return w.process(
            [new_lot(w), ("CPB-9999", GHOST_EVENT)], [out("CPB-7000", 1)], actor="coop2", post=False
        )

    @add("unknown_actor", "not_custodian")
    def foreign_offer_to_unknown_actor(w: Any) -> Any:
        return w.offer(new_lot(w), "ghost-actor", actor="trader", post=False)

    @add("unknown_event", "stale_prev")
    def unknown_offer_and_stale_prev(w: Any) -> Any:
        lot = new_lot(w)
        w.offer(lot, "trader")
        return w.accept(lot, offer=GHOST_EVENT, prev=GHOST_EVENT, post=False)

    @add("unknown_flag", "stale_prev")
    def unknown_flag_and_stale_prev(w: Any) -> Any:
        lot = new_lot(w)
        return w.resolve(lot, f"{GHOST_EVENT}/bribery", prev=GHOST_EVENT, post=False)

    @add("stale_prev", "not_custodian")
    def stale_and_foreign(w: Any) -> Any:
        return w.offer(new_lot(w), "trader2", actor="trader", prev=GHOST_EVENT, post=False)

    @add("stale_prev", "forbidden_role")
    def stale_resolution_by_custodian(w: Any) -> Any:
        lot, flag = held_lot(w)
        return w.resolve(lot, flag, actor="coop", prev=GHOST_EVENT, post=False)

    @add("forbidden_role", "not_custodian")
    def smelting_by_foreign_trader(w: Any) -> Any:
        return w.process([new_lot(w)], [out("TRD-7000", 1)], actor="trader", post=False)

    @add("forbidden_role", "not_operator")
    def trader_registers_at_foreign_site(w: Any) -> Any:
        return w.register_lot("TRD-0099", actor="trader", post=False)

    @add("not_custodian", "licence_expired")
    def foreign_offer_with_expired_licence(w: Any) -> Any:
        lot = new_lot(w)
        w.update_actor(
            "trader", licence={"number": "T-1", "issuer": "Mines", "valid_until": "2026-10-01"}
        )
        return w.offer(lot, "trader2", actor="trader", post=False)

    @add("not_operator", "licence_expired")
    def foreign_site_with_expired_licence(w: Any) -> Any:
        w.update_actor(
            "coop2", licence={"number": "C-2", "issuer": "Mines", "valid_until": "2026-10-01"}
        )
        return w.register_lot("CPB-0099", "site-a", actor="coop2", post=False)

    @add("licence_expired", "wrong_prefix")
    def expired_and_wrong_prefix(w: Any) -> Any:
        w.update_actor(
            "coop", licence={"number": "C-1", "issuer": "Mines", "valid_until": "2026-10-01"}
        )
        return w.register_lot("CPB-0099", post=False)

    @add("licence_expired", "actor_revoked")
    def expired_offer_to_revoked(w: Any) -> Any:
        lot = new_lot(w)
        w.revoke("trader2")
        w.update_actor(
            "coop", licence={"number": "C-1", "issuer": "Mines", "valid_until": "2026-10-01"}
        )
        return w.offer(lot, "trader2", post=False)

    @add("not_recipient", "licence_expired")
    def third_party_accept_with_expired_licence(w: Any) -> Any:
        lot = new_lot(w)
        w.offer(lot, "trader")
        w.update_actor(
            "trader2", licence={"number": "T-2", "issuer": "Mines", "valid_until": "2026-10-01"}
        )
        return w.accept(lot, actor="trader2", post=False)

    @add("wrong_prefix", "lot_on_hold")
    def wrong_prefix_on_held_input(w: Any) -> Any:
        lot, _ = held_lot(w)
        return w.process([lot], [out("TRD-7000", 1)], post=False)

    @add("actor_revoked", "offer_pending")
    def second_offer_to_revoked(w: Any) -> Any:
        lot = new_lot(w)
        w.offer(lot, "trader")
        w.revoke("trader2")
        return w.offer(lot, "trader2", post=False)

    @add("forbidden_role", "lot_consumed")
    def consumed_offer_to_auditor(w: Any) -> Any:
        return w.offer(consumed_lot(w), "auditor", post=False)

    @add("not_custodian", "lot_on_hold")
    def foreign_offer_of_held_lot(w: Any) -> Any:
        lot, _ = held_lot(w)
        return w.offer(lot, "trader2", actor="trader", post=False)

    @add("not_recipient", "no_pending_offer")
    def third_party_names_old_offer(w: Any) -> Any:
        lot = new_lot(w)
        offer = w.offer(lot, "trader")
        w.cancel(lot)
        return w.accept(lot, actor="trader2", offer=offer.id, mass_mg=1, post=False)

    @add("lot_consumed", "offer_pending")
    def consumed_and_offered_inputs(w: Any) -> Any:
        gone = consumed_lot(w)
        offered = new_lot(w)
        w.offer(offered, "trader")
        return w.process([gone, offered], [out("COOP-7000", 1)], post=False)

    @add("offer_pending", "lot_on_hold")
    def offered_then_held(w: Any) -> Any:
        lot = new_lot(w)
        w.offer(lot, "trader")
        w.flag(lot)
        return w.offer(lot, "trader2", post=False)

    @add("no_pending_offer", "lot_on_hold")
    def old_offer_on_held_lot(w: Any) -> Any:
        lot = new_lot(w)
        offer = w.offer(lot, "trader")
        w.cancel(lot)
        w.flag(lot)
        return w.accept(lot, actor="trader", offer=offer.id, mass_mg=1, post=False)

    @add("lot_on_hold", "duplicate_lot")
    def held_input_reused_output(w: Any) -> Any:
        old = consumed_lot(w)
        lot, _ = held_lot(w)
        return w.process([lot], [out(old, 1)], post=False)

    @add("site_red", "duplicate_lot")
    def red_site_reused_lot(w: Any) -> Any:
        lot = new_lot(w)
        w.assess_site("site-a", "red")
        return w.register_lot(lot, post=False)

    @add("prefix_reused", "last_registrar")
    def reused_prefix_and_last_registrar(w: Any) -> Any:
        return w.update_actor("registrar", roles=["trader"], lot_prefix="COOP-", post=False)

    @add("last_registrar", "holds_lots")
    def last_registrar_holding_lots(w: Any) -> Any:
        w.update_actor("registrar", roles=["registrar", "cooperative"], lot_prefix="REG-")
        w.register_site("site-r", "registrar")
        w.register_lot("REG-0001", "site-r", actor="registrar")
        return w.update_actor("registrar", roles=["auditor"], post=False)

    @add("lot_on_hold", "mass_balance")
    def held_input_and_heavy_output(w: Any) -> Any:
        lot, _ = held_lot(w)
        return w.process([lot], [out("COOP-7000", 100_001)], post=False)

    @add("duplicate_lot", "fine_gold_balance")
    def reused_output_and_rich_output(w: Any) -> Any:
        old = consumed_lot(w)
        return w.process([new_lot(w)], [out(old, 90_000, 1_000_000)], post=False)

    @add("mass_balance", "fine_gold_balance")
    def heavy_and_rich(w: Any) -> Any:
        return w.process([new_lot(w)], [out("COOP-7000", 100_001, 1_000_000)], post=False)

    @add("offer_pending", "fineness_raise")
    def custodian_raises_offered(w: Any) -> Any:
        lot = new_lot(w)
        w.offer(lot, "trader")
        return w.assay(lot, 900_000, actor="coop", post=False)

    @add("lot_consumed", "fineness_raise")
    def custodian_raises_consumed(w: Any) -> Any:
        return w.assay(consumed_lot(w), 900_000, actor="coop", post=False)

    @add("forbidden_role", "schema")
    def prefix_update_by_non_registrar(w: Any) -> Any:
        return w.update_actor("assayer", signer="assayer", lot_prefix="ASY-", post=False)

    @add("actor_revoked", "schema")
    def prefix_missing_for_revoked_subject(w: Any) -> Any:
        w.revoke("assayer")
        return w.update_actor("assayer", roles=["trader"], post=False)

    @add("schema", "prefix_reused")
    def prefix_without_custody_and_reused(w: Any) -> Any:
        return w.update_actor("assayer", roles=["auditor"], lot_prefix="COOP-", post=False)

    return cases


@pytest.mark.parametrize(("code", "make"), _precedence_cases())
def test_precedence(code: str, make: Callable[[Any], Any]) -> None:
    w = World.standard()
    made = make(w)
    refusal = made if isinstance(made, Refusal) else Refusal(made)
    err = (refusal.world or w).refuse(refusal.ev, now=refusal.now)
    assert err.code == code, err


# ---------------------------------------------------------------------------
# 5. Who may sign what: section 5's "signed by" column


def _offered(w: Any) -> str:
    lot = new_lot(w)
    w.offer(lot, "trader")
    return lot


def _flagged(w: Any) -> tuple[str, str]:
    return held_lot(w, "bribery")


PERMISSIONS: list[tuple[str, str, Callable[[Any, str], Any], str | None]] = [
    # (type, signer kind, build(world, signer) -> event, expected code or None = accepted)
    (
        "actor.registered",
        "registrar",
        lambda w, s: w.register_actor("new-actor", ["auditor"], signer=s, post=False),
        None,
    ),
    (
        "actor.registered",
        "auditor",
        lambda w, s: w.register_actor("new-actor", ["auditor"], signer=s, post=False),
        "forbidden_role",
    ),
    (
        "actor.registered",
        "coop",
        lambda w, s: w.register_actor("new-actor", ["auditor"], signer=s, post=False),
        "forbidden_role",
    ),
    (
        "actor.updated name",
        "registrar",
        lambda w, s: w.update_actor("trader", signer=s, name="New name", post=False),
        None,
    ),
    (
        "actor.updated name",
        "trader",
        lambda w, s: w.update_actor("trader", signer=s, name="New name", post=False),
        "forbidden_role",
    ),
    (
        "actor.updated name",
        "auditor",
        lambda w, s: w.update_actor("trader", signer=s, name="New name", post=False),
        "forbidden_role",
    ),
    (
        "actor.updated profile",
        "registrar",
        lambda w, s: w.update_actor("trader", signer=s, profile=PROFILE, post=False),
        None,
    ),
    (
        "actor.updated profile",
        "trader",
        lambda w, s: w.update_actor("trader", signer=s, profile=PROFILE, post=False),
        None,
    ),
    (
        "actor.updated profile",
        "trader2",
        lambda w, s: w.update_actor("trader", signer=s, profile=PROFILE, post=False),
        "forbidden_role",
    ),
    (
        "actor.updated profile",
        "auditor",
        lambda w, s: w.update_actor("trader", signer=s, profile=PROFILE, post=False),
        "forbidden_role",
    ),
    (
        "actor.updated profile+licence",
        "trader",
        lambda w, s: w.update_actor(
            "trader",
            signer=s,
            profile=PROFILE,
            licence={"number": "X", "issuer": "Y", "valid_until": "2030-01-01"},
            post=False,
        ),
        "forbidden_role",
    ),
    ("actor.key_rotated", "subject", lambda w, s: w.rotate_key("trader", post=False), None),
    (
        "actor.key_rotated",
        "registrar",
        lambda w, s: w.rotate_key("trader", signer="registrar", post=False),
        None,
    ),
    (
        "actor.key_rotated",
        "auditor",
        lambda w, s: w.rotate_key("trader", signer="auditor", post=False),
        "forbidden_role",
    ),
    (
        "actor.key_rotated",
        "trader2",
        lambda w, s: w.rotate_key("trader", signer="trader2", post=False),
        "forbidden_role",
    ),
    ("actor.revoked", "registrar", lambda w, s: w.revoke("trader", signer=s, post=False), None),
    (
        "actor.revoked",
        "auditor",
        lambda w, s: w.revoke("trader", signer=s, post=False),
        "forbidden_role",
    ),
    (
        "actor.revoked",
        "trader",
        lambda w, s: w.revoke("trader", signer=s, post=False),
        "forbidden_role",
    ),
    (
        "site.registered",
        "registrar",
        lambda w, s: w.register_site("site-x", "coop", signer=s, post=False),
        None,
    ),
    (
        "site.registered",
        "auditor",
        lambda w, s: w.register_site("site-x", "coop", signer=s, post=False),
        "forbidden_role",
    ),
    (
        "site.registered",
        "coop",
        lambda w, s: w.register_site("site-x", "coop", signer=s, post=False),
        "forbidden_role",
    ),
    (
        "site.assessed",
        "registrar",
        lambda w, s: w.assess_site("site-a", signer=s, post=False),
        None,
    ),
    ("site.assessed", "auditor", lambda w, s: w.assess_site("site-a", signer=s, post=False), None),
    (
        "site.assessed",
        "coop",
        lambda w, s: w.assess_site("site-a", signer=s, post=False),
        "forbidden_role",
    ),
    (
        "site.assessed",
        "assayer",
        lambda w, s: w.assess_site("site-a", signer=s, post=False),
        "forbidden_role",
    ),
    ("lot.registered", "coop", lambda w, s: w.register_lot("COOP-0099", actor=s, post=False), None),
    (
        "lot.registered",
        "coop2",
        lambda w, s: w.register_lot("CPB-0099", actor=s, post=False),
        "not_operator",
    ),
    (
        "lot.registered",
        "trader",
        lambda w, s: w.register_lot("TRD-0099", actor=s, post=False),
        "forbidden_role",
    ),
    (
        "lot.registered",
        "registrar",
        lambda w, s: w.register_lot("COOP-0099", actor=s, post=False),
        "forbidden_role",
    ),
    (
        "lot.transfer_offered",
        "coop",
        lambda w, s: w.offer(new_lot(w), "trader2", actor=s, post=False),
        None,
    ),
    (
        "lot.transfer_offered",
        "trader",
        lambda w, s: w.offer(new_lot(w), "trader2", actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.transfer_offered",
        "registrar",
        lambda w, s: w.offer(new_lot(w), "trader2", actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.transfer_offered",
        "auditor",
        lambda w, s: w.offer(new_lot(w), "trader2", actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.transfer_accepted",
        "trader",
        lambda w, s: w.accept(_offered(w), actor=s, post=False),
        None,
    ),
    (
        "lot.transfer_accepted",
        "coop",
        lambda w, s: w.accept(_offered(w), actor=s, post=False),
        "not_recipient",
    ),
    (
        "lot.transfer_accepted",
        "trader2",
        lambda w, s: w.accept(_offered(w), actor=s, post=False),
        "not_recipient",
    ),
    (
        "lot.transfer_accepted",
        "auditor",
        lambda w, s: w.accept(_offered(w), actor=s, post=False),
        "forbidden_role",
    ),
    (
        "lot.transfer_rejected",
        "trader",
        lambda w, s: w.reject(_offered(w), actor=s, post=False),
        None,
    ),
    (
        "lot.transfer_rejected",
        "coop",
        lambda w, s: w.reject(_offered(w), actor=s, post=False),
        "not_recipient",
    ),
    (
        "lot.transfer_rejected",
        "trader2",
        lambda w, s: w.reject(_offered(w), actor=s, post=False),
        "not_recipient",
    ),
    (
        "lot.transfer_cancelled",
        "coop",
        lambda w, s: w.cancel(_offered(w), actor=s, post=False),
        None,
    ),
    (
        "lot.transfer_cancelled",
        "trader",
        lambda w, s: w.cancel(_offered(w), actor=s, post=False),
        "not_offerer",
    ),
    (
        "lot.transfer_cancelled",
        "registrar",
        lambda w, s: w.cancel(_offered(w), actor=s, post=False),
        "not_offerer",
    ),
    (
        "lot.processed smelting",
        "coop",
        lambda w, s: w.process([new_lot(w)], [out("COOP-7000", 1)], actor=s, post=False),
        None,
    ),
    (
        "lot.processed smelting",
        "trader custodian",
        lambda w, s: w.process(
            [_held_by(w, "trader")], [out("TRD-7000", 1)], actor="trader", post=False
        ),
        "forbidden_role",
    ),
    (
        "lot.processed smelting",
        "processor custodian",
        lambda w, s: w.process(
            [_held_by(w, "processor")], [out("PRC-7000", 1)], actor="processor", post=False
        ),
        None,
    ),
    (
        "lot.processed smelting",
        "refiner custodian",
        lambda w, s: w.process(
            [_held_by(w, "refiner")], [out("REF-7000", 1)], actor="refiner", post=False
        ),
        None,
    ),
    (
        "lot.processed smelting",
        "processor",
        lambda w, s: w.process([new_lot(w)], [out("PRC-7000", 1)], actor="processor", post=False),
        "not_custodian",
    ),
    (
        "lot.processed splitting",
        "trader custodian",
        lambda w, s: w.process(
            [_held_by(w, "trader")],
            [out("TRD-7000", 1)],
            actor="trader",
            process="splitting",
            post=False,
        ),
        None,
    ),
    (
        "lot.processed merging",
        "exporter custodian",
        lambda w, s: w.process(
            [_held_by(w, "exporter")],
            [out("EXP-7000", 1)],
            actor="exporter",
            process="merging",
            post=False,
        ),
        None,
    ),
    (
        "lot.processed splitting",
        "trader",
        lambda w, s: w.process(
            [new_lot(w)], [out("TRD-7000", 1)], actor="trader", process="splitting", post=False
        ),
        "not_custodian",
    ),
    (
        "lot.assayed",
        "assayer",
        lambda w, s: w.assay(new_lot(w), 900_000, actor=s, post=False),
        None,
    ),
    ("lot.assayed", "coop", lambda w, s: w.assay(new_lot(w), 700_000, actor=s, post=False), None),
    (
        "lot.assayed",
        "auditor",
        lambda w, s: w.assay(new_lot(w), 700_000, actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.assayed",
        "registrar",
        lambda w, s: w.assay(new_lot(w), 700_000, actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.assayed",
        "trader",
        lambda w, s: w.assay(new_lot(w), 700_000, actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.exported",
        "exporter custodian",
        lambda w, s: w.export(_held_by(w, "exporter"), actor="exporter", post=False),
        None,
    ),
    (
        "lot.exported",
        "trader custodian",
        lambda w, s: w.export(_held_by(w, "trader"), actor="trader", post=False),
        "forbidden_role",
    ),
    (
        "lot.exported",
        "exporter",
        lambda w, s: w.export(new_lot(w), actor="exporter", post=False),
        "not_custodian",
    ),
    (
        "lot.flagged",
        "auditor",
        lambda w, s: w.flag(new_lot(w), "bribery", actor=s, post=False),
        None,
    ),
    (
        "lot.flagged",
        "registrar",
        lambda w, s: w.flag(new_lot(w), "bribery", actor=s, post=False),
        None,
    ),
    ("lot.flagged", "coop", lambda w, s: w.flag(new_lot(w), "bribery", actor=s, post=False), None),
    (
        "lot.flagged",
        "assayer",
        lambda w, s: w.flag(new_lot(w), "bribery", actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.flagged",
        "trader",
        lambda w, s: w.flag(new_lot(w), "bribery", actor=s, post=False),
        "not_custodian",
    ),
    (
        "lot.flagged",
        "offer recipient",
        lambda w, s: w.flag(_offered(w), "bribery", actor="trader", post=False),
        "not_custodian",
    ),
    (
        "lot.flag_resolved",
        "auditor",
        lambda w, s: w.resolve(*_flagged(w), actor=s, post=False),
        None,
    ),
    (
        "lot.flag_resolved",
        "registrar",
        lambda w, s: w.resolve(*_flagged(w), actor=s, post=False),
        None,
    ),
    (
        "lot.flag_resolved",
        "coop",
        lambda w, s: w.resolve(*_flagged(w), actor=s, post=False),
        "forbidden_role",
    ),
    (
        "lot.flag_resolved",
        "assayer",
        lambda w, s: w.resolve(*_flagged(w), actor=s, post=False),
        "forbidden_role",
    ),
]


def _held_by(w: Any, actor: str) -> str:
    lot = new_lot(w)
    w.transfer(lot, actor)
    return lot


@pytest.mark.parametrize(
    ("kind", "signer", "build", "expected"),
    [pytest.param(*row, id=f"{row[0]}:{row[1]}:{row[3] or 'ok'}") for row in PERMISSIONS],
)
def test_permission_matrix(
    kind: str, signer: str, build: Callable[[Any, str], Any], expected: str | None
) -> None:
    w = World.standard()
    ev = build(w, signer)
    assert ev.body["type"] == kind.split()[0]
    if expected is None:
        result = w.append(ev)
        assert result.existing is None
        assert w.ledger.state.event(ev.id) is not None
    else:
        assert w.code(ev) == expected


# ---------------------------------------------------------------------------
# 6. Derived flags: one row per code, its class, and just below the threshold


def _flag_of(w: Any, lot: str, flag_id: str) -> Any:
    flag = w.lot(lot).flag(flag_id)
    assert flag is not None, (flag_id, w.lot(lot).flags)
    return flag


DECLARATION_FLAGS = [
    ({"child_labour": "wfcl"}, "worst_forms_child_labour", "hold"),
    ({"forced_labour": True}, "forced_labour", "hold"),
    ({"armed_groups": "controls_access"}, "armed_group_support", "hold"),
    ({"armed_groups": "taxes"}, "armed_group_support", "hold"),
    ({"child_labour": "non_wfcl"}, "child_labour", "high"),
    ({"security_forces": "illegal_taxation"}, "security_forces_illegal", "high"),
    ({"security_forces": "control"}, "security_forces_illegal", "high"),
    ({"armed_groups": "nearby"}, "armed_groups_nearby", "medium"),
]


@pytest.mark.parametrize(("declarations", "code", "cls"), DECLARATION_FLAGS)
def test_declaration_flags(declarations: dict[str, Any], code: str, cls: str) -> None:
    w = World.standard()
    reg = w.register_lot(declarations=declarations)
    lot = w.lot(reg.body["lot"])
    assert [(f.id, f.code, f.class_, f.status, f.outcome) for f in lot.flags] == [
        (reg.flag_id(code), code, cls, "open", None)
    ]
    assert lot.risk == cls
    assert lot.hold == (cls == "hold")
    assert FLAG_CLASS[code] == cls  # type: ignore[index]


@pytest.mark.parametrize(
    "declarations",
    [
        {},
        {"security_forces": "lawful"},
        {"armed_groups": "none", "child_labour": "none"},
    ],
)
def test_clean_declarations_raise_nothing(declarations: dict[str, Any]) -> None:
    w = World.standard()
    lot = new_lot(w, declarations=declarations)
    assert w.lot(lot).flags == []
    assert w.lot(lot).risk == "low"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("worst_forms_child_labour", "hold"),
        ("forced_labour", "hold"),
        ("armed_group_support", "hold"),
        ("serious_abuse", "hold"),
        ("child_labour", "high"),
        ("security_forces_illegal", "high"),
        ("implausible_volume", "high"),
        ("mass_discrepancy", "high"),
        ("undeclared_border_crossing", "high"),
        ("origin_misrepresentation", "high"),
        ("bribery", "high"),
        ("money_laundering", "high"),
        ("taxes_unpaid", "high"),
        ("mercury_worst_practice", "medium"),
        ("fineness_discrepancy", "medium"),
        ("armed_groups_nearby", "medium"),
        ("cahra_origin", "medium"),
        ("site_yellow", "medium"),
        ("site_unassessed", "medium"),
    ],
)
def test_lot_flagged_raises_any_code_with_its_class(code: str, cls: str) -> None:
    w = World.standard()
    lot = new_lot(w)
    ev = w.flag(lot, code)
    flag = _flag_of(w, lot, f"{ev.id}/{code}")
    assert (flag.code, flag.class_, flag.status) == (code, cls, "open")
    assert w.lot(lot).risk == cls
    assert w.head(lot) == ev.id


@pytest.mark.parametrize(
    ("women", "men", "days", "ppm", "limit_mg"),
    [
        (1, 0, 1, 1_000_000, 4_000),  # exactly 4 g of gold for one producer in one day
        (2, 3, 30, 800_000, 750_000),  # 5 producers × 30 days × 4 g = 600 g of gold
        (0, 1, 92, 1, 368_000_000_000),  # ore at 1 g/t over the longest span
    ],
)
def test_implausible_volume_threshold(
    women: int, men: int, days: int, ppm: int, limit_mg: int
) -> None:
    w = World.standard()
    at = w.register_lot(
        mass_mg=limit_mg,
        fineness_ppm=ppm,
        women=women,
        men=men,
        days=days,
        form="ore" if ppm < 1000 else "gold",
    )
    over = w.register_lot(
        mass_mg=limit_mg + 1,
        fineness_ppm=ppm,
        women=women,
        men=men,
        days=days,
        form="ore" if ppm < 1000 else "gold",
    )
    assert w.lot(at.body["lot"]).flags == []
    flag = _flag_of(w, over.body["lot"], over.flag_id("implausible_volume"))
    assert flag.class_ == "high"


@pytest.mark.parametrize("kind", ["offer", "accept", "assay"])
@pytest.mark.parametrize(
    ("weighed", "flagged"),
    [
        (100_500, False),
        (99_500, False),
        (100_501, True),
        (99_499, True),
        (100_000, False),
    ],
)
def test_mass_discrepancy_threshold(kind: str, weighed: int, flagged: bool) -> None:
    """200 × |new − mass| > mass: at 100 000 mg, a 500 mg difference is allowed."""
    w = World.standard()
    lot = new_lot(w)  # 100 000 mg
    if kind == "offer":
        ev = w.offer(lot, "trader", mass_mg=weighed)
    elif kind == "accept":
        w.offer(lot, "trader")
        ev = w.accept(lot, mass_mg=weighed)
    else:
        ev = w.assay(lot, 800_000, mass_mg=weighed)
    ids = w.flag_ids(lot, "mass_discrepancy")
    assert ids == ([ev.flag_id("mass_discrepancy")] if flagged else [])
    if flagged:
        assert w.lot(lot).risk == "high"


@pytest.mark.parametrize(("raise_by", "flagged"), [(50_000, False), (50_001, True)])
def test_fineness_discrepancy_threshold(raise_by: int, flagged: bool) -> None:
    w = World.standard()
    lot = new_lot(w, fineness_ppm=800_000)
    ev = w.assay(lot, 800_000 + raise_by)
    assert w.lot(lot).fineness_ppm == 800_000 + raise_by
    assert w.flag_ids(lot, "fineness_discrepancy") == (
        [ev.flag_id("fineness_discrepancy")] if flagged else []
    )


def test_fineness_discrepancy_only_for_raises() -> None:
    w = World.standard()
    lot = new_lot(w, fineness_ppm=900_000)
    w.assay(lot, 100_000)
    assert w.lot(lot).flags == []
    assert w.lot(lot).fineness_ppm == 100_000


@pytest.mark.parametrize(
    "recovery", ["amalgamation_open", "whole_ore_amalgamation", "cyanide_on_mercury_tailings"]
)
def test_mercury_worst_practice_on_registration(recovery: str) -> None:
    w = World.standard()
    reg = w.register_lot(recovery=recovery)
    flag = _flag_of(w, reg.body["lot"], reg.flag_id("mercury_worst_practice"))
    assert flag.class_ == "medium"


@pytest.mark.parametrize(
    "recovery", ["none", "gravity", "amalgamation_retort", "cyanidation", "smelting"]
)
def test_other_recoveries_raise_no_mercury_flag(recovery: str) -> None:
    w = World.standard()
    lot = new_lot(w, recovery=recovery)
    assert w.lot(lot).flags == []


@pytest.mark.parametrize(
    ("status", "valid_until", "code", "cls"),
    [
        ("green", None, None, "low"),
        ("yellow", None, "site_yellow", "medium"),
        ("blue", None, "site_unassessed", "medium"),
        ("green", "2026-10-31", "site_unassessed", "medium"),  # green expired counts as blue
        ("yellow", "2026-10-31", "site_unassessed", "medium"),  # yellow expired counts as blue
        ("green", "2026-11-01", None, "low"),  # valid on the day of valid_until
    ],
)
def test_site_colour_at_registration(
    status: str, valid_until: str | None, code: str | None, cls: str
) -> None:
    w = World.standard()
    w.assess_site("site-a", status, assessed_on="2026-10-01", valid_until=valid_until)
    reg = w.register_lot(time="2026-11-01T12:00:00Z")
    lot = w.lot(reg.body["lot"])
    assert [f.id for f in lot.flags] == ([reg.flag_id(code)] if code else [])
    assert lot.risk == cls


def test_never_assessed_site_is_blue() -> None:
    w = World.standard()
    w.register_site("site-n", "coop")
    reg = w.register_lot(site="site-n")
    assert w.site("site-n").status_on(w.today()) == "blue"
    assert w.open_codes(reg.body["lot"]) == ["site_unassessed"]


def test_red_site_stays_red_after_expiry_and_latest_assessment_wins() -> None:
    w = World.standard()
    w.assess_site("site-a", "red", assessed_on="2026-01-01", valid_until="2026-02-01")
    assert w.code(w.register_lot(post=False, time="2026-11-01T12:00:00Z")) == "site_red"
    w.assess_site("site-a", "yellow")  # the latest assessment in the log decides
    reg = w.register_lot()
    assert w.open_codes(reg.body["lot"]) == ["site_yellow"]


def test_latest_assessment_in_log_order_not_by_date() -> None:
    w = World.standard()
    w.assess_site("site-a", "yellow", assessed_on="2026-10-20")
    w.assess_site("site-a", "green", assessed_on="2026-09-01")  # older date, later in the log
    assert w.open_codes(new_lot(w)) == []


def test_site_findings_raise_no_lot_flag() -> None:
    w = World.standard()
    w.assess_site("site-a", "green", findings=["child_labour", "bribery"])
    assert w.site("site-a").assessment is not None
    assert w.site("site-a").assessment.findings == ["child_labour", "bribery"]
    assert w.lot(new_lot(w)).flags == []


@pytest.mark.parametrize(
    ("status", "valid_until", "codes"),
    [
        ("green", None, ["cahra_origin"]),
        ("yellow", None, ["cahra_origin", "site_yellow"]),
        ("green", "2026-11-01", ["cahra_origin"]),
        ("green", "2026-10-31", ["site_unassessed"]),  # cahra only while the assessment is valid
    ],
)
def test_cahra_origin_only_while_assessment_valid(
    status: str, valid_until: str | None, codes: list[str]
) -> None:
    w = World.standard()
    w.assess_site("site-a", status, assessed_on="2026-10-01", valid_until=valid_until, cahra=True)
    lot = new_lot(w, time="2026-11-01T12:00:00Z")
    assert w.open_codes(lot) == codes


def test_cahra_false_raises_nothing() -> None:
    w = World.standard()
    w.assess_site("site-a", "green", cahra=False)
    assert w.open_codes(new_lot(w)) == []


def test_several_flags_at_once_each_with_its_own_id() -> None:
    w = World.standard()
    w.assess_site("site-a", "yellow", cahra=True)
    reg = w.register_lot(
        declarations={"child_labour": "wfcl", "armed_groups": "nearby"},
        recovery="amalgamation_open",
    )
    codes = [
        "worst_forms_child_labour",
        "armed_groups_nearby",
        "mercury_worst_practice",
        "cahra_origin",
        "site_yellow",
    ]
    assert sorted(w.flag_ids(reg.body["lot"])) == sorted(reg.flag_id(c) for c in codes)
    assert w.lot(reg.body["lot"]).risk == "hold"


# -- holds ------------------------------------------------------------------------------------


def test_hold_blocks_offer_accept_process_and_export() -> None:
    w = World.standard()
    lot = _held_by(w, "exporter")
    w.flag(lot, "forced_labour")
    assert w.code(w.offer(lot, "trader", post=False)) == "lot_on_hold"
    assert (
        w.code(w.process([lot], [out("EXP-7000", 1)], process="splitting", post=False))
        == "lot_on_hold"
    )
    assert w.code(w.export(lot, post=False)) == "lot_on_hold"
    lot2 = new_lot(w)
    w.offer(lot2, "trader")
    w.flag(lot2)  # a flag may be raised on an offered lot
    assert w.code(w.accept(lot2, post=False)) == "lot_on_hold"


def test_hold_allows_reject_cancel_assay_flag_and_resolve() -> None:
    w = World.standard()
    lot = new_lot(w)
    w.offer(lot, "trader")
    hold = w.flag(lot)
    w.reject(lot)
    assert w.lot(lot).offer is None
    w.assay(lot, 700_000)
    w.flag(lot, "bribery", actor="coop")
    w.resolve(lot, hold.flag_id("serious_abuse"), "remediated")
    assert not w.lot(lot).hold
    w.offer(lot, "trader")  # allowed again once resolved

    lot2 = new_lot(w)
    w.offer(lot2, "trader")
    w.flag(lot2, "armed_group_support")
    w.cancel(lot2)
    assert w.lot(lot2).status == "active" and w.lot(lot2).hold


def test_a_hold_flag_resolved_unfounded_frees_the_lot_and_lowers_the_risk() -> None:
    w = World.standard()
    lot, flag = held_lot(w)
    assert (w.lot(lot).hold, w.lot(lot).risk) == (True, "hold")
    w.resolve(lot, flag, "unfounded")
    got = w.lot(lot).flag(flag)
    assert got is not None and (got.status, got.outcome) == ("resolved", "unfounded")
    assert (w.lot(lot).hold, w.lot(lot).risk) == (False, "low")


def test_a_pending_offer_allows_only_its_answers_flags_and_resolutions() -> None:
    w = World.standard()
    lot = _held_by(w, "exporter")
    offer = w.offer(lot, "refiner")
    assert w.code(w.assay(lot, 700_000, post=False)) == "offer_pending"
    assert w.code(w.assay(lot, 700_000, actor="exporter", post=False)) == "offer_pending"
    assert w.code(w.export(lot, post=False)) == "offer_pending"
    assert w.code(w.split(lot, [1], ids=["EXP-7000"], post=False)) == "offer_pending"
    assert w.code(w.offer(lot, "trader", post=False)) == "offer_pending"
    flag = w.flag(lot, "bribery")
    w.resolve(lot, flag.flag_id("bribery"), "unfounded")
    w.flag(lot, "taxes_unpaid", actor="exporter")  # the custodian (offerer) may flag too
    assert w.lot(lot).offer is not None and w.lot(lot).offer.id == offer.id
    w.accept(lot)  # the answer still names the offer, prev the latest head
    assert (w.lot(lot).custodian, w.lot(lot).status) == ("refiner", "active")


# -- risk -------------------------------------------------------------------------------------


def test_risk_order_and_remediated_hold_counts_as_high() -> None:
    w = World.standard()
    lot = new_lot(w)
    assert w.lot(lot).risk == "low"
    med = w.flag(lot, "site_yellow")
    assert w.lot(lot).risk == "medium"
    high = w.flag(lot, "bribery")
    assert w.lot(lot).risk == "high"
    hold = w.flag(lot, "serious_abuse")
    assert w.lot(lot).risk == "hold"
    w.resolve(lot, hold.flag_id("serious_abuse"), "remediated")
    assert w.lot(lot).risk == "high"
    w.resolve(lot, high.flag_id("bribery"), "remediated")
    assert w.lot(lot).risk == "high"  # the remediated hold still counts as high
    w.resolve(lot, med.flag_id("site_yellow"), "unfounded")
    assert w.lot(lot).risk == "high"
    lot2, flag2 = held_lot(w)
    w.resolve(lot2, flag2, "unfounded")
    assert w.lot(lot2).risk == "low"
    lot3 = new_lot(w)
    f3 = w.flag(lot3, "bribery")
    w.resolve(lot3, f3.flag_id("bribery"), "remediated")  # a high one counts no more
    assert w.lot(lot3).risk == "low"


# -- inheritance through processing ----------------------------------------------------------


def test_processing_inherits_open_flags_and_remediated_holds_only() -> None:
    w = World.standard()
    w.assess_site("site-a", "yellow")
    a = w.register_lot(declarations={"child_labour": "non_wfcl"})  # site_yellow + child_labour
    la = a.body["lot"]
    hold = w.flag(la, "serious_abuse")
    w.resolve(la, hold.flag_id("serious_abuse"), "remediated")
    hold2 = w.flag(la, "forced_labour")
    w.resolve(la, hold2.flag_id("forced_labour"), "unfounded")
    w.resolve(la, a.flag_id("site_yellow"), "remediated")  # medium resolved: not inherited
    proc = w.process([la], [out("COOP-7000", 50_000), out("COOP-7001", 40_000)])
    for child in ("COOP-7000", "COOP-7001"):
        got = [(f.id, f.code, f.class_, f.status, f.outcome) for f in w.lot(child).flags]
        assert sorted(got) == sorted(
            [
                (a.flag_id("child_labour"), "child_labour", "high", "open", None),
                (hold.flag_id("serious_abuse"), "serious_abuse", "hold", "resolved", "remediated"),
            ]
        )
        assert w.lot(child).risk == "high"
        assert not w.lot(child).hold
        assert w.lot(child).head == proc.id
        assert w.lot(child).origins == ["site-a"]
    assert w.lot(la).status == "consumed"


def test_resolving_on_one_output_leaves_siblings_and_input_untouched() -> None:
    w = World.standard()
    lot, flag = held_lot(w, "armed_group_support")
    w.resolve(lot, flag, "remediated")
    w.flag(lot, "bribery")
    bribery = w.flag_ids(lot, "bribery")[0]
    w.split(lot, [50_000, 50_000], ids=["COOP-7000", "COOP-7001"])
    w.resolve("COOP-7000", bribery, "unfounded")
    first, second = w.lot("COOP-7000").flag(bribery), w.lot("COOP-7001").flag(bribery)
    assert first is not None and (first.status, first.outcome) == ("resolved", "unfounded")
    assert second is not None and (second.status, second.outcome) == ("open", None)
    original = w.lot(lot).flag(bribery)
    assert original is not None and original.status == "open"
    assert w.lot("COOP-7000").risk == "high"  # the remediated hold
    assert w.code(w.resolve("COOP-7000", flag, post=False)) == "flag_not_open"


def test_merge_of_siblings_keeps_a_flag_open_on_any_input_open() -> None:
    w = World.standard()
    lot = new_lot(w)
    f = w.flag(lot, "bribery")
    w.split(lot, [50_000, 50_000], ids=["COOP-7000", "COOP-7001"])
    w.resolve("COOP-7000", f.flag_id("bribery"), "unfounded")
    w.merge(["COOP-7000", "COOP-7001"], "COOP-7002")
    got = w.lot("COOP-7002").flags
    assert [(x.id, x.status) for x in got] == [(f.flag_id("bribery"), "open")]


def test_flag_resolved_on_every_input_is_not_inherited() -> None:
    w = World.standard()
    lot = new_lot(w)
    f = w.flag(lot, "bribery")
    w.split(lot, [50_000, 50_000], ids=["COOP-7000", "COOP-7001"])
    w.resolve("COOP-7000", f.flag_id("bribery"), "unfounded")
    w.resolve("COOP-7001", f.flag_id("bribery"), "remediated")
    w.merge(["COOP-7000", "COOP-7001"], "COOP-7002")
    assert w.lot("COOP-7002").flags == []


@pytest.mark.parametrize(
    "process", ["amalgamation_open", "whole_ore_amalgamation", "cyanide_on_mercury_tailings"]
)
def test_a_process_raises_one_flag_id_on_every_output(process: str) -> None:
    w = World.standard()
    a, b = new_lot(w), new_lot(w)
    ev = w.process(
        [a, b],
        [out("COOP-7000", 50_000), out("COOP-7001", 50_000), out("COOP-7002", 50_000)],
        process=process,
    )
    for child in ("COOP-7000", "COOP-7001", "COOP-7002"):
        assert [(f.id, f.class_, f.status) for f in w.lot(child).flags] == [
            (ev.flag_id("mercury_worst_practice"), "medium", "open")
        ]
    for lot in (a, b):
        assert w.lot(lot).flags == []  # the inputs are consumed, not flagged
    w.resolve("COOP-7000", ev.flag_id("mercury_worst_practice"), "remediated")
    assert w.lot("COOP-7000").risk == "low"
    assert w.lot("COOP-7001").risk == "medium"


# ---------------------------------------------------------------------------
# 7. Rules that are easy to get wrong


def test_lot_prefixes_on_registration() -> None:
    w = World.standard()
    assert w.code(w.register_lot("CPB-0001", post=False)) == "wrong_prefix"
    assert w.code(w.register_lot("COOP0001", post=False)) == "wrong_prefix"  # no hyphen
    assert w.code(w.register_lot("XCOOP-001", post=False)) == "wrong_prefix"
    w.register_lot("COOP-0001")
    w.register_lot("COOP--A")  # anything after the prefix
    assert {"COOP-0001", "COOP--A"} <= set(w.ledger.state.lots)


def test_lot_prefixes_on_processing_outputs() -> None:
    w = World.standard()
    lot = _held_by(w, "trader")
    # outputs start with the processor's prefix, not the input's
    assert w.code(w.split(lot, [1, 1], ids=["COOP-7000", "COOP-7001"], post=False)) == (
        "wrong_prefix"
    )
    assert w.code(w.split(lot, [1, 1], ids=["TRD-7000", "COOP-7001"], post=False)) == (
        "wrong_prefix"
    )
    w.split(lot, [1, 1], ids=["TRD-7000", "TRD-7001"])
    assert w.lot("TRD-7000").custodian == "trader"


def test_actor_without_prefix_never_reaches_wrong_prefix() -> None:
    """An actor without a prefix has no custody role, so it can neither register (the role
    check comes first) nor hold a lot to process; wrong_prefix for a prefix-less actor is
    unreachable."""
    w = World.standard()
    w.register_site("site-x", "coop")
    assert w.actor("assayer").lot_prefix is None
    assert w.code(w.register_lot("XX-0001", "site-x", actor="assayer", post=False)) == (
        "forbidden_role"
    )
    assert w.code(w.offer(new_lot(w), "assayer", post=False)) == "forbidden_role"
    lot = new_lot(w)
    assert (
        w.code(
            w.process([lot], [out("XX-0001", 1)], actor="assayer", process="splitting", post=False)
        )
        == "not_custodian"
    )


def test_prefix_given_with_the_first_custody_role_and_never_changed() -> None:
    w = World.standard()
    w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="ASY-")
    assert w.actor("assayer").lot_prefix == "ASY-"
    assert w.ledger.state.prefixes["ASY-"] == "assayer"
    lot = _held_by(w, "assayer")
    w.split(lot, [1], ids=["ASY-0001"])
    assert w.code(w.update_actor("assayer", roles=["assayer"], post=False)) == "holds_lots"
    w2 = World.standard()
    w2.update_actor("trader", roles=["auditor"])
    w2.update_actor("trader", roles=["trader"])  # back, with the same prefix
    assert w2.actor("trader").lot_prefix == "TRD-"
    assert (
        w2.code(w2.register_actor("new-one", ["trader"], lot_prefix="TRD-", post=False))
        == "prefix_reused"
    )


def test_holds_lots_blocks_removing_any_custody_role_of_a_holder() -> None:
    w = World.standard()
    lot = _held_by(w, "exporter")  # exporter holds [exporter, trader]
    assert w.code(w.update_actor("exporter", roles=["exporter"], post=False)) == "holds_lots"
    assert w.code(w.update_actor("exporter", roles=["auditor"], post=False)) == "holds_lots"
    w.update_actor("exporter", roles=["exporter", "trader", "refiner"])  # adding is fine
    w.update_actor("exporter", name="Exporter renamed")  # so is anything but roles
    w.transfer(lot, "trader")
    w.update_actor("exporter", roles=["auditor"])  # holds nothing any more
    assert w.actor("exporter").roles == ["auditor"]
    assert w.actor("exporter").held_lots == 0


def test_fineness_custodian_cannot_raise_even_as_assayer() -> None:
    w = World.standard()
    w.register_actor("lab-trader", ["trader", "assayer"], lot_prefix="LAB-")
    lot = _held_by(w, "lab-trader")
    assert w.code(w.assay(lot, 800_001, actor="lab-trader", post=False)) == "fineness_raise"
    w.assay(lot, 800_000, actor="lab-trader")  # equal is no raise
    w.assay(lot, 750_000, actor="lab-trader")  # lowering is always allowed
    assert w.lot(lot).fineness_ppm == 750_000
    w.assay(lot, 990_000, actor="assayer")  # an independent assayer may raise
    assert w.lot(lot).fineness_ppm == 990_000
    assert w.open_codes(lot) == ["fineness_discrepancy"]


def test_fineness_changes_only_by_assay() -> None:
    w = World.standard()
    lot = new_lot(w, fineness_ppm=600_000)
    w.transfer(lot, "trader")
    w.flag(lot, "bribery")
    assert w.lot(lot).fineness_ppm == 600_000
    w.assay(lot, 650_000)
    assert w.lot(lot).fineness_ppm == 650_000


def test_mass_balance_and_fine_gold_balance_are_separate() -> None:
    w = World.standard()
    lot = new_lot(w)  # 100 000 mg × 800 000 ppm = 8 × 10^10
    # lighter but richer: mass fine, fine gold not
    assert w.code(w.process([lot], [out("COOP-7000", 90_000, 900_000)], post=False)) == (
        "fine_gold_balance"
    )
    # heavier but poorer: fine gold fine, mass not
    assert w.code(w.process([lot], [out("COOP-7000", 100_001, 100_000)], post=False)) == (
        "mass_balance"
    )
    # fine gold exactly equal with less mass: allowed (≤)
    w.process([lot], [out("COOP-7000", 80_000, 1_000_000)])
    assert w.lot("COOP-7000").mass_mg == 80_000
    # mass and fine gold both exactly equal: allowed
    lot2 = new_lot(w)
    w.process([lot2], [out("COOP-7001", 50_000, 800_000), out("COOP-7002", 50_000, 800_000)])
    assert w.actor("coop").held_lots == 3


def test_balance_sums_over_all_inputs_and_outputs() -> None:
    w = World.standard()
    a = new_lot(w, mass_mg=60_000, fineness_ppm=500_000)  # 3.0e10
    b = new_lot(w, mass_mg=40_000, fineness_ppm=900_000)  # 3.6e10
    total = 60_000 * 500_000 + 40_000 * 900_000
    assert (
        w.code(w.process([a, b], [out("COOP-7000", 66_001, 1_000_000)], post=False))
        == "fine_gold_balance"
    )
    assert total == 66_000 * 1_000_000
    w.process([a, b], [out("COOP-7000", 66_000, 1_000_000)])
    assert w.actor("coop").held_lots == 1
    assert [w.lot(x).status for x in (a, b)] == ["consumed", "consumed"]


def test_balance_uses_the_mass_after_weighing() -> None:
    w = World.standard()
    lot = new_lot(w)
    w.offer(lot, "trader")
    w.accept(lot, mass_mg=99_000)  # weighed lighter: the lot now weighs 99 000 mg
    assert (
        w.code(w.process([lot], [out("TRD-7000", 99_001)], process="splitting", post=False))
        == "mass_balance"
    )
    w.process([lot], [out("TRD-7000", 99_000)], process="splitting")


def test_weighing_never_makes_gold() -> None:
    w = World.standard()
    lot = new_lot(w)  # 100 000 mg
    offer = w.offer(lot, "trader", mass_mg=100_400)  # an offer's mass is only compared
    assert w.lot(lot).mass_mg == 100_000
    assert w.lot(lot).offer is not None and w.lot(lot).offer.mass_mg == 100_400
    assert w.lot(lot).offer.id == offer.id
    w.accept(lot, mass_mg=100_300)  # heavier on receipt: mass stays
    assert w.lot(lot).mass_mg == 100_000
    w.assay(lot, 800_000, mass_mg=100_200)  # heavier at assay: mass stays
    assert w.lot(lot).mass_mg == 100_000
    w.assay(lot, 800_000, mass_mg=99_800)  # lighter: mass goes down
    assert w.lot(lot).mass_mg == 99_800
    w.offer(lot, "trader2")
    w.accept(lot, mass_mg=99_700)
    assert w.lot(lot).mass_mg == 99_700
    assert w.lot(lot).flags == []  # all within 0.5 %


def test_time_order_equal_time_allowed() -> None:
    w = World.standard()
    reg = w.register_lot()
    t = reg.body["time"]
    offer = w.offer(reg.body["lot"], "trader", time=t)
    w.accept(reg.body["lot"], time=t)
    assert w.lot(reg.body["lot"]).custodian == "trader"
    assert offer.body["time"] == t
    early = F.parse_time(t) - dt.timedelta(seconds=1)
    assert w.code(w.offer(reg.body["lot"], "trader2", time=early, post=False)) == "time_order"


def test_time_order_before_a_known_but_stale_prev() -> None:
    """The time rule compares with every named event that exists, head or not."""
    w = World.standard()
    reg = w.register_lot(time="2026-11-02T10:00:00Z")
    lot = reg.body["lot"]
    w.flag(lot, "bribery", time="2026-11-02T11:00:00Z")
    stale = w.offer(lot, "trader", prev=reg.id, time="2026-11-02T09:00:00Z", post=False)
    assert w.code(stale) == "time_order"
    stale_ok = w.offer(lot, "trader", prev=reg.id, time="2026-11-02T10:30:00Z", post=False)
    assert w.code(stale_ok) == "stale_prev"


def test_future_time_tolerance_is_five_minutes() -> None:
    w = World.standard()
    now = w.clock + dt.timedelta(minutes=1)
    w.register_lot(time=now + dt.timedelta(minutes=5), now=now)
    assert (
        w.code(w.register_lot(post=False, time=now + dt.timedelta(minutes=5, seconds=1)), now=now)
        == "future_time"
    )
    # without a clock (an import, a replay) the rule is skipped
    w.register_lot(time=now + dt.timedelta(days=3))


@pytest.mark.parametrize(
    ("offerer", "recipient", "export_to", "flagged"),
    [
        ("exporter-cd", "exporter", "UG", False),  # CD → UG, exported to UG: declared
        ("exporter-cd", "exporter", None, True),  # CD → UG without export
        ("exporter-cd", "exporter", "AE", True),  # CD → UG, exported elsewhere
        ("exporter-cd", "trader", None, False),  # same country
        ("exporter-cd", "trader", "UG", False),  # same country, whatever the destination
        ("exporter", "refiner", "CH", False),  # UG → CH, exported to CH
    ],
)
def test_border_crossing(
    offerer: str, recipient: str, export_to: str | None, flagged: bool
) -> None:
    w = World.standard()
    w.register_actor("exporter-cd", ["exporter"], lot_prefix="EXC-")
    lot = new_lot(w)
    if offerer != "coop":
        w.transfer(lot, offerer)
    if export_to is not None:
        w.export(lot, export_to)
        assert (w.lot(lot).destination, w.lot(lot).exported) == (export_to, True)
    ev = w.transfer(lot, recipient)
    assert (ev.flag_id("undeclared_border_crossing") in w.flag_ids(lot)) == flagged
    assert w.lot(lot).destination is None  # any acceptance clears it
    assert w.lot(lot).exported == (export_to is not None)


def test_rejected_or_cancelled_offer_keeps_the_destination() -> None:
    w = World.standard()
    lot = _held_by(w, "exporter")
    w.export(lot, "CH")
    w.offer(lot, "refiner")
    w.reject(lot)
    w.offer(lot, "refiner")
    w.cancel(lot)
    assert w.lot(lot).destination == "CH"
    ev = w.transfer(lot, "refiner")
    assert ev.flag_id("undeclared_border_crossing") not in w.flag_ids(lot)


@pytest.mark.parametrize(
    ("destinations", "kept"),
    [
        (["CH", "CH"], "CH"),
        (["CH", None], None),
        (["CH", "AE"], None),
        ([None, None], None),
        (["CH"], "CH"),
    ],
)
def test_processing_keeps_a_destination_only_if_all_inputs_share_it(
    destinations: list[str | None], kept: str | None
) -> None:
    w = World.standard()
    lots = []
    for dest in destinations:
        lot = _held_by(w, "exporter")
        if dest is not None:
            w.export(lot, dest)
        lots.append(lot)
    ev = w.merge(lots, "EXP-7000")
    assert w.lot("EXP-7000").destination == kept
    assert w.lot("EXP-7000").exported is False  # not exported on its own chain
    cross = w.transfer("EXP-7000", "refiner")  # UG → CH
    assert (cross.flag_id("undeclared_border_crossing") in w.flag_ids("EXP-7000")) == (kept != "CH")
    assert ev.id in {w.lot(x).head for x in lots}


def test_exported_flag_semantics() -> None:
    w = World.standard()
    lot = _held_by(w, "exporter")
    assert w.lot(lot).exported is False
    w.export(lot, "CH")
    w.export(lot, "AE")  # may be exported again: the latest destination counts
    assert (w.lot(lot).exported, w.lot(lot).destination) == (True, "AE")
    w.offer(lot, "refiner")
    assert w.code(w.export(lot, post=False)) == "offer_pending"
    w.accept(lot)
    assert (w.lot(lot).exported, w.lot(lot).destination) == (True, None)  # ever exported
    w.split(lot, [50_000], ids=["REF-7000"])
    assert w.lot("REF-7000").exported is False


@pytest.mark.parametrize("action", ["register", "offer", "accept", "process", "export"])
def test_licence_valid_on_its_last_day_expired_the_day_after(action: str) -> None:
    w = World.standard()
    licence = {"number": "LIC-1", "issuer": "Mines", "valid_until": "2026-11-05"}
    who = {
        "register": "coop",
        "offer": "coop",
        "accept": "trader",
        "process": "coop",
        "export": "exporter",
    }[action]
    w.update_actor(who, licence=licence)

    def attempt(time: str, post: bool) -> Any:
        if action == "register":
            return w.register_lot(time=time, post=post)
        if action == "offer":
            return w.offer(new_lot(w), "trader", time=time, post=post)
        if action == "accept":
            lot = new_lot(w)
            w.offer(lot, "trader")
            return w.accept(lot, time=time, post=post)
        if action == "process":
            return w.split(new_lot(w), [1], time=time, post=post)
        return w.export(_held_by(w, "exporter"), time=time, post=post)

    w.at("2026-11-05T23:00:00Z")
    attempt("2026-11-05T23:59:59Z", True)  # valid on the day of valid_until
    w.at("2026-11-05T23:30:00Z")  # the setup events come before midnight
    assert w.code(attempt("2026-11-06T00:00:00Z", False)) == "licence_expired"
    w.at("2026-11-06T00:00:00Z")
    w.update_actor(who, licence={**licence, "valid_until": "2027-11-05"})
    attempt("2026-11-06T00:30:00Z", True)  # renewed


def test_expired_licence_still_rejects_cancels_and_flags() -> None:
    w = World.standard()
    lot, lot2 = new_lot(w), new_lot(w)
    w.offer(lot, "trader")
    w.offer(lot2, "trader")
    expired = {"number": "L", "issuer": "Mines", "valid_until": "2026-10-01"}
    w.update_actor("trader", licence=expired)
    w.update_actor("coop", licence=expired)
    assert w.code(w.accept(lot, post=False)) == "licence_expired"
    w.reject(lot)  # the recipient may still refuse
    w.cancel(lot2)  # and the offerer withdraw
    assert w.code(w.offer(lot, "trader", post=False)) == "licence_expired"
    w.flag(lot, "bribery", actor="coop")  # the custodian may still flag and assay
    w.assay(lot, 700_000, actor="coop")
    assert (w.lot(lot).status, w.lot(lot2).status) == ("active", "active")
    assert w.lot(lot).fineness_ppm == 700_000


def test_key_rotation() -> None:
    w = World.standard()
    lot = new_lot(w)
    old = w.keys["coop"]
    rot = w.rotate_key("coop")
    assert w.code(w.offer(lot, "trader", key=old, post=False)) == "key_inactive"
    rot_time = F.parse_time(rot.body["time"])
    early = w.offer(lot, "trader", time=rot_time - dt.timedelta(seconds=1), post=False)
    assert w.code(early) == "time_order"
    w.offer(lot, "trader", time=rot_time)  # the new key from the rotation's time on
    keys = w.actor("coop").keys
    assert [(k.key, k.ended, k.until_seq) for k in keys] == [
        (public_key_hex(old), "rotated", keys[1].since_seq),
        (public_key_hex(w.keys["coop"]), None, None),
    ]
    assert keys[1].since_event == rot.id


def test_key_rotation_by_a_registrar() -> None:
    w = World.standard()
    old = w.keys["trader"]
    w.rotate_key("trader", signer="registrar")
    lot = _held_by(w, "trader")
    assert w.code(w.offer(lot, "trader2", key=old, post=False)) == "key_inactive"
    w.offer(lot, "trader2")


def test_revocation() -> None:
    w = World.standard()
    lot = _held_by(w, "trader")
    key = w.keys["trader"]
    w.revoke("trader")
    a = w.actor("trader")
    assert (a.status, a.keys[-1].ended, a.current_key()) == ("revoked", "revoked", None)
    assert w.code(w.offer(lot, "trader2", post=False)) == "key_inactive"
    assert w.lot(lot).custodian == "trader"  # its lots stay where they are
    assert w.code(w.offer(new_lot(w), "trader", post=False)) == "actor_revoked"
    assert w.code(w.update_actor("trader", name="x", post=False)) == "actor_revoked"
    assert (
        w.code(w.update_actor("trader", signer="trader", profile=PROFILE, post=False))
        == "key_inactive"
    )
    assert w.code(w.rotate_key("trader", signer="registrar", post=False)) == "actor_revoked"
    assert w.code(w.rotate_key("trader", post=False)) == "key_inactive"
    assert w.code(w.register_actor("reborn", ["trader"], new_key=key, post=False)) == ("key_reused")
    assert w.code(w.register_actor("trader", ["trader"], lot_prefix="TRX-", post=False)) == (
        "duplicate_actor"
    )


def test_revoked_recipient_cannot_accept_a_pending_offer() -> None:
    w = World.standard()
    lot = new_lot(w)
    w.offer(lot, "trader")
    w.revoke("trader")
    assert w.code(w.accept(lot, post=False)) == "key_inactive"
    w.cancel(lot)
    assert w.lot(lot).status == "active"


def test_recipient_that_lost_its_custody_role_cannot_accept() -> None:
    """Custody roles are the roles that may hold lots: an offer's recipient whose custody
    roles were removed while the offer was pending cannot take the lot (forbidden_role);
    it may still reject it."""
    w = World.standard()
    lot = new_lot(w)
    w.offer(lot, "trader")
    w.update_actor("trader", roles=["auditor"])  # holds nothing yet: allowed
    assert w.code(w.accept(lot, post=False)) == "forbidden_role"
    w.reject(lot)
    assert w.lot(lot).custodian == "coop"


def test_last_registrar_rules() -> None:
    w = World.standard()
    assert w.code(w.revoke("registrar", post=False)) == "last_registrar"
    assert w.code(w.update_actor("registrar", roles=["auditor"], post=False)) == ("last_registrar")
    w.update_actor("registrar", roles=["registrar", "auditor"])  # keeping it is fine
    w.register_actor("registrar-two", ["registrar"])
    w.revoke("registrar", signer="registrar-two")
    assert w.code(w.revoke("registrar-two", signer="registrar-two", post=False)) == (
        "last_registrar"
    )
    w.register_actor("registrar-three", ["registrar"], signer="registrar-two")
    w.update_actor("registrar-two", signer="registrar-three", roles=["auditor"])
    assert w.ledger.state.active_registrars() == ["registrar-three"]


def test_gender_summary_counts_each_origin_once_through_split_and_merge() -> None:
    w = World.standard()
    a = w.register_lot(
        mass_mg=1_500,
        fineness_ppm=999_999,
        producers={"women": 3, "men": 1, "women_led": True},
        payment={"total": F.money(5_000, "USD"), "to_women": F.money(4_000, "USD")},
    )
    b = w.register_lot(
        mass_mg=1_500,
        fineness_ppm=999_999,
        producers={"women": 1, "men": 4},
        payment={"total": F.money(700_000, "UGX"), "to_women": F.money(100_000, "UGX")},
    )
    c = w.register_lot(
        "CPB-0001",
        "site-b",
        mass_mg=2_000,
        fineness_ppm=500_000,
        producers={"women": 2, "men": 2, "women_led": False},
        payment={"total": F.money(900_000, "CDF"), "to_women": F.money(0, "CDF")},
    )
    la, lb, lc = (x.body["lot"] for x in (a, b, c))
    w.split(la, [700, 700], ids=["COOP-A1", "COOP-A2"])
    w.assay("COOP-A1", 100_000)  # later assays do not change the origins' figures
    w.merge(["COOP-A1", "COOP-A2", lb], "COOP-M1")
    w.transfer("COOP-M1", "processor")
    w.transfer(lc, "processor")
    w.merge(["COOP-M1", lc], "PRC-M2", actor="processor")
    summary = gender_summary(w.ledger.state, w.lot("PRC-M2"))
    assert w.lot("PRC-M2").origin_lots == sorted([la, lb, lc])
    assert w.lot("PRC-M2").origins == ["site-a", "site-b"]
    fine = 1_500 * 999_999 * 2 + 2_000 * 500_000
    assert summary == {
        "producers": {"women": 6, "men": 7},
        "women_led_fine_mg": 1_500 * 999_999 // 10**6,  # 1499 (1499.9985)
        # rounded down once: 2999 + 1000 = 3999, not 1499 + 1499 + 1000 = 3998
        "origin_fine_mg": fine // 10**6,
        "paid": [
            {"currency": "CDF", "total": 900_000, "to_women": 0},
            {"currency": "UGX", "total": 700_000, "to_women": 100_000},
            {"currency": "USD", "total": 5_000, "to_women": 4_000},
        ],
    }
    assert summary["origin_fine_mg"] == 3999


def test_gender_summary_of_a_registered_lot() -> None:
    w = World.standard()
    reg = w.register_lot(
        mass_mg=2_000_001, fineness_ppm=1, producers={"women": 0, "men": 1, "women_led": False}
    )
    summary = gender_summary(w.ledger.state, w.lot(reg.body["lot"]))
    assert summary == {
        "producers": {"women": 0, "men": 1},
        "women_led_fine_mg": 0,
        "origin_fine_mg": 2,
        "paid": [],
    }


def test_held_lots_counters_follow_custody() -> None:
    w = World.standard()
    a, b = new_lot(w), new_lot(w)
    assert w.actor("coop").held_lots == 2
    w.transfer(a, "trader")
    assert (w.actor("coop").held_lots, w.actor("trader").held_lots) == (1, 1)
    w.split(a, [10, 10, 10], ids=["TRD-1", "TRD-2", "TRD-3"])
    assert w.actor("trader").held_lots == 3
    w.offer(b, "trader")
    assert w.actor("coop").held_lots == 1  # still the custodian while offered
    w.accept(b)
    assert (w.actor("coop").held_lots, w.actor("trader").held_lots) == (0, 4)


def test_verified_marks_a_prepared_envelope_as_replace_would() -> None:
    w = World.standard()
    prepared = rules.prepare(w.register_lot(post=False).envelope)
    marked = rules.verified(prepared, F.ORIGIN)
    assert marked == prepared._replace(verified_for=F.ORIGIN)
    assert all(
        getattr(marked, name) is getattr(prepared, name)
        for name in rules.Prepared._fields
        if name != "verified_for"
    )
    with pytest.raises(SignatureError):
        rules.verified(prepared, "other.goldtrail.example/log")


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"0123456789abcdef", "A", "F", " ", "\t", "g", "\u0661", "\x00", "é"]),
        min_size=0,
        max_size=70,
    ).filter(lambda chars: len(chars) % 2 == 0),
    st.booleans(),
)
def test_lower_hex_agrees_with_its_pattern(chars: list[str], mostly_hex: bool) -> None:
    # split_envelope's check of a key (64) or a signature (128): even lengths only
    text = "".join(chars)
    if mostly_hex:
        text = text[:1] + "ab" * 31 + text[1:2] if len(text) >= 2 else "ab" * 32
    assert protocol._is_lower_hex(text) == (protocol._LOWER_HEX.fullmatch(text) is not None)


def on_the_standard_log() -> list[Any]:
    """The refusal cases (``CASES`` and the precedence pairs) that play on the standard
    world's log, for the tests that replay them elsewhere (over HTTP, through a bundle):
    not those that build a world of their own (an empty log, another registrar)."""

    def plays(case: Any) -> bool:
        made = case.values[1](F.World.standard())
        return not (isinstance(made, Refusal) and made.world is not None)

    return [case for case in [*CASES, *_precedence_cases()] if plays(case)]
