"""PROTOCOL.md section 5, "Event types" ("Actors and sites", "Lots"), through HTTP.

The body checks were pinned on ``ledger.events.parse_body`` (tests/ledger/test_events.py)
and the fast checks against it (tests/ledger/test_fast_checks.py); here an independent
client's view: every way a body of each type can be wrong that the page names (a missing
field, a field of another type, a value off its vocabulary, a count below 0, a text or
reference out of its length, a cross-field rule: ``to_women`` ≤ ``total``, ``women`` ≤
``total``, ``assessed_on`` ≤ ``valid_until``, ``extracted``, ``bar`` iff form bar, distinct
lots...) is answered ``POST /v1/events`` 422 ``schema`` with a ``detail`` that names the
field, and leaves the log as it was; every value of every vocabulary of the page, and the
edges of every range, are accepted; and ``actor.updated``'s ``lot_prefix`` rule is a 422
``schema`` "checked after the 403s" (and before the other 409s).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger.events import EVENT_TYPES, FLAG_CLASS
from tests import factories as F
from tests.ledger.test_conformance_section5 import PROCESSES, WOMEN_ROLES

from .conftest import Api, open_api, refusal

H = "ab" * 32
DROP = "<drop>"
PROFILE = {
    "women_led": True,
    "members": {"women": 3, "total": 10},
    "leaders": {"women": 1, "total": 3},
}


def _money(amount: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


class Arena:
    """One log with every situation the body refusals need; nothing here changes it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        w = self.w = api.world().standard()
        self.lot = w.register_lot(actor="coop").body["lot"]
        self.other = w.register_lot(actor="coop").body["lot"]
        self.offered = w.register_lot(actor="coop").body["lot"]
        w.offer(self.offered, "trader")
        self.flagged = w.register_lot(actor="coop").body["lot"]
        self.flag = w.flag(self.flagged).flag_id("serious_abuse")
        self.exporting = w.register_lot(actor="coop").body["lot"]
        w.transfer(self.exporting, "exporter")

    def valid(self, kind: str) -> F.Event:
        """A valid, unposted event of ``kind`` (the server would accept it as it is)."""
        w = self.w
        builders: dict[str, Callable[[], F.Event]] = {
            "actor.registered": lambda: w.register_actor(
                "newbie",
                ["trader"],
                licence={"number": "L-1", "issuer": "Ministry", "valid_until": "2027-12-31"},
                profile=PROFILE,
                post=False,
            ),
            "actor.updated": lambda: w.update_actor("trader", name="Trader renamed", post=False),
            "actor.key_rotated": lambda: w.rotate_key("trader", post=False),
            "actor.revoked": lambda: w.revoke("trader2", post=False),
            "site.registered": lambda: w.register_site(
                "site-z", "coop", deposit="alluvial", post=False
            ),
            "site.assessed": lambda: w.assess_site(
                "site-a", "green", workforce={"women": 1, "men": 2}, post=False
            ),
            "lot.registered": lambda: w.register_lot(
                actor="coop",
                producers={"women": 2, "men": 3, "women_roles": ["digging"]},
                payment={"total": _money(500), "to_women": _money(200)},
                state_payments=[{"kind": "tax", "amount": _money(5), "receipt": "R-1"}],
                post=False,
            ),
            "lot.transfer_offered": lambda: w.offer(
                self.lot, "trader", price=_money(100), payment_method="cash", post=False
            ),
            "lot.transfer_accepted": lambda: w.accept(self.offered, post=False),
            "lot.transfer_rejected": lambda: w.reject(self.offered, post=False),
            "lot.transfer_cancelled": lambda: w.cancel(self.offered, post=False),
            "lot.processed": lambda: w.split(
                self.other, [50_000, 50_000], mercury_used_mg=10, mercury_recovered_mg=5, post=False
            ),
            "lot.assayed": lambda: w.assay(self.lot, 700_000, mass_mg=100_000, post=False),
            "lot.exported": lambda: w.export(
                self.exporting,
                certificate="C-1",
                state_payments=[{"kind": "royalty", "amount": _money(7), "receipt": "R-2"}],
                post=False,
            ),
            "lot.flagged": lambda: w.flag(self.lot, post=False),
            "lot.flag_resolved": lambda: w.resolve(self.flagged, self.flag, post=False),
        }
        return builders[kind]()

    def signed(self, kind: str, path: str, value: Any) -> F.Event:
        """The valid event of ``kind`` with ``path`` (dotted, list indexes as numbers) set
        to ``value`` (removed, for ``DROP``; a copy of the body's value at ``path``, for
        ``"=path"``), signed again by the same key."""
        ev = self.valid(kind)
        body = copy.deepcopy(ev.body)
        if isinstance(value, str) and value.startswith("="):
            value = copy.deepcopy(_get(body, value[1:].split(".")))
        *parents, last = path.split(".")
        target = _get(body, parents)
        if value == DROP:
            target.pop(last)
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        key = ev.envelope["signature"]["key"]
        signer = next(k for k in self.w.keys.values() if F.public_key_hex(k) == key)
        return F.Event(F.sign_body(body, signer, self.w.origin))


def _get(value: Any, parts: list[str]) -> Any:
    for part in parts:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    folder = tmp_path_factory.mktemp("s5-types")
    api = open_api(f"sqlite:///{folder}/ledger.db", folder)
    try:
        yield Arena(api)
    finally:
        api.close()


#: (type, field path, value, the field the detail names): each a 422 schema
REFUSALS: list[tuple[str, str, Any, str]] = [
    # every body: v (1), type, actor, time, and nothing else
    *[
        (kind, path, value, field)
        for kind in ("actor.revoked", "site.assessed", "lot.flagged", "lot.transfer_rejected")
        for path, value, field in [
            ("v", 2, "v"),
            ("v", True, "v"),
            ("v", DROP, "v"),
            ("actor", "Coop", "actor"),
            ("time", "2026-11-20T09:30:00.5Z", "time"),
            ("time", "2026-11-20T09:30:00+00:00", "time"),
            ("time", DROP, "time"),
            ("colour", "red", "colour"),
        ]
    ],
    # actor.registered
    ("actor.registered", "subject", "ab", "subject"),
    ("actor.registered", "subject", DROP, "subject"),
    ("actor.registered", "name", "", "name"),
    ("actor.registered", "name", "x" * 2001, "name"),
    ("actor.registered", "name", "Coop\tMakala", "name"),
    ("actor.registered", "roles", [], "roles"),
    ("actor.registered", "roles", ["trader", "trader"], "roles"),
    ("actor.registered", "roles", ["miner"], "roles[0]"),
    ("actor.registered", "roles", "trader", "roles"),
    ("actor.registered", "key", "00" * 32, "key"),
    ("actor.registered", "key", H.upper(), "key"),
    ("actor.registered", "country", "XX", "country"),
    ("actor.registered", "country", "cd", "country"),
    ("actor.registered", "lot_prefix", DROP, "lot_prefix"),  # a custody role needs one
    ("actor.registered", "lot_prefix", "NEW", "lot_prefix"),
    ("actor.registered", "lot_prefix", "A-", "lot_prefix"),
    ("actor.registered", "lot_prefix", "A" * 17 + "-", "lot_prefix"),
    ("actor.registered", "roles", ["auditor"], "lot_prefix"),  # and no other role has one
    ("actor.registered", "licence.valid_until", DROP, "licence.valid_until"),
    ("actor.registered", "licence.valid_until", "2027-02-30", "licence.valid_until"),
    ("actor.registered", "licence.number", "", "licence.number"),
    ("actor.registered", "licence.issuer", "x" * 129, "licence.issuer"),
    ("actor.registered", "licence", None, "licence"),
    ("actor.registered", "profile.leaders", DROP, "profile.leaders"),
    ("actor.registered", "profile.women_led", 1, "profile.women_led"),
    ("actor.registered", "profile.members.women", 11, "profile.members.women"),
    ("actor.registered", "profile.leaders.total", -1, "profile.leaders.total"),
    ("actor.registered", "profile.colour", "red", "profile.colour"),
    # actor.updated
    ("actor.updated", "name", DROP, "subject"),  # at least one field
    ("actor.updated", "roles", [], "roles"),
    ("actor.updated", "roles", ["auditor", "auditor"], "roles"),
    ("actor.updated", "lot_prefix", "trd-", "lot_prefix"),
    ("actor.updated", "licence", {"number": "L-2", "issuer": "Ministry"}, "licence.valid_until"),
    ("actor.updated", "profile", {"women_led": False}, "profile.members"),
    ("actor.updated", "key", H, "key"),
    # actor.key_rotated, actor.revoked
    ("actor.key_rotated", "key", "00" * 32, "key"),
    ("actor.key_rotated", "key", DROP, "key"),
    ("actor.key_rotated", "name", "x", "name"),
    ("actor.revoked", "reason", "", "reason"),
    ("actor.revoked", "reason", "x" * 2001, "reason"),
    ("actor.revoked", "reason", "line\nbreak", "reason"),
    ("actor.revoked", "reason", DROP, "reason"),
    # site.registered
    ("site.registered", "site", "S1", "site"),
    ("site.registered", "operator", "Coop", "operator"),
    ("site.registered", "country", "ZZ", "country"),
    ("site.registered", "region", "", "region"),
    ("site.registered", "region", "x" * 129, "region"),
    ("site.registered", "location", DROP, "location"),
    ("site.registered", "location.lat", "90.00001", "location.lat"),
    ("site.registered", "location.lat", "1.123456", "location.lat"),
    ("site.registered", "location.lat", "1", "location.lat"),
    ("site.registered", "location.lat", "+1.5", "location.lat"),
    ("site.registered", "location.lat", 1, "location.lat"),
    ("site.registered", "location.lon", "-180.00001", "location.lon"),
    ("site.registered", "location.lon", "1000.0", "location.lon"),
    ("site.registered", "deposit", "open_pit", "deposit"),
    ("site.registered", "icglr_id", "", "icglr_id"),
    (
        "site.registered",
        "licence",
        {"number": "x", "issuer": "y", "valid_until": "2027-1-1"},
        "licence.valid_until",
    ),
    # site.assessed
    ("site.assessed", "status", "purple", "status"),
    ("site.assessed", "valid_until", "2020-01-01", "valid_until"),
    ("site.assessed", "assessed_on", "2026-13-01", "assessed_on"),
    ("site.assessed", "cahra", "yes", "cahra"),
    ("site.assessed", "findings", ["bribery", "bribery"], "findings"),
    ("site.assessed", "findings", ["bad_luck"], "findings[0]"),
    ("site.assessed", "workforce", {"women": -1, "men": 2}, "workforce.women"),
    ("site.assessed", "workforce", {"women": 1}, "workforce.men"),
    ("site.assessed", "leadership", {"women": 3, "total": 2}, "leadership.women"),
    ("site.assessed", "women_owned", {"pits": 1}, "women_owned.processing_units"),
    ("site.assessed", "daily_income_median", {"women": _money(1)}, "daily_income_median.men"),
    (
        "site.assessed",
        "daily_income_median",
        {"women": _money(1, "usd"), "men": _money(1)},
        "daily_income_median.women.currency",
    ),
    (
        "site.assessed",
        "daily_income_median",
        {"women": _money(-1), "men": _money(1)},
        "daily_income_median.women.amount_minor",
    ),
    ("site.assessed", "gbv_reports", {"count": -1, "period_days": 30}, "gbv_reports.count"),
    ("site.assessed", "gbv_reports", {"count": 1}, "gbv_reports.period_days"),
    ("site.assessed", "mercury_exposure_pregnant", -1, "mercury_exposure_pregnant"),
    ("site.assessed", "mercury_exposure_pregnant", True, "mercury_exposure_pregnant"),
    ("site.assessed", "womens_association", "true", "womens_association"),
    ("site.assessed", "grievance_mechanism", 0, "grievance_mechanism"),
    ("site.assessed", "scheme", "fairtrade", "scheme"),
    # lot.registered
    ("lot.registered", "lot", "coop-1", "lot"),
    ("lot.registered", "lot", "COO", "lot"),
    ("lot.registered", "mass_mg", 0, "mass_mg"),
    ("lot.registered", "mass_mg", 10**12 + 1, "mass_mg"),
    ("lot.registered", "fineness_ppm", 0, "fineness_ppm"),
    ("lot.registered", "fineness_ppm", 1_000_001, "fineness_ppm"),
    ("lot.registered", "form", "dore", "form"),
    ("lot.registered", "form", "bar", "form"),
    ("lot.registered", "form", "dust", "form"),
    ("lot.registered", "extracted.from", "2027-01-01", "extracted.from"),
    ("lot.registered", "extracted", {"from": "2026-01-01", "to": "2026-11-01"}, "extracted.to"),
    ("lot.registered", "extracted", {"from": "2026-07-31", "to": "2026-10-31"}, "extracted.to"),
    ("lot.registered", "extracted", {"from": "2026-11-30", "to": "2026-12-31"}, "extracted.to"),
    ("lot.registered", "extracted.to", DROP, "extracted.to"),
    ("lot.registered", "producers", {"women": 0, "men": 0}, "producers.men"),
    ("lot.registered", "producers.women", -1, "producers.women"),
    ("lot.registered", "producers.women_led", "no", "producers.women_led"),
    ("lot.registered", "producers.pit_owner", "state", "producers.pit_owner"),
    ("lot.registered", "producers.women_roles", ["digging", "digging"], "producers.women_roles"),
    ("lot.registered", "producers.women_roles", ["mining"], "producers.women_roles[0]"),
    ("lot.registered", "recovery", "magic", "recovery"),
    ("lot.registered", "recovery", DROP, "recovery"),
    ("lot.registered", "declarations", DROP, "declarations"),
    ("lot.registered", "declarations.child_labour", "some", "declarations.child_labour"),
    ("lot.registered", "declarations.forced_labour", "false", "declarations.forced_labour"),
    ("lot.registered", "declarations.armed_groups", "far", "declarations.armed_groups"),
    ("lot.registered", "declarations.security_forces", "army", "declarations.security_forces"),
    ("lot.registered", "payment.to_women", _money(501), "payment.to_women.amount_minor"),
    ("lot.registered", "payment.to_women", _money(1, "UGX"), "payment.to_women.currency"),
    ("lot.registered", "payment.to_women", DROP, "payment.to_women"),
    ("lot.registered", "state_payments.0.kind", "bribe", "state_payments[0].kind"),
    ("lot.registered", "state_payments.0.receipt", "", "state_payments[0].receipt"),
    (
        "lot.registered",
        "state_payments.0.amount",
        _money(1, "XYZ"),
        "state_payments[0].amount.currency",
    ),
    ("lot.registered", "state_payments", {"kind": "tax"}, "state_payments"),
    ("lot.registered", "tag", "", "tag"),
    ("lot.registered", "pit", "x" * 129, "pit"),
    # lot.transfer_offered
    ("lot.transfer_offered", "to", "coop", "to"),  # itself
    ("lot.transfer_offered", "to", DROP, "to"),
    ("lot.transfer_offered", "prev", H.upper(), "prev"),
    ("lot.transfer_offered", "mass_mg", 0, "mass_mg"),
    ("lot.transfer_offered", "price", {"amount_minor": 1}, "price.currency"),
    ("lot.transfer_offered", "price", _money(-1), "price.amount_minor"),
    ("lot.transfer_offered", "payment_method", "barter", "payment_method"),
    ("lot.transfer_offered", "seller_sex", "other", "seller_sex"),
    ("lot.transfer_offered", "seal", "", "seal"),
    # the answers to an offer
    ("lot.transfer_accepted", "offer", "x", "offer"),
    ("lot.transfer_accepted", "offer", DROP, "offer"),
    ("lot.transfer_accepted", "mass_mg", DROP, "mass_mg"),
    ("lot.transfer_accepted", "mass_mg", 0, "mass_mg"),
    ("lot.transfer_accepted", "reason", "late", "reason"),
    ("lot.transfer_rejected", "reason", "", "reason"),
    ("lot.transfer_rejected", "reason", DROP, "reason"),
    ("lot.transfer_rejected", "mass_mg", 1, "mass_mg"),
    ("lot.transfer_cancelled", "reason", DROP, "reason"),
    ("lot.transfer_cancelled", "prev", H[:-1], "prev"),
    # lot.processed
    ("lot.processed", "inputs", [], "inputs"),
    ("lot.processed", "outputs", [], "outputs"),
    ("lot.processed", "process", "alchemy", "process"),
    ("lot.processed", "inputs.0.prev", DROP, "inputs[0].prev"),
    ("lot.processed", "inputs.0.mass_mg", 1, "inputs[0].mass_mg"),
    ("lot.processed", "outputs.0.form", "bar", "outputs[0].bar"),
    ("lot.processed", "outputs.0.bar", {"serial": "S-1", "year": 2026}, "outputs[0].bar"),
    ("lot.processed", "outputs.0.mass_mg", 0, "outputs[0].mass_mg"),
    ("lot.processed", "outputs.0.fineness_ppm", 1_000_001, "outputs[0].fineness_ppm"),
    ("lot.processed", "outputs.1.lot", "=outputs.0.lot", "outputs[1].lot"),
    ("lot.processed", "outputs.1.lot", "=inputs.0.lot", "outputs[1].lot"),
    ("lot.processed", "inputs", [{"lot": "COOP-0001", "prev": H}] * 2, "inputs[1].lot"),
    ("lot.processed", "inputs", [{"lot": "COOP-0001", "prev": H}] * 101, "inputs"),
    ("lot.processed", "workers", {"women": 1}, "workers.men"),
    ("lot.processed", "workers", {"women": -1, "men": 1}, "workers.women"),
    ("lot.processed", "mercury_used_mg", -1, "mercury_used_mg"),
    ("lot.processed", "mercury_used_mg", 10**12 + 1, "mercury_used_mg"),
    ("lot.processed", "mercury_used_mg", 4, "mercury_recovered_mg"),
    ("lot.processed", "mercury_used_mg", DROP, "mercury_recovered_mg"),
    # lot.assayed, lot.exported, lot.flagged, lot.flag_resolved
    ("lot.assayed", "method", "guess", "method"),
    ("lot.assayed", "method", DROP, "method"),
    ("lot.assayed", "fineness_ppm", 0, "fineness_ppm"),
    ("lot.assayed", "mass_mg", 0, "mass_mg"),
    ("lot.assayed", "certificate", "x" * 129, "certificate"),
    ("lot.exported", "destination", "XX", "destination"),
    ("lot.exported", "destination", DROP, "destination"),
    ("lot.exported", "permit", DROP, "permit"),
    ("lot.exported", "permit", "", "permit"),
    ("lot.exported", "certificate", "", "certificate"),
    (
        "lot.exported",
        "state_payments",
        [{"kind": "fee", "amount": _money(1)}],
        "state_payments[0].receipt",
    ),
    ("lot.flagged", "code", "low", "code"),
    ("lot.flagged", "code", DROP, "code"),
    ("lot.flagged", "note", "", "note"),
    ("lot.flag_resolved", "flag", "serious_abuse", "flag"),
    ("lot.flag_resolved", "flag", H + "/bad_luck", "flag"),
    ("lot.flag_resolved", "flag", H.upper() + "/serious_abuse", "flag"),
    ("lot.flag_resolved", "outcome", "fixed", "outcome"),
    ("lot.flag_resolved", "resolution", DROP, "resolution"),
]


def test_every_type_has_refusals() -> None:
    assert {kind for kind, *_ in REFUSALS} == EVENT_TYPES


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"),
    REFUSALS,
    ids=[f"{k}:{p}={str(v)[:20]!r}" for k, p, v, _ in REFUSALS],
)
def test_a_wrong_body_is_422_schema_naming_the_field(
    arena: Arena, kind: str, path: str, value: Any, field: str
) -> None:
    ev = arena.signed(kind, path, value)
    problem = refusal(arena.api, lambda: arena.api.post(ev), 422, "schema")
    assert problem["detail"].startswith(f"{field}: "), problem["detail"]


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_the_valid_body_each_refusal_starts_from_is_accepted(sqlite_api: Api, kind: str) -> None:
    ev = Arena(sqlite_api).valid(kind)
    response = sqlite_api.post(ev)
    assert response.status_code == 201, response.text


def _accepted(api: Api, events: list[dict[str, Any]]) -> None:
    """``events`` (built on the world's mirror) accepted by the server in one batch."""
    response = api.batch(events)
    assert response.status_code == 201, response.text


def test_every_value_of_every_vocabulary_and_every_range_edge_is_accepted(sqlite_api: Api) -> None:
    """The page's lists and limits, each value once, all accepted (201): roles (all eight
    together), forms, recovery and process methods, declarations, deposits, site statuses,
    schemes, findings (every flag code), pit owners, women's roles, payment methods,
    seller sexes, assay methods, outcomes and state payment kinds; ids and texts at their
    longest, counts at 0 and 2^53 − 1, masses at 1 and 10^12, fineness at 1 and 10^6,
    coordinates at ±90 and ±180, an extraction of 1 and of 92 days."""
    api = sqlite_api
    w = api.world().standard()
    day = w.today()
    biggest = 2**53 - 1
    with w.collecting() as events:
        w.register_actor(
            "a" * 64,
            [
                "registrar",
                "auditor",
                "cooperative",
                "processor",
                "trader",
                "exporter",
                "refiner",
                "assayer",
            ],
            lot_prefix="A" * 16 + "-",
            name="\U0001f600" * 1000 + "é" * 1000,  # 2 000 code points
            licence={"number": "N" * 128, "issuer": "é" * 128, "valid_until": "9999-12-31"},
            profile={
                "women_led": False,
                "members": {"women": 0, "total": 0},
                "leaders": {"women": biggest, "total": biggest},
            },
        )
        w.register_actor("lab-2", ["assayer", "auditor"], country="AQ")
        for index, (lat, lon) in enumerate(
            [
                ("-90.00000", "180.00000"),
                ("90.0", "-180.0"),
                ("-0.0", "0.00000"),
                ("000.1", "099.12345"),
            ]
        ):
            w.register_site(f"site-{index}-" + "x" * 57, "coop", location={"lat": lat, "lon": lon})
        for deposit in ("alluvial", "hard_rock", "tailings"):
            w.register_site(
                f"site-{deposit.replace('_', '-')}",
                "coop",
                deposit=deposit,
                icglr_id="I" * 128,
                region="R" * 128,
                licence={"number": "n", "issuer": "i", "valid_until": "2020-01-01"},
            )
        for status in ("green", "yellow", "red", "blue"):
            w.assess_site("site-hard-rock", status)
        for scheme in (
            "none",
            "craft_engaged",
            "craft_progress",
            "fairmined",
            "fairmined_ecological",
        ):
            w.assess_site("site-alluvial", "green", scheme=scheme)
        w.assess_site(
            "site-alluvial",
            "green",
            assessed_on=day.isoformat(),
            valid_until=day.isoformat(),
            cahra=False,
            findings=[code.value for code in FLAG_CLASS],
            workforce={"women": 0, "men": biggest},
            leadership={"women": 0, "total": 0},
            women_owned={"pits": 0, "processing_units": biggest},
            daily_income_median={"women": _money(0, "UGX"), "men": _money(biggest, "CDF")},
            gbv_reports={"count": 0, "period_days": 0},
            mercury_exposure_pregnant=0,
            womens_association=True,
            grievance_mechanism=False,
        )
        w.assess_site("site-alluvial", "green", findings=[])
        lots = [w.register_lot(actor="coop", recovery=process).body["lot"] for process in PROCESSES]
        for form in ("ore", "concentrate", "gold"):
            w.register_lot(actor="coop", form=form, days=92)
        w.register_lot(actor="coop", days=1, women=0, men=1)
        w.register_lot(
            lot="COOP-" + "9" * 43,
            actor="coop",
            mass_mg=10**12,
            fineness_ppm=10**6,
            tag="T" * 128,
            pit="P" * 128,
            producers={
                "women": 1,
                "men": 0,
                "women_led": True,
                "pit_owner": "woman",
                "women_roles": [],
            },
            payment={"total": _money(5), "to_women": _money(5)},
            state_payments=[],
        )
        for pit_owner in ("man", "mixed", "cooperative"):
            w.register_lot(
                actor="coop",
                mass_mg=1,
                fineness_ppm=1,
                producers={
                    "women": 1,
                    "men": 1,
                    "pit_owner": pit_owner,
                    "women_roles": WOMEN_ROLES,
                },
                state_payments=[
                    {"kind": kind, "amount": _money(0, "XAU"), "receipt": "R" * 128}
                    for kind in ("royalty", "tax", "fee")
                ],
            )
        for child, forced, armed, security in [
            ("none", False, "none", "none"),
            ("non_wfcl", True, "nearby", "lawful"),
            ("wfcl", False, "controls_access", "illegal_taxation"),
            ("none", False, "taxes", "control"),
        ]:
            declarations = {
                "child_labour": child,
                "forced_labour": forced,
                "armed_groups": armed,
                "security_forces": security,
            }
            w.register_lot(actor="coop", declarations=declarations)
        for lot, process in zip(lots, PROCESSES, strict=True):
            output = F.out(w.new_lot_id("coop"), 1, 1)
            w.process([lot], [output], process=process)
        inputs = [w.register_lot(actor="coop2", site="site-b").body["lot"] for _ in range(100)]
        outputs = [F.out(w.new_lot_id("coop2"), 1, 1, form="dore") for _ in range(998)]
        outputs.append(
            F.out(w.new_lot_id("coop2"), 1, 1, form="bar", bar={"serial": "S" * 128, "year": 2026})
        )
        outputs.append(
            F.out(w.new_lot_id("coop2"), 1, 1, form="bar", bar={"serial": "S", "year": 1})
        )
        big = w.process(
            inputs,
            outputs,
            process="refining",
            workers={"women": 0, "men": 0},
            mercury_used_mg=10**12,
            mercury_recovered_mg=10**12,
        )
        held = [o["lot"] for o in big.body["outputs"][:8]]
        for method, lot in zip(("touchstone", "acid", "xrf", "fire_assay"), held, strict=False):
            w.assay(lot, 1, method=method, certificate="C" * 128)
        methods = ("cash", "mobile_money", "bank", "credit")
        sexes = ("woman", "man", "undisclosed", "undisclosed")
        for lot, method, sex in zip(held[4:], methods, sexes, strict=True):
            w.offer(
                lot,
                "trader",
                price=_money(0, "CDF"),
                payment_method=method,
                seal="S" * 128,
                seller_sex=sex,
            )
        w.accept(held[4], mass_mg=10**12)
        w.reject(held[5], reason="r" * 2000)
        w.cancel(held[6], reason="c")
        flagged = w.flag(held[7], "bribery", note="n" * 2000)
        w.resolve(held[7], flagged.flag_id("bribery"), "unfounded", resolution="x")
        flagged = w.flag(held[7], "serious_abuse")
        w.resolve(held[7], flagged.flag_id("serious_abuse"), "remediated")
    _accepted(api, events)


def test_actor_updated_lot_prefix_is_422_schema_after_the_403s_before_the_409s(
    sqlite_api: Api,
) -> None:
    """ "``lot_prefix``? (only when ``roles`` first adds a custody role, and then required:
    otherwise 422 ``schema``, checked after the 403s)": a signer that may not make the
    update, or a revoked subject, is its 403; then the 422, before ``prefix_reused``,
    ``holds_lots`` and ``last_registrar``. A prefix not of the prefix pattern is a body
    check like any other: 422 before everything."""
    api = sqlite_api
    w = api.world().standard()
    held = w.register_lot(actor="coop").body["lot"]
    w.revoke("trader2")

    def code(status: int, code: str, ev: F.Event) -> None:
        refusal(api, lambda: api.post(ev), status, code)

    # the 403s first
    code(
        403,
        "forbidden_role",
        w.update_actor("assayer", signer="assayer", lot_prefix="ASY-", post=False),
    )
    code(
        403,
        "forbidden_role",
        w.update_actor("assayer", signer="auditor", lot_prefix="ASY-", post=False),
    )
    code(403, "actor_revoked", w.update_actor("trader2", lot_prefix="TRZ-", post=False))
    code(403, "actor_revoked", w.update_actor("trader2", roles=["auditor", "trader"], post=False))
    # then the 422: without roles, with roles holding no custody role, not the first custody
    # role (a prefix is never changed), or the first custody role without a prefix
    code(422, "schema", w.update_actor("assayer", lot_prefix="ASY-", post=False))
    code(
        422,
        "schema",
        w.update_actor("assayer", roles=["assayer", "auditor"], lot_prefix="ASY-", post=False),
    )
    code(
        422,
        "schema",
        w.update_actor("trader", roles=["trader", "exporter"], lot_prefix="TRN-", post=False),
    )
    code(422, "schema", w.update_actor("trader", roles=["trader"], lot_prefix="TRD-", post=False))
    code(422, "schema", w.update_actor("assayer", roles=["assayer", "trader"], post=False))
    # before the other 409s
    code(422, "schema", w.update_actor("coop", roles=["auditor"], lot_prefix="CPN-", post=False))
    code(409, "holds_lots", w.update_actor("coop", roles=["auditor"], post=False))
    code(
        422, "schema", w.update_actor(w.registrar, roles=["auditor"], lot_prefix="REG-", post=False)
    )
    code(409, "last_registrar", w.update_actor(w.registrar, roles=["auditor"], post=False))
    taken = w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="COOP-", post=False)
    code(409, "prefix_reused", taken)
    # a prefix that is not one: a body check, before the 403
    bad = w.update_actor(
        "assayer", signer="assayer", roles=["trader"], lot_prefix="asy", post=False
    )
    code(422, "schema", bad)
    # and the one good way: the first custody role with a new prefix, used at once
    w.update_actor("assayer", roles=["assayer", "trader"], lot_prefix="ASY-")
    assert api.client.get("/v1/actors/assayer").json()["lot_prefix"] == "ASY-"
    w.transfer(held, "assayer")
    w.split(held, [1], ids=["ASY-0001"])
    assert api.lot("ASY-0001")["custodian"] == "assayer"


def test_keys_and_prefixes_belong_to_one_actor_for_ever(api: Api) -> None:
    """ "A key belongs to one actor for ever: registering or rotating to a key that any
    actor holds or has held is refused (``key_reused``); so is a lot prefix already given
    (``prefix_reused``)": held, rotated away, revoked, the seq-0 registrar's, one's own,
    and within one batch; on both databases."""
    w = api.world().standard()
    rotated_away = w.keys["trader"]
    w.rotate_key("trader")
    revoked_key = w.keys["trader2"]
    w.revoke("trader2")
    w.update_actor("assayer", roles=["auditor"])  # no custody role, no prefix

    def reused(code: str, ev: F.Event) -> None:
        refusal(api, lambda: api.post(ev), 409, code)

    for key in (w.keys["coop"], rotated_away, revoked_key, w.keys["registrar"]):
        reused("key_reused", w.register_actor("newbie", ["auditor"], new_key=key, post=False))
        reused("key_reused", w.rotate_key("assayer", new_key=key, post=False))
    reused("key_reused", w.rotate_key("assayer", new_key=w.keys["assayer"], post=False))
    for prefix in ("COOP-", "TRB-"):  # held by an active actor, by a revoked one
        reused(
            "prefix_reused", w.register_actor("newbie", ["trader"], lot_prefix=prefix, post=False)
        )
        update = w.update_actor("assayer", roles=["trader"], lot_prefix=prefix, post=False)
        reused("prefix_reused", update)
    # within one batch: the second of two registrations with one key, or one prefix
    with w.collecting() as events:
        shared = w.register_actor("first-one", ["trader"], lot_prefix="ONE-")
    second = w.register_actor("second-one", ["auditor"], new_key=w.keys["first-one"], post=False)
    third = w.register_actor("third-one", ["trader"], lot_prefix="ONE-", post=False)
    for ev in (second, third):
        response = api.batch([*events, ev.envelope])
        assert response.status_code == 409, response.text
        code = "key_reused" if ev is second else "prefix_reused"
        assert (response.json()["code"], response.json()["index"]) == (code, 1)
    assert api.post(shared).status_code == 201
