"""The EPCIS 2.0 export (issue 7): the scenario as JSON-LD, valid against GS1's JSON Schema.

The schema and two official examples are copied in tests/schemas/epcis-2.0/ (from
../shared). Validation is draft-07 with the ``uri`` and ``date-time`` formats checked
(jsonschema checks neither without optional packages, so this module adds RFC 3986 and
RFC 3339 checkers); the official examples pass the same validator, and broken documents
fail it, so the validator is known to bite.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ledger.epcis import EPCIS_CONTEXT, GT_NAMESPACE, epcis_document
from ledger.replay import MemoryLedger
from ledger.state import LotState
from tests import factories

ORIGIN = "demo.goldtrail.example/log"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
SCENARIO = Path(__file__).resolve().parents[2] / "clients" / "data" / "scenario.json"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "epcis-2.0"
BASE = "https://demo.goldtrail.example"
CREATED = "2026-11-23T12:00:00Z"

Events = list[tuple[int, str, dict[str, Any]]]


def load_scenario() -> dict[str, Any]:
    """clients/data/scenario.json, read by path (a tests/clients folder can shadow the
    ``clients`` package under pytest, and ``clients.scenario.load_scenario`` with it)."""
    data: dict[str, Any] = json.loads(SCENARIO.read_text("utf-8"))
    return data


# RFC 3986 absolute URI: scheme ":" then only unreserved, reserved or %-encoded characters
_URI = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$"
)
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        dt.datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value))
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "EPCIS-JSON-Schema.json").read_text("utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    checker = jsonschema.FormatChecker()
    checker.checks("uri")(_is_uri)
    checker.checks("date-time")(_is_date_time)
    return jsonschema.Draft7Validator(schema, format_checker=checker)


@pytest.fixture(scope="module")
def played() -> tuple[MemoryLedger, Events]:
    ledger, _ = factories.play_scenario(load_scenario()["events"], origin=ORIGIN, now=NOW)
    records = sorted(ledger.state.events.values(), key=lambda r: r.seq)
    return ledger, [(r.seq, r.event_id, r.body) for r in records]


@pytest.fixture(scope="module")
def document(played: tuple[MemoryLedger, Events]) -> dict[str, Any]:
    ledger, events = played
    return epcis_document(events, ledger.state, base_uri=BASE, created=CREATED)


def _errors(validator: jsonschema.Draft7Validator, doc: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = doc["epcisBody"]["eventList"]
    return events


# ---------------------------------------------------------------------------
# Validation


def test_schema_copy_matches_shared() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "epcis-2.0"
    if not shared.is_dir():
        pytest.skip("../shared is not beside the repository; the copy stands alone")
    for name in (
        "EPCIS-JSON-Schema.json",
        "examples/Example_9.6.1-ObjectEvent.jsonld",
        "examples/Example_9.6.4-TransformationEvent.jsonld",
    ):
        assert (SCHEMAS / name).read_bytes() == (shared / name).read_bytes(), name


@pytest.mark.parametrize(
    "name", ["Example_9.6.1-ObjectEvent.jsonld", "Example_9.6.4-TransformationEvent.jsonld"]
)
def test_official_examples_validate(validator: jsonschema.Draft7Validator, name: str) -> None:
    example = json.loads((SCHEMAS / "examples" / name).read_text("utf-8"))
    assert _errors(validator, example) == []


def test_scenario_export_validates(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    assert _errors(validator, document) == []
    assert _errors(validator, json.loads(json.dumps(document))) == []  # as served


def _broken(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    def copy() -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(document))
        return doc

    doc = copy()
    del _events(doc)[0]["eventTimeZoneOffset"]
    yield "no eventTimeZoneOffset", doc
    doc = copy()
    _events(doc)[0]["bizStep"] = "urn:epcglobal:cbv:bizstep:made_up"
    yield "a CBV URI outside the vocabulary", doc
    doc = copy()
    _events(doc)[0]["quantityList"][0]["quantity"] = "9.1"
    yield "a quantity as a string", doc
    doc = copy()
    _events(doc)[0]["quantityList"][0]["uom"] = "grams"
    yield "a uom that is not a UN/CEFACT code", doc
    doc = copy()
    _events(doc)[0]["eventID"] = "event 1"
    yield "an eventID that is not a URI", doc
    doc = copy()
    _events(doc)[0]["eventTime"] = "2026-11-16 15:00"
    yield "an eventTime that is not RFC 3339", doc
    doc = copy()
    _events(doc)[0]["myField"] = 1
    yield "an extension field without a namespace", doc
    doc = copy()
    del doc["schemaVersion"]
    yield "no schemaVersion", doc


def test_the_validator_refuses_broken_documents(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    for what, doc in _broken(document):
        assert _errors(validator, doc), what


# ---------------------------------------------------------------------------
# Document and mapping


def _walk_keys(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


def test_document_header_and_context(document: dict[str, Any]) -> None:
    assert document["@context"] == [EPCIS_CONTEXT, {"gt": GT_NAMESPACE}]
    assert EPCIS_CONTEXT == "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    assert document["creationDate"] == CREATED
    assert document["id"] == "https://demo.goldtrail.example/v1/export/epcis"
    # every prefixed key uses the declared prefix: JSON-LD expands none of them to nothing
    prefixes = {key.split(":", 1)[0] for key in _walk_keys(document["epcisBody"]) if ":" in key}
    assert prefixes == {"gt"}


def test_one_epcis_event_per_lot_event(
    played: tuple[MemoryLedger, Events], document: dict[str, Any]
) -> None:
    _, events = played
    lot_events = [(seq, eid, b) for seq, eid, b in events if b["type"].startswith("lot.")]
    exported = _events(document)
    assert len(exported) == len(lot_events) == 27  # scenario events 17..43
    for (seq, eid, body), event in zip(lot_events, exported, strict=True):
        assert event["eventID"] == f"urn:goldtrail:event:{eid}"
        assert event["gt:eventId"] == eid and event["gt:seq"] == seq
        assert event["gt:eventType"] == body["type"]
        assert event["eventTime"] == body["time"]
        assert event["eventTimeZoneOffset"] == "+00:00"
        assert event["gt:actor"] == f"urn:goldtrail:actor:{body['actor']}"
    kinds = [(e["type"], e.get("action"), e.get("bizStep")) for e in exported]
    assert kinds.count(("ObjectEvent", "ADD", "commissioning")) == 4  # registrations
    assert kinds.count(("ObjectEvent", "OBSERVE", "shipping")) == 8  # offers
    assert kinds.count(("ObjectEvent", "OBSERVE", "receiving")) == 8  # acceptances
    assert kinds.count(("TransformationEvent", None, "commissioning")) == 3  # processing
    assert kinds.count(("ObjectEvent", "OBSERVE", "inspecting")) == 2  # assay, resolution
    assert kinds.count(("ObjectEvent", "OBSERVE", "departing")) == 2  # exports
    ids = [e["eventID"] for e in exported]
    assert len(ids) == len(set(ids))
    for event in exported:
        for q in (
            event.get("quantityList", [])
            + event.get("inputQuantityList", [])
            + event.get("outputQuantityList", [])
        ):
            assert q["uom"] == "GRM" and q["epcClass"].startswith("urn:goldtrail:lot:")


def _by_type(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in _events(document) if e["gt:eventType"] == kind]


def test_registrations(document: dict[str, Any]) -> None:
    regs = {e["quantityList"][0]["epcClass"]: e for e in _by_type(document, "lot.registered")}
    # mass_mg / 1000 in grams: 9 100 → 9.1, 38 250 → 38.25, 350 000 000 → 350 000,
    # 12 000 000 → 12 000
    assert {k: v["quantityList"][0]["quantity"] for k, v in regs.items()} == {
        "urn:goldtrail:lot:KIT-2026-0007": 9.1,
        "urn:goldtrail:lot:MAK-2026-0001": 38.25,
        "urn:goldtrail:lot:TII-2026-0042": 350000,
        "urn:goldtrail:lot:TII-2026-0043": 12000,
    }
    kit = regs["urn:goldtrail:lot:KIT-2026-0007"]
    assert kit["disposition"] == "active"
    assert (
        kit["readPoint"] == kit["bizLocation"] == {"id": "urn:goldtrail:site:site-kassanda-kitumbi"}
    )
    assert kit["gt:producers"] == {
        "gt:women": 1,
        "gt:men": 7,
        "gt:womenLed": False,
        "gt:pitOwner": "man",
    }
    assert kit["gt:declarations"] == {
        "gt:childLabour": "none",
        "gt:forcedLabour": False,
        "gt:armedGroups": "none",
        "gt:securityForces": "none",
    }
    assert kit["ilmd"] == {
        "gt:form": "gold",
        "gt:finenessPpm": 800000,
        "gt:extractedFrom": "2026-10-29",
        "gt:extractedTo": "2026-11-11",
        "gt:recovery": "whole_ore_amalgamation",
    }
    # KIT: whole-ore amalgamation and a yellow site; MAK: a CAHRA site
    assert sorted(f["gt:code"] for f in kit["gt:flagsRaised"]) == [
        "mercury_worst_practice",
        "site_yellow",
    ]
    for flag in kit["gt:flagsRaised"]:
        assert flag["gt:flagId"] == f"{kit['gt:eventId']}/{flag['gt:code']}"
        assert flag["gt:class"] == "medium"
    mak = regs["urn:goldtrail:lot:MAK-2026-0001"]
    assert [f["gt:code"] for f in mak["gt:flagsRaised"]] == ["cahra_origin"]
    assert mak["ilmd"]["gt:tag"] == "CD-ITU-T-004417"
    assert "gt:flagsRaised" not in regs["urn:goldtrail:lot:TII-2026-0042"]
    # no payment figure leaves in the feed
    assert not any("payment" in k.lower() and k != "gt:paymentMethod" for k in _walk_keys(document))
    assert "198000000" not in json.dumps(document)


def test_transfers(document: dict[str, Any]) -> None:
    offers = _by_type(document, "lot.transfer_offered")
    accepts = _by_type(document, "lot.transfer_accepted")
    first_offer = next(
        e for e in offers if e["quantityList"][0]["epcClass"].endswith("MAK-2026-0001")
    )
    assert first_offer["disposition"] == "in_transit"
    assert first_offer["sourceList"] == [
        {"type": "possessing_party", "source": "urn:goldtrail:actor:coop-mambasa-femmes"}
    ]
    assert first_offer["destinationList"] == [
        {"type": "possessing_party", "destination": "urn:goldtrail:actor:trader-bunia"}
    ]
    assert first_offer["gt:sellerSex"] == "woman"
    assert first_offer["gt:seal"] == "CD-ITU-S-771203"
    assert first_offer["quantityList"][0]["quantity"] == 38.25  # 38 250 mg offered
    accepted = next(e for e in accepts if e["gt:offer"] == first_offer["eventID"])
    # weighed on receipt: 38 240 mg; the offerer is the source
    assert accepted["quantityList"][0]["quantity"] == 38.24
    assert accepted["disposition"] == "in_progress"
    assert accepted["sourceList"] == first_offer["sourceList"]
    assert accepted["destinationList"] == first_offer["destinationList"]
    assert accepted["gt:answer"] == "accepted"
    assert all(e["sourceList"] and e["destinationList"] for e in accepts)


def test_processing_assay_export_and_flags(document: dict[str, Any]) -> None:
    smelting = next(e for e in _by_type(document, "lot.processed") if e["gt:process"] == "smelting")
    # inputs as last weighed: TIW 4 795 mg, KIT 9 100 mg, MAK 38 240 mg; output 51 500 mg
    assert smelting["inputQuantityList"] == [
        {"epcClass": "urn:goldtrail:lot:TIW-2026-0007", "quantity": 4.795, "uom": "GRM"},
        {"epcClass": "urn:goldtrail:lot:KIT-2026-0007", "quantity": 9.1, "uom": "GRM"},
        {"epcClass": "urn:goldtrail:lot:MAK-2026-0001", "quantity": 38.24, "uom": "GRM"},
    ]
    assert smelting["outputQuantityList"] == [
        {"epcClass": "urn:goldtrail:lot:KLA-2026-0101", "quantity": 51.5, "uom": "GRM"}
    ]
    assert smelting["gt:workers"] == {"gt:women": 0, "gt:men": 3}
    (output,) = smelting["gt:outputs"]
    # KLA's origins are the four registrations: 30 women, 18 men, 37 537 of 44 817 mg fine
    assert output == {
        "gt:lot": "urn:goldtrail:lot:KLA-2026-0101",
        "gt:form": "dore",
        "gt:finenessPpm": 860000,
        "gt:producers": {"gt:women": 30, "gt:men": 18},
        "gt:womenLedFineMg": 37537,
        "gt:originFineMg": 44817,
    }
    refining = next(e for e in _by_type(document, "lot.processed") if e["gt:process"] == "refining")
    # KLA weighed 51 480 mg on receipt by the refiner; the bar weighs 44 800 mg
    assert refining["inputQuantityList"][0]["quantity"] == 51.48
    assert refining["outputQuantityList"][0]["quantity"] == 44.8
    assert refining["gt:outputs"][0]["gt:barSerial"] == "AP-2026-118842"
    (assay,) = _by_type(document, "lot.assayed")
    assert (assay["bizStep"], assay["gt:finenessPpm"], assay["gt:method"]) == (
        "inspecting",
        872000,
        "fire_assay",
    )
    assert assay["quantityList"][0]["quantity"] == 51.5
    exports = _by_type(document, "lot.exported")
    assert [(e["bizStep"], e["gt:destinationCountry"]) for e in exports] == [
        ("departing", "UG"),
        ("departing", "CH"),
    ]
    (resolved,) = _by_type(document, "lot.flag_resolved")
    assert resolved["gt:flagResolved"]["gt:code"] == "mercury_worst_practice"
    assert resolved["gt:flagResolved"]["gt:outcome"] == "remediated"
    kit = next(
        e
        for e in _by_type(document, "lot.registered")
        if e["quantityList"][0]["epcClass"].endswith("KIT-2026-0007")
    )
    assert resolved["gt:flagResolved"]["gt:flagId"] == (
        f"{kit['gt:eventId']}/mercury_worst_practice"
    )


def test_date_window(
    played: tuple[MemoryLedger, Events], validator: jsonschema.Draft7Validator
) -> None:
    ledger, events = played
    doc = epcis_document(
        events,
        ledger.state,
        base_uri=BASE + "/",
        created=CREATED,
        date_from="2026-11-19",
        date_to=dt.date(2026, 11, 19),
    )
    assert _errors(validator, doc) == []
    assert (
        doc["id"] == "https://demo.goldtrail.example/v1/export/epcis?from=2026-11-19&to=2026-11-19"
    )
    exported = _events(doc)
    assert {e["eventTime"][:10] for e in exported} == {"2026-11-19"}
    assert len(exported) == 4  # scenario events 32..35
    # masses known from before the window still describe the inputs
    smelting = exported[-1]
    assert [q["quantity"] for q in smelting["inputQuantityList"]] == [4.795, 9.1, 38.24]
    # an acceptance inside the window finds its offer from the same day
    accepted = next(e for e in exported if e["gt:eventType"] == "lot.transfer_accepted")
    assert accepted["sourceList"][0]["source"] == "urn:goldtrail:actor:trader-bunia"
    empty = epcis_document(
        events, ledger.state, base_uri=BASE, created=CREATED, date_from="2027-01-01"
    )
    assert _events(empty) == [] and _errors(validator, empty) == []


def test_streamed_once_with_explicit_lots(
    played: tuple[MemoryLedger, Events], document: dict[str, Any]
) -> None:
    ledger, events = played
    doc = epcis_document(
        iter(events), ledger.state, base_uri=BASE, created=CREATED, lots=ledger.state.lots.values()
    )
    assert doc == document


def test_answers_and_flags_on_a_synthetic_stream(validator: jsonschema.Draft7Validator) -> None:
    # epcis_document does not verify: bare bodies are enough to exercise the other mappings
    def body(kind: str, hour: int, **fields: Any) -> dict[str, Any]:
        return {
            "v": 1,
            "type": kind,
            "actor": "coop-x",
            "time": f"2026-12-01T{hour:02d}:00:00Z",
            **fields,
        }

    ids = [c * 64 for c in "abcdef"]
    registered = body(
        "lot.registered",
        8,
        lot="X-0001",
        site="site-x",
        mass_mg=1234567,
        form="ore",
        fineness_ppm=3,
        extracted={"from": "2026-11-20", "to": "2026-11-30"},
        producers={"women": 2, "men": 3},
        recovery="none",
        declarations={
            "child_labour": "none",
            "forced_labour": False,
            "armed_groups": "none",
            "security_forces": "none",
        },
    )
    stream = [
        (10, ids[0], registered),
        (
            11,
            ids[1],
            body(
                "lot.transfer_offered", 9, lot="X-0001", prev=ids[0], to="trader-y", mass_mg=1234567
            ),
        ),
        (
            12,
            ids[2],
            {
                **body(
                    "lot.transfer_rejected",
                    10,
                    lot="X-0001",
                    prev=ids[1],
                    offer=ids[1],
                    reason="Not expected.",
                ),
                "actor": "trader-y",
            },
        ),
        (
            13,
            ids[3],
            body(
                "lot.transfer_offered",
                11,
                lot="X-0001",
                prev=ids[2],
                to="trader-y",
                mass_mg=1234000,
            ),
        ),
        (
            14,
            ids[4],
            body(
                "lot.transfer_cancelled",
                12,
                lot="X-0001",
                prev=ids[3],
                offer=ids[3],
                reason="Sold elsewhere.",
            ),
        ),
        (
            15,
            ids[5],
            {
                **body(
                    "lot.flagged",
                    13,
                    lot="X-0001",
                    prev=ids[4],
                    code="serious_abuse",
                    note="Under investigation.",
                ),
                "actor": "auditor-z",
            },
        ),
    ]
    lot = LotState.model_validate(
        {
            "lot": "X-0001",
            "custodian": "coop-x",
            "mass_mg": 1234567,
            "fineness_ppm": 3,
            "form": "ore",
            "head": ids[5],
            "origins": ["site-x"],
            "origin_lots": ["X-0001"],
            "created_seq": 10,
            "created_event": ids[0],
            "flags": [{"id": f"{ids[5]}/serious_abuse", "code": "serious_abuse", "class": "hold"}],
        }
    )
    doc = epcis_document(stream, _NoState(), base_uri=BASE, created=CREATED, lots=[lot])
    assert _errors(validator, doc) == []
    events = _events(doc)
    assert [(e["bizStep"], e.get("gt:answer")) for e in events] == [
        ("commissioning", None),
        ("shipping", None),
        ("void_shipping", "rejected"),
        ("shipping", None),
        ("void_shipping", "cancelled"),
        ("inspecting", None),
    ]
    # 1 234 567 mg = 1 234.567 g; the second offer weighed 1 234 000 mg = 1 234 g
    assert [e["quantityList"][0]["quantity"] for e in events] == [
        1234.567,
        1234.567,
        1234.567,
        1234,
        1234.567,
        1234.567,
    ]
    rejected, cancelled = events[2], events[4]
    assert rejected["sourceList"][0]["source"] == "urn:goldtrail:actor:coop-x"
    assert rejected["destinationList"][0]["destination"] == "urn:goldtrail:actor:trader-y"
    assert cancelled["gt:offer"] == f"urn:goldtrail:event:{ids[3]}"
    assert events[5]["gt:flagsRaised"] == [
        {"gt:flagId": f"{ids[5]}/serious_abuse", "gt:code": "serious_abuse", "gt:class": "hold"}
    ]
    assert events[5]["gt:actor"] == "urn:goldtrail:actor:auditor-z"
    # actor and site events are master data: not exported
    master = [
        (
            0,
            "9" * 64,
            {
                "v": 1,
                "type": "site.registered",
                "actor": "r",
                "time": "2026-12-01T07:00:00Z",
                "site": "site-x",
            },
        )
    ]
    assert _events(epcis_document(master, _NoState(), base_uri=BASE, created=CREATED)) == []


class _NoState:
    def lot(self, lot_id: str) -> LotState | None:
        return None
