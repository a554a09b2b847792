"""PROTOCOL.md section 5, sentence by sentence: the sentences no other test pinned.

A traceability audit went through section 5 (lines 149-288 of the page) field by field and
rule by rule, looking for the test that pins each normative statement; this module holds
one test per statement that had none (or was pinned only in part). Each test quotes its
sentence. They are checked as an independent implementation would: through the ledger
(``tests.factories.World``, the real rules) with the exact refusal code, and, for the
vocabularies, also through the strict model and the fast check that must agree with it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import nacl.signing
import pytest

from ledger import events as E
from ledger.errors import SchemaError
from ledger.events import check_body, parse_body
from ledger.protocol import public_key_hex
from tests import factories as F

World = F.World
Event = F.Event
out = F.out
money = F.money

#: section 5, "`recovery` and `process`: ...", in the page's order
PROCESSES = [
    "none",
    "crushing",
    "washing",
    "gravity",
    "amalgamation_retort",
    "amalgamation_open",
    "whole_ore_amalgamation",
    "cyanidation",
    "cyanide_on_mercury_tailings",
    "smelting",
    "refining",
    "splitting",
    "merging",
]
#: section 5, "women_roles? [of digging, hauling, ...]", in the page's order
WOMEN_ROLES = [
    "digging",
    "hauling",
    "crushing",
    "washing_panning",
    "processing",
    "team_leader",
    "pit_owner",
    "trading",
]
#: section 5, the flag table's codes
FLAG_CODES = [
    "worst_forms_child_labour",
    "forced_labour",
    "armed_group_support",
    "serious_abuse",
    "child_labour",
    "security_forces_illegal",
    "implausible_volume",
    "mass_discrepancy",
    "undeclared_border_crossing",
    "origin_misrepresentation",
    "bribery",
    "money_laundering",
    "taxes_unpaid",
    "mercury_worst_practice",
    "fineness_discrepancy",
    "armed_groups_nearby",
    "cahra_origin",
    "site_yellow",
    "site_unassessed",
]
CUSTODY = ["cooperative", "processor", "trader", "exporter", "refiner"]
ROLES = ["registrar", "auditor", *CUSTODY, "assayer"]


def new_lot(w: World, **kw: Any) -> str:
    lot: str = w.register_lot(**kw).body["lot"]
    return lot


def held_by(w: World, actor: str) -> str:
    """A new lot of coop's, handed over to ``actor`` (coop itself: not handed over)."""
    lot = new_lot(w)
    if actor != "coop":
        w.transfer(lot, actor)
    return lot


def prefix_of(w: World, actor: str) -> str:
    prefix = w.actor(actor).lot_prefix
    assert prefix is not None
    return prefix


# ---------------------------------------------------------------------------
# Vocabularies: every value the page lists is accepted (model, fast check and rules), a
# value it does not list is 422 schema naming the field, and the model has no other value.


def _output_form(w: World, value: str) -> Event:
    lot = new_lot(w)
    bar = {"serial": "BAR-1", "year": 2026} if value == "bar" else None
    return w.process([lot], [out("COOP-7000", 1, form=value, bar=bar)], post=False)


def _offer_with(field: str) -> Callable[[World, str], Event]:
    return lambda w, value: w.offer(new_lot(w), "trader", post=False, **{field: value})


def _producers_with(field: str, wrap: bool) -> Callable[[World, str], Event]:
    def build(w: World, value: str) -> Event:
        producers = {"women": 2, "men": 3, field: [value] if wrap else value}
        return w.register_lot(post=False, producers=producers)

    return build


def _declaring(field: str) -> Callable[[World, str], Event]:
    return lambda w, value: w.register_lot(post=False, declarations={**F.CLEAN, field: value})


def _resolving(w: World, value: str) -> Event:
    lot = new_lot(w)
    flag = w.flag(lot, "bribery")
    return w.resolve(lot, flag.flag_id("bribery"), value, post=False)


def _state_payment(w: World, value: str) -> Event:
    lot = held_by(w, "exporter")
    payment = {"kind": value, "amount": money(150_000, "UGX"), "receipt": "URA-2026-1"}
    return w.export(lot, post=False, state_payments=[payment])


#: (sentence, enum of the model, the page's values, build(world, value), path of a value)
VOCABULARIES: list[tuple[str, type[StrEnum], list[str], Callable[[World, str], Event], str]] = [
    (
        "Roles: registrar, auditor, cooperative, processor, trader, exporter, refiner, assayer",
        E.Role,
        ROLES,
        lambda w, v: w.register_actor("new-actor", [v], post=False),
        "roles[0]",
    ),
    (
        "form: ore, concentrate, gold (raw dust, nuggets, sponge), dore, bar",
        E.Form,
        ["ore", "concentrate", "gold", "dore", "bar"],
        _output_form,
        "outputs[0].form",
    ),
    (
        "lot.registered takes only ore, concentrate or gold",
        E.Form,
        ["ore", "concentrate", "gold"],
        lambda w, v: w.register_lot(post=False, form=v),
        "form",
    ),
    (
        "deposit? (alluvial, hard_rock, tailings)",
        E.Deposit,
        ["alluvial", "hard_rock", "tailings"],
        lambda w, v: w.register_site("site-x", "coop", post=False, deposit=v),
        "deposit",
    ),
    (
        "Site status: green (certified), yellow, red, blue (not inspected)",
        E.SiteStatus,
        ["green", "yellow", "red", "blue"],
        lambda w, v: w.assess_site("site-a", v, post=False),
        "status",
    ),
    (
        "findings? [flag codes]",
        E.FlagCode,
        FLAG_CODES,
        lambda w, v: w.assess_site("site-a", post=False, findings=[v]),
        "findings[0]",
    ),
    (
        "scheme (none, craft_engaged, craft_progress, fairmined, fairmined_ecological)",
        E.Scheme,
        ["none", "craft_engaged", "craft_progress", "fairmined", "fairmined_ecological"],
        lambda w, v: w.assess_site("site-a", post=False, scheme=v),
        "scheme",
    ),
    (
        "lot.flagged may raise any code of the table",
        E.FlagCode,
        FLAG_CODES,
        lambda w, v: w.flag(new_lot(w), v, post=False),
        "code",
    ),
    (
        "payment_method? (cash, mobile_money, bank, credit)",
        E.PaymentMethod,
        ["cash", "mobile_money", "bank", "credit"],
        _offer_with("payment_method"),
        "payment_method",
    ),
    (
        "seller_sex? (woman, man, undisclosed)",
        E.SellerSex,
        ["woman", "man", "undisclosed"],
        _offer_with("seller_sex"),
        "seller_sex",
    ),
    (
        "method (touchstone, acid, xrf, fire_assay)",
        E.AssayMethod,
        ["touchstone", "acid", "xrf", "fire_assay"],
        lambda w, v: w.assay(new_lot(w), 700_000, post=False, method=v),
        "method",
    ),
    (
        "outcome (unfounded, remediated)",
        E.Outcome,
        ["unfounded", "remediated"],
        _resolving,
        "outcome",
    ),
    (
        "pit_owner? (woman, man, mixed, cooperative)",
        E.PitOwner,
        ["woman", "man", "mixed", "cooperative"],
        _producers_with("pit_owner", wrap=False),
        "producers.pit_owner",
    ),
    (
        "women_roles? [of digging, hauling, crushing, washing_panning, processing, "
        "team_leader, pit_owner, trading]",
        E.WomenRole,
        WOMEN_ROLES,
        _producers_with("women_roles", wrap=True),
        "producers.women_roles[0]",
    ),
    (
        "recovery and process: none, crushing, washing, ... (recovery)",
        E.Process,
        PROCESSES,
        lambda w, v: w.register_lot(post=False, recovery=v),
        "recovery",
    ),
    (
        "recovery and process: none, crushing, washing, ... (process)",
        E.Process,
        PROCESSES,
        lambda w, v: w.process([new_lot(w)], [out("COOP-7000", 1)], process=v, post=False),
        "process",
    ),
    (
        "child_labour (none, non_wfcl, wfcl)",
        E.ChildLabour,
        ["none", "non_wfcl", "wfcl"],
        _declaring("child_labour"),
        "declarations.child_labour",
    ),
    (
        "armed_groups (none, nearby, controls_access, taxes)",
        E.ArmedGroups,
        ["none", "nearby", "controls_access", "taxes"],
        _declaring("armed_groups"),
        "declarations.armed_groups",
    ),
    (
        "security_forces (none, lawful, illegal_taxation, control)",
        E.SecurityForces,
        ["none", "lawful", "illegal_taxation", "control"],
        _declaring("security_forces"),
        "declarations.security_forces",
    ),
    (
        "state_payments: [{kind: royalty|tax|fee, amount: money, receipt}]",
        E.StatePaymentKind,
        ["royalty", "tax", "fee"],
        _state_payment,
        "state_payments[0].kind",
    ),
]
_VOCABULARY_IDS = [f"{enum.__name__}:{path}" for _, enum, _, _, path in VOCABULARIES]


@pytest.mark.parametrize(
    ("sentence", "enum", "values", "build", "path"), VOCABULARIES, ids=_VOCABULARY_IDS
)
def test_every_value_the_page_lists_is_accepted(
    sentence: str,
    enum: type[StrEnum],
    values: list[str],
    build: Callable[[World, str], Event],
    path: str,
) -> None:
    for value in values:
        w = World.standard()
        ev = build(w, value)
        parse_body(ev.body)
        check_body(ev.body)
        w.append(ev)  # and the rules accept it
        assert w.ledger.state.event(ev.id) is not None, (sentence, value)


@pytest.mark.parametrize(
    ("sentence", "enum", "values", "build", "path"), VOCABULARIES, ids=_VOCABULARY_IDS
)
def test_no_value_the_page_does_not_list(
    sentence: str,
    enum: type[StrEnum],
    values: list[str],
    build: Callable[[World, str], Event],
    path: str,
) -> None:
    if enum is not E.Form or len(values) == len(E.Form):
        # the model's vocabulary is the page's, no more (registration takes a subset)
        assert [member.value for member in enum] == values, sentence
    refused = ["Gold", " gold", "other"]
    if values == ["ore", "concentrate", "gold"]:
        refused += ["dore", "bar"]
    for value in refused:
        w = World.standard()
        ev = build(w, value)
        for check in (parse_body, check_body):
            with pytest.raises(SchemaError) as caught:
                check(ev.body)
            assert caught.value.detail.startswith(f"{path}: "), caught.value.detail
        assert w.code(ev) == "schema", (sentence, value)


# ---------------------------------------------------------------------------
# "`splitting` and `merging` may be signed by any custodian; every other process needs the
# cooperative, processor or refiner role."


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("holder", ["coop", "processor", "refiner", "trader", "exporter"])
def test_only_splitting_and_merging_are_open_to_every_custodian(holder: str, process: str) -> None:
    w = World.standard()
    lot = held_by(w, holder)
    ev = w.process([lot], [out(f"{prefix_of(w, holder)}7000", 1)], process=process, post=False)
    may = process in ("splitting", "merging") or bool(
        {"cooperative", "processor", "refiner"} & set(w.actor(holder).roles)
    )
    if may:
        w.append(ev)
        assert w.lot(lot).status == "consumed"
    else:
        assert w.code(ev) == "forbidden_role"


# ---------------------------------------------------------------------------
# "A consumed lot (an input of `lot.processed`) accepts nothing more (`lot_consumed`)":
# offers, flags, assays and processing were pinned; the other event types are here.


def test_a_consumed_lot_takes_no_export_resolution_or_answer() -> None:
    w = World.standard()
    lot = held_by(w, "exporter")
    offer = w.offer(lot, "trader")
    w.cancel(lot)
    flag = w.flag(lot, "bribery")
    w.split(lot, [1], ids=["EXP-7000"])
    assert w.lot(lot).status == "consumed"
    assert w.code(w.export(lot, post=False)) == "lot_consumed"
    assert w.code(w.resolve(lot, flag.flag_id("bribery"), post=False)) == "lot_consumed"
    # answers naming the offer it had: consumed before "not the pending offer"
    assert w.code(w.accept(lot, offer=offer.id, actor="trader", mass_mg=1, post=False)) == (
        "lot_consumed"
    )
    assert w.code(w.reject(lot, offer=offer.id, actor="trader", post=False)) == "lot_consumed"
    assert w.code(w.cancel(lot, offer=offer.id, actor="exporter", post=False)) == "lot_consumed"
    # the flag lives on in the output, under the same id, and is resolved there
    w.resolve("EXP-7000", flag.flag_id("bribery"))
    resolved = w.lot("EXP-7000").flag(flag.flag_id("bribery"))
    assert resolved is not None and resolved.status == "resolved"


# ---------------------------------------------------------------------------
# "An answer's `offer` must be the pending offer: ... a known one that is not pending is 409
# `no_pending_offer`" -- the pending offer of another lot is not this lot's.


def test_the_pending_offer_of_another_lot_is_not_pending_here() -> None:
    w = World.standard()
    a, b = new_lot(w), new_lot(w)
    w.offer(a, "trader")
    offer_b = w.offer(b, "trader")
    for answer in (
        w.accept(a, offer=offer_b.id, post=False),
        w.reject(a, offer=offer_b.id, post=False),
        w.cancel(a, offer=offer_b.id, post=False),
    ):
        assert w.code(answer) == "no_pending_offer"
    w.accept(b, offer=offer_b.id)  # it is still b's to answer
    assert w.lot(b).custodian == "trader" and w.lot(a).status == "offered"


# ---------------------------------------------------------------------------
# "An offer's `to` must be another actor (else 422 `schema`), active (`actor_revoked`),
# holding a custody role (`forbidden_role`)": every custody role may receive, no other.


@pytest.mark.parametrize("role", ROLES)
def test_an_offer_goes_only_to_an_actor_holding_a_custody_role(role: str) -> None:
    w = World.standard()
    w.register_actor("buyer", [role])
    ev = w.offer(new_lot(w), "buyer", post=False)
    if role in CUSTODY:
        w.append(ev)
        w.accept(ev.body["lot"])
        assert w.lot(ev.body["lot"]).custodian == "buyer"
    else:
        assert w.code(ev) == "forbidden_role"


# ---------------------------------------------------------------------------
# "A key belongs to one actor for ever: registering or rotating to a key that any actor
# holds or has held is refused (`key_reused`); so is a lot prefix already given
# (`prefix_reused`)."


def test_a_revoked_actors_key_and_prefix_are_never_given_again() -> None:
    w = World.standard()
    key = w.keys["trader2"]
    w.revoke("trader2")
    assert w.code(w.register_actor("new-one", ["auditor"], new_key=key, post=False)) == (
        "key_reused"
    )
    assert w.code(w.register_actor("new-one", ["trader"], lot_prefix="TRB-", post=False)) == (
        "prefix_reused"
    )
    update = w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="TRB-", post=False)
    assert w.code(update) == "prefix_reused"


def test_a_prefix_stays_given_when_its_actor_loses_its_custody_roles() -> None:
    w = World.standard()
    w.update_actor("trader", roles=["auditor"])
    assert w.actor("trader").lot_prefix == "TRD-"
    assert w.code(w.register_actor("new-one", ["trader"], lot_prefix="TRD-", post=False)) == (
        "prefix_reused"
    )


def test_the_registrars_key_and_an_actors_own_key_are_not_free() -> None:
    w = World.standard()
    seq0_key = w.registrar_key
    assert w.code(w.register_actor("new-one", ["auditor"], new_key=seq0_key, post=False)) == (
        "key_reused"
    )
    assert w.code(w.rotate_key("coop", new_key=seq0_key, post=False)) == "key_reused"
    # rotating to the key one holds now is rotating to a key it holds
    assert w.code(w.rotate_key("coop", new_key=w.keys["coop"], post=False)) == "key_reused"
    fresh = nacl.signing.SigningKey.generate()
    w.rotate_key("coop", new_key=fresh)
    assert w.actor("coop").keys[-1].key == public_key_hex(fresh)


# ---------------------------------------------------------------------------
# Field rules no refusal table covered: site indicators ("counts and money only"), money
# inside them and in state payments, the licence of an update, the workers of a process.


def _assessed(**fields: Any) -> Callable[[World], Event]:
    return lambda w: w.assess_site("site-a", post=False, **fields)


INCOME = {"women": money(300_000, "UGX"), "men": money(450_000, "UGX")}
FIELD_REFUSALS: list[tuple[str, Callable[[World], Event], str]] = [
    (
        "daily_income_median {women: money, men: money}: both",
        _assessed(daily_income_median={"women": money(300_000, "UGX")}),
        "daily_income_median.men",
    ),
    (
        "money: amount_minor is an integer >= 0",
        _assessed(daily_income_median={**INCOME, "women": money(-1, "UGX")}),
        "daily_income_median.women.amount_minor",
    ),
    (
        "money: currency ISO 4217",
        _assessed(daily_income_median={**INCOME, "men": money(1, "ugx")}),
        "daily_income_median.men.currency",
    ),
    (
        "money: currency ISO 4217 (a code that is none)",
        _assessed(daily_income_median={**INCOME, "men": money(1, "XYZ")}),
        "daily_income_median.men.currency",
    ),
    (
        "money: exactly {amount_minor, currency}",
        _assessed(daily_income_median={**INCOME, "men": {**money(1, "UGX"), "per": "day"}}),
        "daily_income_median.men.per",
    ),
    (
        "grievance_mechanism (bool)",
        _assessed(grievance_mechanism="yes"),
        "grievance_mechanism",
    ),
    (
        "womens_association (bool)",
        _assessed(womens_association=1),
        "womens_association",
    ),
    (
        "workforce {women, men}: both",
        _assessed(workforce={"women": 4}),
        "workforce.men",
    ),
    (
        "workforce: counts",
        _assessed(workforce={"women": 4, "men": -1}),
        "workforce.men",
    ),
    (
        "leadership {women, total}: women <= total",
        _assessed(leadership={"women": 8, "total": 7}),
        "leadership.women",
    ),
    (
        "mercury_exposure_pregnant (count)",
        _assessed(mercury_exposure_pregnant=-1),
        "mercury_exposure_pregnant",
    ),
    (
        "cahra? (bool)",
        _assessed(cahra="true"),
        "cahra",
    ),
    (
        "workers? {women, men} (counts)",
        lambda w: w.split(new_lot(w), [1], post=False, workers={"women": 1, "men": -1}),
        "workers.men",
    ),
    (
        "state_payments: amount is money",
        lambda w: w.export(
            held_by(w, "exporter"),
            post=False,
            state_payments=[{"kind": "fee", "amount": money(-5), "receipt": "R-1"}],
        ),
        "state_payments[0].amount.amount_minor",
    ),
    (
        "state_payments: receipt is required",
        lambda w: w.export(
            held_by(w, "exporter"),
            post=False,
            state_payments=[{"kind": "fee", "amount": money(5)}],
        ),
        "state_payments[0].receipt",
    ),
    (
        "actor.updated licence? {number, issuer, valid_until}",
        lambda w: w.update_actor("coop", post=False, licence={"number": "L-1", "issuer": "M"}),
        "licence.valid_until",
    ),
    (
        "site.registered licence? {number, issuer, valid_until}: a date",
        lambda w: w.register_site(
            "site-x",
            "coop",
            post=False,
            licence={"number": "PE-1", "issuer": "CAMI", "valid_until": "2027-02-30"},
        ),
        "licence.valid_until",
    ),
    (
        "actor.key_rotated: subject, key",
        lambda w: w.emit(
            {
                "type": "actor.key_rotated",
                "actor": "coop",
                "key": public_key_hex(nacl.signing.SigningKey.generate()),
            },
            post=False,
        ),
        "subject",
    ),
    (
        "actor.revoked: subject, reason",
        lambda w: w.revoke("trader2", post=False, reason=F.DROP),
        "reason",
    ),
]


@pytest.mark.parametrize(
    ("sentence", "build", "path"),
    FIELD_REFUSALS,
    ids=[sentence for sentence, _, _ in FIELD_REFUSALS],
)
def test_field_rules_are_422_schema_naming_the_field(
    sentence: str, build: Callable[[World], Event], path: str
) -> None:
    w = World.standard()
    ev = build(w)
    err = w.refuse(ev)
    assert err.code == "schema", (sentence, err)
    assert err.detail.startswith(f"{path}: "), (sentence, err.detail)


def test_every_site_indicator_is_optional_and_recorded_as_signed() -> None:
    """ "Site indicators (all optional; counts and money only)": an assessment with every
    indicator, then one with none, each recorded as the site's latest."""
    w = World.standard()
    indicators = {
        "workforce": {"women": 46, "men": 71},
        "leadership": {"women": 5, "total": 7},
        "women_owned": {"pits": 3, "processing_units": 0},
        "daily_income_median": INCOME,
        "gbv_reports": {"count": 2, "period_days": 90},
        "mercury_exposure_pregnant": 0,
        "womens_association": True,
        "grievance_mechanism": False,
        "scheme": "craft_progress",
    }
    full = w.assess_site("site-a", "yellow", cahra=True, findings=["bribery"], **indicators)
    assessment = w.site("site-a").assessment
    assert assessment is not None and assessment.event_id == full.id
    assert assessment.indicators == indicators
    assert (assessment.cahra, assessment.findings) == (True, ["bribery"])
    bare = w.assess_site("site-a", "green")
    assessment = w.site("site-a").assessment
    assert assessment is not None and assessment.event_id == bare.id
    assert (assessment.indicators, assessment.cahra, assessment.findings) == ({}, None, [])


# ---------------------------------------------------------------------------
# "Licences. An actor whose `licence` exists and has expired on the date of `time` cannot
# register, offer, accept, process or export." Read as the five lot actions of the sentence
# (lot.registered, lot.transfer_offered, lot.transfer_accepted, lot.processed,
# lot.exported): section 6 places `licence_expired` among the lot checks (after custody,
# operator, recipient or offerer). Registrars registering actors and sites, assessments,
# assays, flags and resolutions are not among them.


def test_an_expired_licence_bars_only_the_five_lot_actions() -> None:
    w = World.standard()
    expired = {"number": "L-0", "issuer": "Ministry of Mines", "valid_until": "2026-10-01"}
    w.update_actor("registrar", licence=expired)
    w.update_actor("auditor", licence=expired)
    w.update_actor("assayer", licence=expired)
    w.register_actor("new-coop", ["cooperative"])
    w.register_site("site-x", "new-coop")
    w.assess_site("site-x", "green", signer="auditor")
    w.update_actor("new-coop", name="Renamed cooperative")
    lot = new_lot(w)
    w.assay(lot, 790_000)
    flag = w.flag(lot, "bribery", actor="registrar")
    w.resolve(lot, flag.flag_id("bribery"), actor="auditor")
    w.update_actor("coop", licence=expired)
    assert w.code(w.register_lot(post=False)) == "licence_expired"
    assert w.code(w.offer(lot, "trader", post=False)) == "licence_expired"
    assert w.code(w.split(lot, [1], post=False)) == "licence_expired"
    w.assay(lot, 780_000, actor="coop")  # the custodian may still assay (lower)
    w.update_actor("coop", licence={**expired, "valid_until": "2027-10-01"})
    w.offer(lot, "exporter")
    w.update_actor("exporter", licence=expired)
    assert w.code(w.accept(lot, post=False)) == "licence_expired"
    w.update_actor("exporter", licence={**expired, "valid_until": "2027-10-01"})
    w.accept(lot)
    w.update_actor("exporter", licence=expired)
    assert w.code(w.export(lot, post=False)) == "licence_expired"


# ---------------------------------------------------------------------------
# "`lot.processed` | the custodian of every input": one input held by another actor is
# enough to refuse the whole event.


def test_processing_needs_the_custodian_of_every_input() -> None:
    w = World.standard()
    mine, theirs = new_lot(w), held_by(w, "trader")
    for inputs in ([mine, theirs], [theirs, mine]):
        ev = w.process(inputs, [out("COOP-7000", 1)], actor="coop", process="merging", post=False)
        assert w.code(ev) == "not_custodian"
    w.transfer(mine, "trader")
    w.merge([mine, theirs], into="TRD-7000")
    assert w.lot("TRD-7000").custodian == "trader"


# ---------------------------------------------------------------------------
# "outputs [... distinct new lots]" and "Lot ids are never reused (`duplicate_lot`)": a lot
# still active, and an output registered again.


def test_lot_ids_are_never_reused_whatever_made_them() -> None:
    w = World.standard()
    active, source = new_lot(w), new_lot(w)
    assert w.code(w.split(source, [1], ids=[active], post=False)) == "duplicate_lot"
    w.split(source, [1], ids=["COOP-7000"])
    assert w.code(w.register_lot("COOP-7000", post=False)) == "duplicate_lot"
    assert w.code(w.split(active, [1], ids=["COOP-7000"], post=False)) == "duplicate_lot"
    assert w.lot(active).status == "active"
