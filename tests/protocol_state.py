"""Lot states recomputed from a log's accepted envelopes by reading PROTOCOL.md literally.

An independent second implementation of the derived state (sections 5, 6 and 7): the flag
table, risk, hold, flag inheritance through ``lot.processed``, exports and destinations,
custody, origins and the gender summary. It shares no code with ``ledger`` (no rules, no
state models): tests compare it with what ``GET /v1/lots/{lot}`` returns, field by field.

Every envelope given must have been accepted by a log (it checks nothing). Flags are
returned sorted by id: PROTOCOL.md gives no order for a lot's ``flags``.

Import it as ``from tests import protocol_state``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

#: section 5, the flag table: code -> class
FLAG_CLASSES = {
    "worst_forms_child_labour": "hold",
    "forced_labour": "hold",
    "armed_group_support": "hold",
    "serious_abuse": "hold",
    "child_labour": "high",
    "security_forces_illegal": "high",
    "implausible_volume": "high",
    "mass_discrepancy": "high",
    "undeclared_border_crossing": "high",
    "origin_misrepresentation": "high",
    "bribery": "high",
    "money_laundering": "high",
    "taxes_unpaid": "high",
    "mercury_worst_practice": "medium",
    "fineness_discrepancy": "medium",
    "armed_groups_nearby": "medium",
    "cahra_origin": "medium",
    "site_yellow": "medium",
    "site_unassessed": "medium",
}
MINAMATA_ANNEX_C = {"amalgamation_open", "whole_ore_amalgamation", "cyanide_on_mercury_tailings"}
RANK = {"low": 0, "medium": 1, "high": 2, "hold": 3}


def body_id(body: dict[str, Any]) -> str:
    """The event id of a body: SHA-256 of its RFC 8785 form (plain ``json.dumps`` with
    sorted keys and no spaces is RFC 8785 for the ASCII text and integers of these tests)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def _site_colour(assessment: dict[str, Any] | None, day: dt.date) -> tuple[str, bool]:
    """The site's colour on ``day`` and whether its latest assessment is valid then."""
    if assessment is None:
        return "blue", False
    valid = day <= _day(assessment["valid_until"])
    if valid or assessment["status"] == "red":
        return assessment["status"], valid
    return "blue", False


class _Replay:
    def __init__(self) -> None:
        self.countries: dict[str, str] = {}
        self.assessments: dict[str, dict[str, Any] | None] = {}
        self.lots: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, dict[str, Any]] = {}

    def raise_flag(self, lot: dict[str, Any], event: str, code: str) -> None:
        lot["flags"][f"{event}/{code}"] = {"code": code, "status": "open", "outcome": None}

    def weigh(self, lot: dict[str, Any], event: str, new: int) -> None:
        if 200 * abs(new - lot["mass_mg"]) > lot["mass_mg"]:
            self.raise_flag(lot, event, "mass_discrepancy")

    def registered(self, event: str, b: dict[str, Any]) -> None:
        day = _day(b["time"])
        assessment = self.assessments[b["site"]]
        colour, valid = _site_colour(assessment, day)
        lot = self.new_lot(b["actor"], b, [b["site"]], [event], event)
        declared, producers = b["declarations"], b["producers"]
        extracted = b["extracted"]
        days = (_day(extracted["to"]) - _day(extracted["from"])).days + 1
        people = producers["women"] + producers["men"]
        raised = {
            "worst_forms_child_labour": declared["child_labour"] == "wfcl",
            "forced_labour": declared["forced_labour"] is True,
            "armed_group_support": declared["armed_groups"] in ("controls_access", "taxes"),
            "child_labour": declared["child_labour"] == "non_wfcl",
            "security_forces_illegal": declared["security_forces"]
            in ("illegal_taxation", "control"),
            "implausible_volume": b["mass_mg"] * b["fineness_ppm"] > 4_000 * 10**6 * people * days,
            "mercury_worst_practice": b["recovery"] in MINAMATA_ANNEX_C,
            "armed_groups_nearby": declared["armed_groups"] == "nearby",
            "cahra_origin": valid and assessment is not None and assessment.get("cahra") is True,
            "site_yellow": colour == "yellow",
            "site_unassessed": colour == "blue",
        }
        for code, yes in raised.items():
            if yes:
                self.raise_flag(lot, event, code)
        self.lots[b["lot"]] = lot

    def new_lot(
        self,
        custodian: str,
        made: dict[str, Any],
        origins: list[str],
        registrations: list[str],
        event: str,
    ) -> dict[str, Any]:
        return {
            "custodian": custodian,
            "mass_mg": made["mass_mg"],
            "fineness_ppm": made["fineness_ppm"],
            "form": made["form"],
            "bar": made.get("bar"),
            "flags": {},
            "destination": None,
            "exported": False,
            "offer": None,
            "status": "active",
            "head": event,
            "origins": set(origins),
            "registrations": set(registrations),
        }

    def processed(self, event: str, b: dict[str, Any]) -> None:
        inputs = [self.lots[item["lot"]] for item in b["inputs"]]
        flags: dict[str, dict[str, Any]] = {}
        for lot in inputs:
            for flag_id, flag in lot["flags"].items():
                remediated_hold = (
                    FLAG_CLASSES[flag["code"]] == "hold" and flag["outcome"] == "remediated"
                )
                if flag["status"] == "open":
                    flags[flag_id] = flag  # open on any input: open
                elif remediated_hold and flag_id not in flags:
                    flags[flag_id] = flag
        if b["process"] in MINAMATA_ANNEX_C:
            code = "mercury_worst_practice"
            flags[f"{event}/{code}"] = {"code": code, "status": "open", "outcome": None}
        destinations = {lot["destination"] for lot in inputs}
        origins = sorted(set().union(*(lot["origins"] for lot in inputs)))
        registrations = sorted(set().union(*(lot["registrations"] for lot in inputs)))
        for lot in inputs:
            lot.update(status="consumed", head=event, offer=None)
        for made in b["outputs"]:
            lot = self.new_lot(b["actor"], made, origins, registrations, event)
            lot["flags"] = dict(flags)
            lot["destination"] = next(iter(destinations)) if len(destinations) == 1 else None
            self.lots[made["lot"]] = lot

    def on_lot(self, event: str, b: dict[str, Any]) -> None:
        kind = b["type"]
        lot = self.lots[b["lot"]]
        lot["head"] = event
        if kind == "lot.transfer_offered":
            self.weigh(lot, event, b["mass_mg"])
            lot.update(
                status="offered", offer={"id": event, "to": b["to"], "mass_mg": b["mass_mg"]}
            )
        elif kind == "lot.transfer_accepted":
            self.weigh(lot, event, b["mass_mg"])
            offerer = self.bodies[b["offer"]]["actor"]
            here = self.countries[b["actor"]]
            if self.countries[offerer] != here and lot["destination"] != here:
                self.raise_flag(lot, event, "undeclared_border_crossing")
            lot.update(
                custodian=b["actor"],
                mass_mg=min(lot["mass_mg"], b["mass_mg"]),
                destination=None,
                offer=None,
                status="active",
            )
        elif kind in ("lot.transfer_rejected", "lot.transfer_cancelled"):
            lot.update(offer=None, status="active")
        elif kind == "lot.assayed":
            if "mass_mg" in b:
                self.weigh(lot, event, b["mass_mg"])
                lot["mass_mg"] = min(lot["mass_mg"], b["mass_mg"])
            if b["fineness_ppm"] - lot["fineness_ppm"] > 50_000:
                self.raise_flag(lot, event, "fineness_discrepancy")
            lot["fineness_ppm"] = b["fineness_ppm"]
        elif kind == "lot.exported":
            lot.update(destination=b["destination"], exported=True)
        elif kind == "lot.flagged":
            self.raise_flag(lot, event, b["code"])
        elif kind == "lot.flag_resolved":
            flag = lot["flags"][b["flag"]]
            lot["flags"][b["flag"]] = {**flag, "status": "resolved", "outcome": b["outcome"]}

    def apply(self, b: dict[str, Any]) -> None:
        event = body_id(b)
        self.bodies[event] = b
        kind = b["type"]
        if kind == "actor.registered":
            self.countries[b["subject"]] = b["country"]
        elif kind == "site.registered":
            self.assessments[b["site"]] = None
        elif kind == "site.assessed":
            self.assessments[b["site"]] = b  # the latest in the log
        elif kind == "lot.registered":
            self.registered(event, b)
        elif kind == "lot.processed":
            self.processed(event, b)
        elif kind.startswith("lot."):
            self.on_lot(event, b)

    def view(self, lot_id: str) -> dict[str, Any]:
        lot = self.lots[lot_id]
        risk, hold = "low", False
        flags = []
        for flag_id, flag in sorted(lot["flags"].items()):
            cls = FLAG_CLASSES[flag["code"]]
            item = {"id": flag_id, "code": flag["code"], "class": cls, "status": flag["status"]}
            if flag["outcome"] is not None:
                item["outcome"] = flag["outcome"]
            flags.append(item)
            if flag["status"] == "open":
                counts: str | None = cls
                hold = hold or cls == "hold"
            else:
                counts = "high" if cls == "hold" and flag["outcome"] == "remediated" else None
            if counts is not None and RANK[counts] > RANK[risk]:
                risk = counts
        return {
            "lot": lot_id,
            "status": lot["status"],
            "hold": hold,
            "exported": lot["exported"],
            "custodian": lot["custodian"],
            "country": self.countries[lot["custodian"]],
            "destination": lot["destination"],
            "mass_mg": lot["mass_mg"],
            "fineness_ppm": lot["fineness_ppm"],
            "form": lot["form"],
            "bar": lot["bar"],
            "head": lot["head"],
            "offer": lot["offer"],
            "origins": sorted(lot["origins"]),
            "risk": risk,
            "flags": flags,
            "gender": self.gender(lot["registrations"]),
        }

    def gender(self, registrations: set[str]) -> dict[str, Any]:
        women = men = women_led = fine = 0
        paid: dict[str, list[int]] = {}
        for event in registrations:  # each distinct lot.registered once
            b = self.bodies[event]
            producers = b["producers"]
            women += producers["women"]
            men += producers["men"]
            product = b["mass_mg"] * b["fineness_ppm"]
            fine += product
            if producers.get("women_led") is True:
                women_led += product
            if "payment" in b:
                total, to_women = b["payment"]["total"], b["payment"]["to_women"]
                sums = paid.setdefault(total["currency"], [0, 0])
                sums[0] += total["amount_minor"]
                sums[1] += to_women["amount_minor"]
        return {
            "producers": {"women": women, "men": men},
            "women_led_fine_mg": women_led // 10**6,  # rounded down once
            "origin_fine_mg": fine // 10**6,
            "paid": [
                {"currency": currency, "total": sums[0], "to_women": sums[1]}
                for currency, sums in sorted(paid.items())
            ],
        }


def lot_states(envelopes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every lot's ``GET /v1/lots/{lot}`` fields (section 6), flags sorted by id, as the
    accepted ``envelopes`` (in log order) leave them."""
    replay = _Replay()
    for envelope in envelopes:
        replay.apply(envelope["body"])
    return {lot_id: replay.view(lot_id) for lot_id in replay.lots}


def comparable(view: dict[str, Any]) -> dict[str, Any]:
    """A lot view with only the fields section 6 lists, flags sorted by id."""
    fields = [
        "lot",
        "status",
        "hold",
        "exported",
        "custodian",
        "country",
        "destination",
        "mass_mg",
        "fineness_ppm",
        "form",
        "bar",
        "head",
        "offer",
        "origins",
        "risk",
        "flags",
        "gender",
    ]
    out = {name: view[name] for name in fields}
    out["flags"] = sorted(view["flags"], key=lambda flag: flag["id"])
    return out
