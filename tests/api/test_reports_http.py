"""Reports and exports over HTTP (issue 7): /v1/reports/*, /v1/export/*.

The demo scenario (and the extra events of tests/ledger/test_reports.py: a 3-producer lot
whose payment must be suppressed, a 5-producer lot at the threshold, flags, a site with 3
women in its workforce, a site never assessed) is posted through ``POST /v1/events`` to an
app over SQLite. The same envelopes go into a ``MemoryLedger``, so every answer is checked
twice: against the pure core (``ledger.reports`` / ``ledger.epcis`` on the memory state,
same bytes expected) and against the hand-worked numbers of tests/ledger/test_reports.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import nacl.signing
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.openapi import OPENAPI_PATH, openapi_document
from api.reports import negotiate
from api.settings import Settings
from clients.scenario import ScenarioPlayer
from ledger.epcis import epcis_document
from ledger.protocol import public_key_hex
from ledger.replay import MemoryLedger
from ledger.report_queries import GENDER_EVENT_TYPES, report_source
from ledger.reports import (
    GENDER_CSV_COLUMNS,
    LOTS_CSV_COLUMNS,
    due_diligence_report,
    gender_csv,
    gender_report,
    lots_csv,
)
from tests.ledger.test_epcis import SCHEMAS, _is_date_time, _is_uri
from tests.ledger.test_reports import EXTRA

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "clients" / "data" / "scenario.json"
ORIGIN = "demo.goldtrail.example/log"
PUBLIC_URL = "https://demo.goldtrail.example"
#: the server's clock: after EXTRA's last event (2027-01-10)
LATER = dt.datetime(2027, 2, 1, 9, 30, tzinfo=dt.UTC)
TODAY = LATER.date()

Events = list[tuple[int, str, dict[str, Any]]]


@dataclass
class Played:
    """An app with the scenario and EXTRA posted, and the same log in memory."""

    client: TestClient
    app: FastAPI
    memory: MemoryLedger
    events: Events


def play(tmp: Path, *, extra: bool = True, database_url: str | None = None) -> Played:
    """Post the scenario (and EXTRA) one event at a time to a fresh app over ``tmp``.

    The app is configured with the scenario registrar's key, so the log starts empty and
    the scenario's own self-registration is seq 0.
    """
    registrar = nacl.signing.SigningKey.generate()
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp}/db",
        log_key_file=str(tmp / "log.key"),
        origin=ORIGIN,
        public_url=PUBLIC_URL,
        registrar_key=public_key_hex(registrar),
    )
    app = create_app(settings, clock=lambda: LATER)
    client = TestClient(app)
    memory = MemoryLedger(ORIGIN, public_key_hex(registrar))
    player = ScenarioPlayer(ORIGIN, first_registrar_key=registrar)

    def lookup(lot: str) -> dict[str, Any]:
        response = client.get(f"/v1/lots/{lot}")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    scenario = json.loads(SCENARIO.read_text("utf-8"))
    for raw in scenario["events"] + (EXTRA if extra else []):
        envelope = player.envelope(raw, lookup)
        response = client.post("/v1/events", json=envelope)
        assert response.status_code == 201, response.text
        memory.append(envelope, now=LATER)
    records = sorted(memory.state.events.values(), key=lambda r: r.seq)
    return Played(client, app, memory, [(r.seq, r.event_id, r.body) for r in records])


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    world = play(tmp_path_factory.mktemp("reports"))
    with world.client:
        yield world


def R(value: float | None, numerator: int, denominator: int) -> dict[str, Any]:
    return {"value": value, "numerator": numerator, "denominator": denominator}


def by_key(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def assert_problem(response: Any, status: int = 422, code: str = "schema") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["type"] == f"urn:goldtrail:problem:{code}"
    return problem


# ---------------------------------------------------------------------------
# Gender report


def test_gender_report_is_the_pure_core_over_the_log(played: Played) -> None:
    response = played.client.get("/v1/reports/gender")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report == gender_report(played.events, played.memory.state)
    # the hand-worked numbers of tests/ledger/test_reports.py
    reg = report["registrations"]
    assert reg["lots"] == 6
    assert reg["women_share_of_producers"] == R(0.6429, 36, 56)  # 36 / 56
    assert reg["women_led_fine_share"] == R(0.8346, 41787, 50067)
    payments = by_key(reg["payments"], "currency")
    # MAK-2026-0002 (3 producers) and MAK-2026-0001 (3 men) are in no payment figure, only
    # counted as excluded; UGX: TII-2026-0042 alone (14 women, 6 men)
    assert (payments["CDF"]["suppressed"], payments["CDF"]["excluded_small_groups"]) == (True, 2)
    assert payments["UGX"]["women_share_of_payments"] == R(0.7083, 1700000, 2400000)
    months = by_key(report["by_month"], "month")
    assert list(months) == ["2026-11", "2026-12", "2027-01"]
    assert months["2026-12"]["registrations"]["payments"] == [
        {
            "currency": "CDF",
            "suppressed": True,
            "reason": "fewer than 5 people",
            "excluded_small_groups": 1,
        }
    ]
    epulu = by_key(report["by_site"], "site")["site-mambasa-epulu"]["indicators"]
    assert epulu["daily_income_median"]["women"] == {
        "suppressed": True,
        "reason": "fewer than 5 people",
    }
    assert report["sites"]["women_share_of_workforce"] == R(0.4215, 314, 745)
    assert report["organisations"]["women_share_of_leaders"] == R(0.5556, 15, 27)
    # the small group's payment (30 000 000 / 20 000 000 CDF) appears nowhere
    assert not re.search(r"\b(30000000|20000000)\b", response.text)


@pytest.mark.parametrize(
    ("query", "kwargs", "lots", "producers"),
    [
        ("from=2026-12-01", {"date_from": "2026-12-01"}, 2, {"women": 6, "men": 2}),
        (
            "from=2026-11-01&to=2026-11-30",
            {"date_from": "2026-11-01", "date_to": "2026-11-30"},
            4,
            {"women": 30, "men": 18},
        ),
        (
            "from=2026-12-05&to=2026-12-05",
            {"date_from": "2026-12-05", "date_to": "2026-12-05"},
            1,
            {"women": 2, "men": 1},
        ),
        ("country=CD", {"country": "CD"}, 2, {"women": 8, "men": 4}),
        ("country=cd", {"country": "CD"}, 2, {"women": 8, "men": 4}),
        ("site=site-busia-tiira", {"site": "site-busia-tiira"}, 3, {"women": 27, "men": 9}),
        (
            "cooperative=coop-kassanda-diggers",
            {"cooperative": "coop-kassanda-diggers"},
            1,
            {"women": 1, "men": 7},
        ),
        ("country=CH", {"country": "CH"}, 0, {"women": 0, "men": 0}),
        ("from=&to=&country=&site=", {}, 6, {"women": 36, "men": 20}),  # an empty form
    ],
)
def test_gender_filters(
    played: Played, query: str, kwargs: dict[str, str], lots: int, producers: dict[str, int]
) -> None:
    report = played.client.get(f"/v1/reports/gender?{query}").json()
    assert report == gender_report(played.events, played.memory.state, **kwargs)
    assert report["registrations"]["lots"] == lots
    assert report["registrations"]["producers"] == producers


def test_gender_csv_by_format_or_accept(played: Played) -> None:
    by_format = played.client.get("/v1/reports/gender?format=csv&country=UG")
    by_accept = played.client.get("/v1/reports/gender?country=UG", headers={"Accept": "text/csv"})
    for response in (by_format, by_accept):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in response.headers["content-disposition"]
        assert "accept" in response.headers["vary"].lower()
    assert by_format.text == by_accept.text
    expected = gender_report(played.events, played.memory.state, country="UG")
    assert by_format.text == gender_csv(expected)
    parsed = rows(by_format.text)
    assert tuple(parsed[0]) == GENDER_CSV_COLUMNS
    index = {(r["scope"], r["key"], r["indicator"], r["currency"]): r for r in parsed}
    # UG: KIT-0007 (1/8), TII-0042 (14/20), TII-0043 (9/11), TII-2027-0001 (4/5): 28 / 44
    share = index[("total", "all", "women_share_of_producers", "")]
    assert (share["value"], share["numerator"], share["denominator"]) == ("0.6364", "28", "44")
    january = index[("month", "2027-01", "women_share_of_payments", "UGX")]
    # 4 women and 1 man: 500 000 − 400 000 would be the man's pay
    assert (january["value"], january["suppressed"]) == ("", "true")
    november = index[("month", "2026-11", "women_share_of_payments", "UGX")]
    assert (november["value"], november["suppressed"]) == ("0.7083", "false")  # TII-0042

    whole = rows(played.client.get("/v1/reports/gender?format=CSV").text)
    small = {(r["scope"], r["key"], r["indicator"], r["currency"]): r for r in whole}[
        ("month", "2026-12", "women_share_of_payments", "CDF")
    ]
    assert (small["value"], small["suppressed"]) == ("", "true")


@pytest.mark.parametrize(
    ("accept", "csv_expected"),
    [
        (None, False),
        ("application/json", False),
        ("text/csv", True),
        ("text/*", True),
        ("text/csv;q=0.5, application/json", False),
        ("application/json;q=0.2, text/csv", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("image/png", False),  # nothing acceptable: JSON anyway
    ],
)
def test_gender_accept_negotiation(played: Played, accept: str | None, csv_expected: bool) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    response = played.client.get("/v1/reports/gender?site=site-busia-tiira", headers=headers)
    assert response.status_code == 200
    kind = response.headers["content-type"]
    assert kind == ("text/csv; charset=utf-8" if csv_expected else "application/json")
    # ?format= wins over Accept
    forced = played.client.get(
        "/v1/reports/gender?site=site-busia-tiira&format=json", headers=headers
    )
    assert forced.headers["content-type"] == "application/json"


def test_negotiate() -> None:
    offers = ["application/ld+json", "application/json"]
    assert negotiate(None, offers) == "application/ld+json"
    assert negotiate("application/json", offers) == "application/json"
    assert negotiate("application/*", offers) == "application/ld+json"
    assert negotiate("application/ld+json;q=0.1, application/json", offers) == "application/json"
    assert negotiate("application/json;q=bad", offers) == "application/ld+json"
    assert negotiate(",;,/,application/json;;", offers) == "application/json"


# ---------------------------------------------------------------------------
# Due-diligence report


def test_due_diligence_report_is_the_pure_core_over_the_log(played: Played) -> None:
    response = played.client.get("/v1/reports/due-diligence")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    # the server's clock gives today: 2027-02-01
    assert report == due_diligence_report(played.events, played.memory.state, today=TODAY)
    assert report["today"] == "2027-02-01"
    assert report["sites"]["by_colour"] == {"green": 2, "yellow": 1, "red": 0, "blue": 2}
    assert report["open_flags"] == {
        "total": 4,
        "by_class": {"hold": 1, "high": 0, "medium": 3},
        "by_code": {"cahra_origin": 2, "serious_abuse": 1, "site_yellow": 1},
    }
    assert report["lots_on_hold"] == ["MAK-2026-0002"]
    assert report["mass_by_risk"]["hold"] == {"lots": 1, "mass_mg": 5000, "fine_mg": 4250}
    assert report["flags_resolved"]["hours_to_resolution"] == {
        "count": 2,
        "median": 71.0,  # (48 + 94) / 2
        "max": 94.0,
    }


def test_due_diligence_filters(played: Played) -> None:
    december = played.client.get("/v1/reports/due-diligence?from=2026-12-01&to=2026-12-31").json()
    assert december == due_diligence_report(
        played.events,
        played.memory.state,
        today=TODAY,
        date_from="2026-12-01",
        date_to="2026-12-31",
    )
    assert december["flags_raised"]["by_code"] == {
        "bribery": 1,
        "cahra_origin": 1,
        "serious_abuse": 1,
    }
    assert december["flags_resolved"]["hours_to_resolution"]["median"] == 48.0
    ug = played.client.get("/v1/reports/due-diligence?country=UG").json()
    assert ug["sites"]["by_colour"] == {"green": 1, "yellow": 0, "red": 0, "blue": 2}
    assert ug["lots_on_hold"] == []
    coop = played.client.get(
        "/v1/reports/due-diligence?cooperative=coop-kassanda-diggers&format=json"
    ).json()
    assert [s["site"] for s in coop["sites"]["items"]] == [
        "site-kassanda-kitumbi",
        "site-kassanda-nalutuntu",
    ]


# ---------------------------------------------------------------------------
# Bad parameters


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/v1/reports/gender?from=2026-13-01", "from: '2026-13-01' is not a date"),
        ("/v1/reports/gender?from=20261101", "YYYY-MM-DD"),
        ("/v1/reports/gender?to=2026-02-30", "to: '2026-02-30' is not a date"),
        ("/v1/reports/gender?from=2026-W45-1", "is not a date"),
        ("/v1/reports/gender?from=2026-12-01&to=2026-11-30", "from (2026-12-01) is after to"),
        ("/v1/reports/gender?format=xml", "format: 'xml' is not one of json, csv"),
        ("/v1/reports/gender?country=Congo", "country: 'CONGO' is not an ISO 3166-1"),
        ("/v1/reports/gender?site=Not%20a%20site", "site: 'Not a site' is not an id"),
        ("/v1/reports/gender?cooperative=x", "cooperative: 'x' is not an id"),
        ("/v1/reports/due-diligence?to=tomorrow", "to: 'tomorrow' is not a date"),
        ("/v1/reports/due-diligence?from=2027-01-02&to=2027-01-01", "is after to"),
        ("/v1/reports/due-diligence?format=csv", "format: 'csv' is not one of json"),
        ("/v1/export/epcis?from=2026-11-31", "from: '2026-11-31' is not a date"),
        ("/v1/export/epcis?from=2026-12-01&to=2026-11-01", "is after to"),
    ],
)
def test_bad_parameters_are_422_schema(played: Played, url: str, words: str) -> None:
    problem = assert_problem(played.client.get(url))
    assert words in problem["detail"]


# ---------------------------------------------------------------------------
# Exports


@pytest.fixture(scope="module")
def epcis_validator() -> jsonschema.Draft7Validator:
    """GS1's EPCIS 2.0 JSON Schema with the uri and date-time formats checked (as in
    tests/ledger/test_epcis.py)."""
    schema = json.loads((SCHEMAS / "EPCIS-JSON-Schema.json").read_text("utf-8"))
    checker = jsonschema.FormatChecker()
    checker.checks("uri")(_is_uri)
    checker.checks("date-time")(_is_date_time)
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def test_epcis_export(played: Played, epcis_validator: jsonschema.Draft7Validator) -> None:
    response = played.client.get("/v1/export/epcis")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    document = response.json()
    errors = epcis_validator.iter_errors(document)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []
    assert document == epcis_document(
        played.events,
        played.memory.state,
        base_uri=PUBLIC_URL,
        created="2027-02-01T09:30:00Z",
    )
    assert document["id"] == f"{PUBLIC_URL}/v1/export/epcis"
    lot_events = [b for _, _, b in played.events if b["type"].startswith("lot.")]
    assert len(document["epcisBody"]["eventList"]) == len(lot_events)
    # no payment figure (the payment method of an offer is not a figure)
    assert "amount_minor" not in response.text and '"gt:payment"' not in response.text

    as_json = played.client.get("/v1/export/epcis", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == document


def test_epcis_export_period(played: Played, epcis_validator: jsonschema.Draft7Validator) -> None:
    response = played.client.get("/v1/export/epcis?from=2026-12-01&to=2026-12-31")
    document = response.json()
    assert list(epcis_validator.iter_errors(document)) == []
    assert document["id"] == f"{PUBLIC_URL}/v1/export/epcis?from=2026-12-01&to=2026-12-31"
    times = [e["eventTime"][:10] for e in document["epcisBody"]["eventList"]]
    # MAK-2026-0002: registered, flagged, resolved, flagged again (site events are not lot events)
    assert len(times) == 4
    assert all("2026-12-01" <= day <= "2026-12-31" for day in times)


def test_lots_csv(played: Played) -> None:
    response = played.client.get("/v1/export/lots.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="goldtrail-lots.csv"' in response.headers["content-disposition"]
    parsed = rows(response.text)
    assert tuple(parsed[0]) == LOTS_CSV_COLUMNS
    lots = played.client.get("/v1/lots?limit=1000").json()["items"]
    # one row per lot, in creation order, nothing else
    assert [r["lot"] for r in parsed] == [lot["lot"] for lot in lots]
    assert len(parsed) == len(played.memory.state.lots) == 9
    assert response.text == lots_csv(played.memory.state.lots.values(), played.memory.state)
    bar = by_key(parsed, "lot")["ALP-2026-118842"]
    assert (bar["women"], bar["men"], bar["women_led_fine_mg"], bar["origin_fine_mg"]) == (
        "30",
        "18",
        "37537",
        "44817",
    )
    assert by_key(parsed, "lot")["MAK-2026-0002"]["hold"] == "true"


# ---------------------------------------------------------------------------
# The store's report queries


def test_report_source_pages_through_one_snapshot(played: Played) -> None:
    store = played.app.state.runtime.store
    with report_source(store) as source:
        assert source.size() == len(played.events)
        assert list(source.events()) == played.events
        # paging: any page size gives the same stream
        assert list(source.events(page=7)) == played.events
        assert list(source.events(page=1)) == played.events
        wanted = [e for e in played.events if e[2]["type"] in GENDER_EVENT_TYPES]
        assert list(source.events(GENDER_EVENT_TYPES, page=4)) == wanted
        assert [a.id for a in source.actors()] == list(played.memory.state.actors)
        assert [s.id for s in source.sites()] == list(played.memory.state.sites)
        assert [lot.lot for lot in source.lots()] == list(played.memory.state.lots)
        # the filtered stream gives the report of the whole stream
        assert gender_report(source.events(GENDER_EVENT_TYPES, page=5), source.state) == (
            gender_report(played.events, played.memory.state)
        )


def test_reports_on_postgresql_too(database_url: str, tmp_path: Path) -> None:
    world = play(tmp_path, extra=False, database_url=database_url)
    with world.client:
        gender = world.client.get("/v1/reports/gender").json()
        assert gender == gender_report(world.events, world.memory.state)
        assert gender["registrations"]["women_share_of_producers"] == R(0.625, 30, 48)
        dd = world.client.get("/v1/reports/due-diligence").json()
        assert dd == due_diligence_report(world.events, world.memory.state, today=TODAY)
        assert world.client.get("/v1/export/lots.csv").text == lots_csv(
            world.memory.state.lots.values(), world.memory.state
        )


# ---------------------------------------------------------------------------
# OpenAPI


ROUTES = {
    "/v1/reports/gender": ("gender_report", {"application/json", "text/csv"}),
    "/v1/reports/due-diligence": ("due_diligence_report", {"application/json"}),
    "/v1/export/epcis": ("export_epcis", {"application/ld+json", "application/json"}),
    "/v1/export/lots.csv": ("export_lots_csv", {"text/csv"}),
    "/reports": ("reports_page", {"text/html"}),
}


def test_openapi_documents_the_routes() -> None:
    document = openapi_document()
    for path, (operation_id, types) in ROUTES.items():
        operation = document["paths"][path]["get"]
        assert operation["operationId"] == operation_id
        assert set(operation["responses"]["200"]["content"]) == types
        if path.startswith("/v1/") and path != "/v1/export/lots.csv":
            problem = operation["responses"]["422"]["content"]["application/problem+json"]
            assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
            names = {p["name"] for p in operation["parameters"]}
            assert {"from", "to"} <= names
    # the committed document is up to date for these routes (`python -m api.openapi`)
    committed = json.loads(OPENAPI_PATH.read_text("utf-8"))
    for path in ROUTES:
        assert committed["paths"][path] == document["paths"][path], path
    for name in ("GenderReport", "DueDiligenceReport", "EpcisDocument"):
        assert committed["components"]["schemas"][name] == document["components"]["schemas"][name]


def _response_validator(document: dict[str, Any], name: str) -> jsonschema.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_responses_match_their_documented_schemas(played: Played) -> None:
    document = openapi_document()
    for url, name in (
        ("/v1/reports/gender", "GenderReport"),
        ("/v1/reports/gender?country=CD&from=2026-12-01", "GenderReport"),
        ("/v1/reports/due-diligence", "DueDiligenceReport"),
        ("/v1/reports/due-diligence?from=2026-12-01&to=2026-12-31", "DueDiligenceReport"),
        ("/v1/export/epcis", "EpcisDocument"),
    ):
        body = played.client.get(url).json()
        errors = [
            f"{list(e.absolute_path)}: {e.message}"
            for e in _response_validator(document, name).iter_errors(body)
        ]
        assert errors == [], url
    # the schema bites: a shown payment figure where a suppressed one belongs is refused
    report = played.client.get("/v1/reports/gender").json()
    report["by_month"][1]["registrations"]["payments"][0]["total_minor"] = 30000000
    assert not _response_validator(document, "GenderReport").is_valid(report)
