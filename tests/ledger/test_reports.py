"""Gender and due-diligence reports, CSV exports and SVG charts (issue 7), on the demo scenario.

Every expected value below is worked out by hand from clients/data/scenario.json (and the
few extra events of ``EXTRA``), with the arithmetic in a comment: none is recomputed with
the code under test.

Scenario registrations (lot: site, producers women/men, women-led, mass_mg × fineness_ppm,
payment to_women / total, minor units):

- KIT-2026-0007: kassanda (UG), 1/7, no, 9 100 × 800 000 = 7 280 000 000,
  UGX 60 000 / 1 350 000
- MAK-2026-0001: makala (CD), 6/3, yes, 38 250 × 870 000 = 33 277 500 000,
  CDF 132 000 000 / 198 000 000
- TII-2026-0042: busia (UG), 14/6, yes, 350 000 000 × 6 = 2 100 000 000,
  UGX 1 700 000 / 2 400 000
- TII-2026-0043: busia (UG), 9/2, yes, 12 000 000 × 180 = 2 160 000 000,
  UGX 1 500 000 / 1 900 000

all in 2026-11. A payment enters the report only when the lot's women and its men each
number 0 or at least 5: of these, only TII-2026-0042 (14/6). ``EXTRA`` adds a 3-producer lot
in 2026-12 (suppressed payment), a 4-women-1-man lot in 2027-01 (suppressed too), flags on
the small lot, a site whose workforce has 3 women (suppressed income) and a site never
assessed.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ledger.charts import Chart, bar_chart, line_chart, report_charts
from ledger.replay import MemoryLedger
from ledger.reports import (
    GENDER_CSV_COLUMNS,
    LOTS_CSV_COLUMNS,
    MIN_GROUP,
    SUPPRESSED,
    due_diligence_report,
    events_from_entries,
    gender_csv,
    gender_report,
    lots_csv,
    ratio,
)
from ledger.state import ActorState, LotState, SiteState
from tests import factories

ORIGIN = "demo.goldtrail.example/log"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # after the scenario's last event
LATER = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)  # after EXTRA's last event
REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "clients" / "data" / "scenario.json"

CLEAN = {
    "child_labour": "none",
    "forced_labour": False,
    "armed_groups": "none",
    "security_forces": "none",
}
EXTRA: list[dict[str, Any]] = [
    {
        "time": "2026-12-01T09:00:00Z",
        "actor": "registrar-ituri",
        "type": "site.registered",
        "site": "site-mambasa-epulu",
        "name": "Epulu river site",
        "operator": "coop-mambasa-femmes",
        "country": "CD",
        "region": "Ituri, Mambasa territory",
        "location": {"lat": "1.40000", "lon": "28.58000"},
        "deposit": "alluvial",
    },
    {
        "time": "2026-12-01T09:05:00Z",
        "actor": "registrar-ituri",
        "type": "site.registered",
        "site": "site-kassanda-nalutuntu",
        "name": "Nalutuntu pits",
        "operator": "coop-kassanda-diggers",
        "country": "UG",
        "region": "Kassanda District",
        "location": {"lat": "0.50000", "lon": "31.70000"},
        "deposit": "hard_rock",
    },
    {
        "time": "2026-12-01T10:00:00Z",
        "actor": "auditor-great-lakes",
        "type": "site.assessed",
        "site": "site-mambasa-epulu",
        "status": "yellow",
        "assessed_on": "2026-11-30",
        "valid_until": "2027-06-01",
        "workforce": {"women": 3, "men": 40},
        "daily_income_median": {
            "women": {"amount_minor": 300, "currency": "USD"},
            "men": {"amount_minor": 500, "currency": "USD"},
        },
        "gbv_reports": {"count": 2, "period_days": 60},
    },
    {
        "time": "2026-12-05T09:00:00Z",
        "actor": "coop-mambasa-femmes",
        "type": "lot.registered",
        "lot": "MAK-2026-0002",
        "site": "site-mambasa-makala",
        "mass_mg": 5000,
        "form": "gold",
        "fineness_ppm": 850000,
        "extracted": {"from": "2026-11-25", "to": "2026-12-04"},
        "producers": {"women": 2, "men": 1, "women_led": True},
        "recovery": "amalgamation_retort",
        "declarations": CLEAN,
        "payment": {
            "total": {"amount_minor": 30000000, "currency": "CDF"},
            "to_women": {"amount_minor": 20000000, "currency": "CDF"},
        },
    },
    {
        "time": "2026-12-06T10:00:00Z",
        "actor": "auditor-great-lakes",
        "type": "lot.flagged",
        "lot": "MAK-2026-0002",
        "code": "bribery",
        "note": "A buyer reported an irregular fee at the weighing point.",
    },
    {
        "time": "2026-12-08T10:00:00Z",
        "actor": "auditor-great-lakes",
        "type": "lot.flag_resolved",
        "lot": "MAK-2026-0002",
        "flag": "<id of bribery>",
        "outcome": "unfounded",
        "resolution": "The fee was the official weighing fee; receipt checked.",
    },
    {
        "time": "2026-12-09T12:00:00Z",
        "actor": "auditor-great-lakes",
        "type": "lot.flagged",
        "lot": "MAK-2026-0002",
        "code": "serious_abuse",
        "note": "An allegation under investigation by the auditor.",
    },
    {
        "time": "2027-01-10T08:00:00Z",
        "actor": "coop-busia-gold",
        "type": "lot.registered",
        "lot": "TII-2027-0001",
        "site": "site-busia-tiira",
        "mass_mg": 2000000,
        "form": "concentrate",
        "fineness_ppm": 500,
        "extracted": {"from": "2026-12-20", "to": "2027-01-09"},
        "producers": {"women": 4, "men": 1, "women_led": False},
        "recovery": "gravity",
        "declarations": CLEAN,
        "payment": {
            "total": {"amount_minor": 500000, "currency": "UGX"},
            "to_women": {"amount_minor": 400000, "currency": "UGX"},
        },
    },
]

Events = list[tuple[int, str, dict[str, Any]]]


def load_scenario() -> dict[str, Any]:
    """clients/data/scenario.json, read by path (a tests/clients folder can shadow the
    ``clients`` package under pytest, and ``clients.scenario.load_scenario`` with it)."""
    data: dict[str, Any] = json.loads(SCENARIO.read_text("utf-8"))
    return data


def _play(extra: bool) -> tuple[MemoryLedger, Events]:
    """The scenario (and EXTRA) played into a MemoryLedger, with its (seq, id, body) stream."""
    events = load_scenario()["events"] + (EXTRA if extra else [])
    ledger, _ = factories.play_scenario(events, origin=ORIGIN, now=LATER if extra else NOW)
    records = sorted(ledger.state.events.values(), key=lambda r: r.seq)
    return ledger, [(r.seq, r.event_id, r.body) for r in records]


@pytest.fixture(scope="module")
def base() -> tuple[MemoryLedger, Events]:
    return _play(extra=False)


@pytest.fixture(scope="module")
def extended() -> tuple[MemoryLedger, Events]:
    return _play(extra=True)


def R(value: float | None, numerator: int, denominator: int) -> dict[str, Any]:
    """An expected ratio, written out."""
    return {"value": value, "numerator": numerator, "denominator": denominator}


def by_key(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


# ---------------------------------------------------------------------------
# Gender report on the scenario


def test_registration_totals(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    reg = gender_report(events, ledger.state)["registrations"]
    assert reg["lots"] == 4
    assert reg["women_led_lots"] == 3  # MAK-0001, TII-0042, TII-0043
    # women 1 + 6 + 14 + 9 = 30; men 7 + 3 + 6 + 2 = 18; 30 / 48 = 0.625
    assert reg["producers"] == {"women": 30, "men": 18}
    assert reg["women_share_of_producers"] == R(0.625, 30, 48)
    # Σ products 7 280 000 000 + 33 277 500 000 + 2 100 000 000 + 2 160 000 000
    #   = 44 817 500 000 → 44 817 mg; women-led: the last three = 37 537 500 000 → 37 537 mg
    # 37 537 / 44 817 = 0.83756… → 0.8376
    assert reg["fine_mg"] == {"women_led": 37537, "total": 44817}
    assert reg["women_led_fine_share"] == R(0.8376, 37537, 44817)
    # CDF: MAK-0001 only, 6 women and 3 men: 198 000 000 − 132 000 000 would be 3 men's pay
    # UGX: TII-0042 only (14 women, 6 men): 1 700 000 / 2 400 000 = 0.70833… → 0.7083;
    #   KIT-0007 (1 woman) and TII-0043 (2 men) are left out
    assert reg["payments"] == [
        {
            "currency": "CDF",
            "suppressed": True,
            "reason": "fewer than 5 people",
            "excluded_small_groups": 1,
        },
        {
            "currency": "UGX",
            "lots": 1,
            "producers": 20,
            "total_minor": 2400000,
            "to_women_minor": 1700000,
            "women_share_of_payments": R(0.7083, 1700000, 2400000),
            "excluded_small_groups": 2,
        },
    ]


def test_the_totals_agree_with_the_bar_lot_gender_summary(
    base: tuple[MemoryLedger, Events],
) -> None:
    # the bar's origins are exactly the four registrations: scenario.json's expected section
    ledger, events = base
    expected = load_scenario()["expected"]["bar_gender"]
    reg = gender_report(events, ledger.state)["registrations"]
    assert reg["producers"] == expected["producers"]
    assert reg["fine_mg"] == {
        "women_led": expected["women_led_fine_mg"],
        "total": expected["origin_fine_mg"],
    }
    # the lot's own `paid` (JSON API) sums every origin; the report leaves small groups out
    assert [p["currency"] for p in reg["payments"]] == [p["currency"] for p in expected["paid"]]


def test_per_site_registrations(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    sites = by_key(gender_report(events, ledger.state)["by_site"], "site")
    assert list(sites) == ["site-busia-tiira", "site-kassanda-kitumbi", "site-mambasa-makala"]
    busia = sites["site-busia-tiira"]["registrations"]
    # TII-0042 + TII-0043: women 14 + 9 = 23, men 6 + 2 = 8 → 23/31 = 0.7419
    assert busia["producers"] == {"women": 23, "men": 8}
    assert busia["women_share_of_producers"] == R(0.7419, 23, 31)
    # 2 100 000 000 + 2 160 000 000 = 4 260 000 000 → 4 260 mg, all women-led
    assert busia["women_led_fine_share"] == R(1.0, 4260, 4260)
    # UGX: TII-0042 only (TII-0043 has 2 men): 1 700 000 / 2 400 000 = 0.7083
    (ugx,) = busia["payments"]
    assert (ugx["currency"], ugx["producers"], ugx["excluded_small_groups"]) == ("UGX", 20, 1)
    assert ugx["women_share_of_payments"] == R(0.7083, 1700000, 2400000)
    kassanda = sites["site-kassanda-kitumbi"]["registrations"]
    # KIT-0007: 1 woman of 8; not women-led: 0 / 7 280 mg; its payment: 1 woman, withheld
    assert kassanda["women_share_of_producers"] == R(0.125, 1, 8)
    assert kassanda["women_led_fine_share"] == R(0.0, 0, 7280)
    assert kassanda["payments"][0]["suppressed"] is True
    makala = sites["site-mambasa-makala"]["registrations"]
    # MAK-0001: 6/9; 33 277 500 000 → 33 277 mg, women-led
    assert makala["women_share_of_producers"] == R(0.6667, 6, 9)
    assert makala["fine_mg"] == {"women_led": 33277, "total": 33277}


def test_site_indicators_from_latest_assessments(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    sites = by_key(gender_report(events, ledger.state)["by_site"], "site")
    makala = sites["site-mambasa-makala"]["indicators"]
    # workforce 46 women, 71 men: 46 / 117 = 0.3932
    assert makala["women_share_of_workforce"] == R(0.3932, 46, 117)
    assert makala["women_share_of_leadership"] == R(0.7143, 5, 7)
    assert makala["women_owned"] == {"pits": 4, "processing_units": 1}
    # USD 4.50 vs 6.00 a day, 46 women and 71 men (≥ 5 each): gap 1 − 450/600 = 150/600 = 0.25
    assert makala["daily_income_median"] == {
        "women": {"amount_minor": 450, "currency": "USD"},
        "men": {"amount_minor": 600, "currency": "USD"},
        "gap": R(0.25, 150, 600),
    }
    # 3 reports in 90 days: 3 × 30 / 90 = 1 per 30 days
    assert makala["gbv_per_30_days"] == R(1.0, 90, 90)
    busia = sites["site-busia-tiira"]["indicators"]
    assert busia["women_share_of_workforce"] == R(0.6216, 230, 370)  # 230 / (230 + 140)
    assert busia["women_owned"] == {"pits": 11, "processing_units": 15}
    # UGX 10 000 vs 12 000: 1 − 10 000/12 000 = 2 000/12 000 = 0.1667
    assert busia["daily_income_median"]["gap"] == R(0.1667, 2000, 12000)
    assert busia["gbv_per_30_days"] == R(3.0, 90, 30)  # 3 × 30 / 30
    kassanda = sites["site-kassanda-kitumbi"]["indicators"]
    assert kassanda["women_share_of_workforce"] == R(0.1628, 35, 215)  # 35 / (35 + 180)
    assert kassanda["women_owned"] == {"pits": 0, "processing_units": 0}
    # UGX 2 000 vs 9 000: 7 000 / 9 000 = 0.7778
    assert kassanda["daily_income_median"]["gap"] == R(0.7778, 7000, 9000)
    assert kassanda["gbv_per_30_days"] == R(11.0, 330, 30)  # 11 × 30 / 30
    assert kassanda["mercury_exposure_pregnant"] == 4
    assert sites["site-kassanda-kitumbi"]["assessment"]["status"] == "yellow"


def test_site_totals(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    totals = gender_report(events, ledger.state)["sites"]
    assert (totals["sites"], totals["assessed"]) == (3, 3)
    # women 46 + 230 + 35 = 311, men 71 + 140 + 180 = 391: 311 / 702 = 0.443
    assert totals["women_share_of_workforce"] == R(0.443, 311, 702)
    # leadership 5 + 6 + 1 = 12 of 7 + 9 + 8 = 24
    assert totals["women_share_of_leadership"] == R(0.5, 12, 24)
    # pits 4 + 11 + 0 = 15, processing units 1 + 15 + 0 = 16
    assert totals["women_owned"] == {"pits": 15, "processing_units": 16, "sites": 3}
    # 1 + 3 + 11 = 15 reports per 30 days across the three sites
    assert totals["gbv_per_30_days"] == R(15.0, 15, 1)


def test_organisations(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    orgs = gender_report(events, ledger.state)["organisations"]
    # profiles: mambasa (women-led, members 41/58, leaders 5/7), busia (yes, 112/160, 6/9),
    # kassanda (no, 19/96, 1/8), plant-tiira-women (yes, 9/12, 3/3)
    assert [o["actor"] for o in orgs["items"]] == [
        "coop-busia-gold",
        "coop-kassanda-diggers",
        "coop-mambasa-femmes",
        "plant-tiira-women",
    ]
    assert orgs["count"] == 4
    assert orgs["women_led_share"] == R(0.75, 3, 4)
    # members 41 + 112 + 19 + 9 = 181 of 58 + 160 + 96 + 12 = 326 → 0.5552
    assert orgs["women_share_of_members"] == R(0.5552, 181, 326)
    # leaders 5 + 6 + 1 + 3 = 15 of 7 + 9 + 8 + 3 = 27 → 0.5556
    assert orgs["women_share_of_leaders"] == R(0.5556, 15, 27)


def test_per_cooperative(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    coops = by_key(gender_report(events, ledger.state)["by_cooperative"], "cooperative")
    assert list(coops) == ["coop-busia-gold", "coop-kassanda-diggers", "coop-mambasa-femmes"]
    mambasa = coops["coop-mambasa-femmes"]
    assert mambasa["sites"] == ["site-mambasa-makala"]
    assert mambasa["registrations"]["lots"] == 1
    assert mambasa["organisation"]["women_share_of_members"] == R(0.7069, 41, 58)
    kassanda = coops["coop-kassanda-diggers"]
    assert kassanda["organisation"]["women_led"] is False
    assert kassanda["organisation"]["women_share_of_leaders"] == R(0.125, 1, 8)
    assert coops["coop-busia-gold"]["registrations"]["producers"] == {"women": 23, "men": 8}


def test_monthly_series_of_the_scenario(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    report = gender_report(events, ledger.state)
    (month,) = report["by_month"]  # every registration is in November 2026
    assert month["month"] == "2026-11"
    assert month["registrations"] == report["registrations"]


def test_definitions_name_every_indicator(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    report = gender_report(events, ledger.state)
    for name in (
        "women_share_of_producers",
        "women_led_fine_share",
        "women_share_of_payments",
        "organisations",
        "daily_income_median",
        "gbv_per_30_days",
        "by_month",
    ):
        assert name in report["definitions"]
    assert "Σ" in report["definitions"]["women_share_of_producers"]
    assert report["suppression"]["min_group"] == MIN_GROUP == 5
    assert report["suppression"]["replacement"] == {
        "suppressed": True,
        "reason": "fewer than 5 people",
    }


def test_ratio_rendering() -> None:
    assert ratio(2, 3) == R(0.6667, 2, 3)
    assert ratio(0, 0) == R(None, 0, 0)
    assert ratio(-1, 8) == R(-0.125, -1, 8)
    # exact halves round to even: 0.00005 → 0.0000, 0.00015 → 0.0002
    assert ratio(1, 20000) == R(0.0, 1, 20000)
    assert ratio(3, 20000)["value"] == 0.0002


# ---------------------------------------------------------------------------
# Small groups, thresholds, months and filters (scenario + EXTRA)


def test_small_group_payment_is_suppressed_everywhere(
    extended: tuple[MemoryLedger, Events],
) -> None:
    ledger, events = extended
    report = gender_report(events, ledger.state)
    # MAK-2026-0002 has 2 + 1 = 3 producers: its CDF payment enters no figure at all (nor
    # does MAK-2026-0001's, with 3 men)
    cdf = by_key(report["registrations"]["payments"], "currency")["CDF"]
    assert cdf == {**SUPPRESSED, "currency": "CDF", "excluded_small_groups": 2}
    months = by_key(report["by_month"], "month")
    assert list(months) == ["2026-11", "2026-12", "2027-01"]  # across the year end
    december = months["2026-12"]["registrations"]
    assert december["payments"] == [
        {
            "currency": "CDF",
            "suppressed": True,
            "reason": "fewer than 5 people",
            "excluded_small_groups": 1,
        }
    ]
    # counts of producers are not payment figures: shown
    assert december["producers"] == {"women": 2, "men": 1}
    makala = by_key(report["by_site"], "site")["site-mambasa-makala"]["registrations"]
    (makala_cdf,) = makala["payments"]
    # the site total must not include the small group, or site − November would reveal it
    assert (makala_cdf["suppressed"], makala_cdf["excluded_small_groups"]) == (True, 2)
    assert makala["producers"] == {"women": 8, "men": 4}  # 6 + 2, 3 + 1
    mambasa = by_key(report["by_cooperative"], "cooperative")["coop-mambasa-femmes"]
    assert mambasa["registrations"]["payments"][0]["suppressed"] is True
    # no figure anywhere in the report carries the small group's 30 000 000 or 20 000 000
    text = repr(report)
    assert not re.search(r"\b(30000000|20000000)\b", text)


def _paid_registration(
    n: int, women: int, men: int, to_women: int, total: int
) -> tuple[int, str, dict[str, Any]]:
    """A bare lot.registered body (reports do not verify) with a UGX payment."""
    return (
        n,
        f"{n:064x}",
        {
            "v": 1,
            "type": "lot.registered",
            "actor": "coop-x",
            "time": f"2026-12-{n:02d}T08:00:00Z",
            "lot": f"X-{n:04d}",
            "site": "site-x",
            "mass_mg": 1000,
            "form": "gold",
            "fineness_ppm": 900000,
            "extracted": {"from": "2026-11-20", "to": "2026-11-30"},
            "producers": {"women": women, "men": men},
            "recovery": "none",
            "declarations": CLEAN,
            "payment": {
                "total": {"amount_minor": total, "currency": "UGX"},
                "to_women": {"amount_minor": to_women, "currency": "UGX"},
            },
        },
    )


def test_payment_into_the_hands_of_fewer_than_five_women_or_men_enters_no_figure() -> None:
    # to_women is the pay of the team's women, total − to_women that of its men: each of the
    # two groups must be absent or hold at least 5 people (PROTOCOL.md section 7)
    stream = [
        _paid_registration(1, 5, 0, 500, 500),  # 5 women, no men: shown
        _paid_registration(2, 5, 5, 300, 1000),  # 5 and 5: shown
        _paid_registration(3, 4, 6, 100, 1000),  # 100 would be 4 women's pay: left out
        _paid_registration(4, 6, 4, 600, 1000),  # 1000 − 600 would be 4 men's pay: left out
        _paid_registration(5, 0, 5, 0, 700),  # 5 men, no women: shown
    ]
    report = gender_report(stream, _NoLookup(), sites=[], actors=[])
    # 500 + 300 + 0 = 800 over 500 + 1 000 + 700 = 2 200 → 0.3636; producers 5 + 10 + 5 = 20
    assert report["registrations"]["payments"] == [
        {
            "currency": "UGX",
            "lots": 3,
            "producers": 20,
            "total_minor": 2200,
            "to_women_minor": 800,
            "women_share_of_payments": R(0.3636, 800, 2200),
            "excluded_small_groups": 2,
        }
    ]
    (month,) = report["by_month"]
    assert month["registrations"]["payments"] == report["registrations"]["payments"]


def test_one_womans_pay_is_not_shown_as_a_site_figure(base: tuple[MemoryLedger, Events]) -> None:
    # KIT-2026-0007 has 1 woman and 7 men: its UGX 60 000 "to women" is one woman's pay
    ledger, events = base
    report = gender_report(events, ledger.state, site="site-kassanda-kitumbi")
    assert report["registrations"]["producers"] == {"women": 1, "men": 7}  # counts: shown
    assert report["registrations"]["payments"] == [
        {
            "currency": "UGX",
            "suppressed": True,
            "reason": "fewer than 5 people",
            "excluded_small_groups": 1,
        }
    ]
    text = json.dumps(report) + gender_csv(report)
    assert not re.search(r"\b(60000|1350000|1290000)\b", text)


class _NoLookup:
    def actor(self, actor_id: str) -> ActorState | None:
        return None

    def site(self, site_id: str) -> SiteState | None:
        return None

    def lot(self, lot_id: str) -> LotState | None:
        return None


def test_five_producers_with_one_man_are_withheld(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    report = gender_report(events, ledger.state)
    january = by_key(report["by_month"], "month")["2027-01"]["registrations"]
    # TII-2027-0001: 4 women + 1 man: 500 000 − 400 000 would be the man's pay
    assert january["payments"] == [
        {
            "currency": "UGX",
            "suppressed": True,
            "reason": "fewer than 5 people",
            "excluded_small_groups": 1,
        }
    ]
    ugx = by_key(report["registrations"]["payments"], "currency")["UGX"]
    # still TII-0042 alone: 1 700 000 / 2 400 000
    assert ugx["women_share_of_payments"] == R(0.7083, 1700000, 2400000)
    assert (ugx["producers"], ugx["excluded_small_groups"]) == (20, 3)


def test_extended_totals(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    reg = gender_report(events, ledger.state)["registrations"]
    # women 30 + 2 + 4 = 36, men 18 + 1 + 1 = 20: 36 / 56 = 0.6429
    assert reg["women_share_of_producers"] == R(0.6429, 36, 56)
    # products 44 817 500 000 + 5 000 × 850 000 (4 250 000 000) + 2 000 000 × 500
    #   (1 000 000 000) = 50 067 500 000 → 50 067 mg; women-led 37 537 500 000 + 4 250 000 000
    #   = 41 787 500 000 → 41 787 mg (TII-2027-0001 is not women-led): 0.8346
    assert reg["women_led_fine_share"] == R(0.8346, 41787, 50067)


def test_small_workforce_income_is_suppressed(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    report = gender_report(events, ledger.state)
    epulu = by_key(report["by_site"], "site")["site-mambasa-epulu"]["indicators"]
    # 3 women (< 5): their median and the gap are withheld; 40 men: shown
    assert epulu["daily_income_median"] == {
        "women": SUPPRESSED,
        "men": {"amount_minor": 500, "currency": "USD"},
        "gap": SUPPRESSED,
    }
    assert epulu["women_share_of_workforce"] == R(0.0698, 3, 43)  # 3 / 43
    assert epulu["gbv_per_30_days"] == R(1.0, 60, 60)  # 2 × 30 / 60
    assert "300" not in repr(epulu["daily_income_median"])
    never = by_key(report["by_site"], "site")["site-kassanda-nalutuntu"]
    assert never["assessment"] is None and never["indicators"] is None
    totals = report["sites"]
    assert (totals["sites"], totals["assessed"]) == (5, 4)
    # workforce women 311 + 3 = 314, men 391 + 40 = 431 → 314 / 745 = 0.4215
    assert totals["women_share_of_workforce"] == R(0.4215, 314, 745)
    assert totals["gbv_per_30_days"] == R(16.0, 16, 1)  # 15 + 1
    assert totals["women_owned"] == {"pits": 15, "processing_units": 16, "sites": 3}


def test_date_filters(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    december_on = gender_report(events, ledger.state, date_from="2026-12-01")
    reg = december_on["registrations"]
    assert reg["lots"] == 2  # MAK-2026-0002, TII-2027-0001
    assert reg["producers"] == {"women": 6, "men": 2}  # 2 + 4, 1 + 1
    assert by_key(reg["payments"], "currency")["CDF"]["suppressed"] is True
    assert [m["month"] for m in december_on["by_month"]] == ["2026-12", "2027-01"]
    november = gender_report(
        events, ledger.state, date_from=dt.date(2026, 11, 1), date_to=dt.date(2026, 11, 30)
    )
    base_like = gender_report(events[: len(load_scenario()["events"])], ledger.state)
    assert november["registrations"] == base_like["registrations"]
    assert november["filters"]["from"] == "2026-11-01"
    # ``to`` bounds the assessments: before 2026-10-30 no site had been assessed
    early = gender_report(events, ledger.state, date_to="2026-10-29")
    assert early["registrations"]["lots"] == 0
    assert early["by_month"] == []
    assert all(s["indicators"] is None for s in early["by_site"])
    # inclusive bounds: the day of MAK-2026-0002 alone
    one_day = gender_report(events, ledger.state, date_from="2026-12-05", date_to="2026-12-05")
    assert one_day["registrations"]["lots"] == 1


def test_country_site_and_cooperative_filters(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    cd = gender_report(events, ledger.state, country="CD")
    assert [s["site"] for s in cd["by_site"]] == ["site-mambasa-epulu", "site-mambasa-makala"]
    assert cd["registrations"]["lots"] == 2  # MAK-0001, MAK-0002
    assert cd["registrations"]["producers"] == {"women": 8, "men": 4}
    assert [o["actor"] for o in cd["organisations"]["items"]] == ["coop-mambasa-femmes"]
    busia = gender_report(events, ledger.state, site="site-busia-tiira")
    assert busia["registrations"]["lots"] == 3  # TII-0042, TII-0043, TII-2027-0001
    assert busia["registrations"]["producers"] == {"women": 27, "men": 9}  # 14+9+4, 6+2+1
    assert [o["actor"] for o in busia["organisations"]["items"]] == ["coop-busia-gold"]
    assert [c["cooperative"] for c in busia["by_cooperative"]] == ["coop-busia-gold"]
    kassanda = gender_report(events, ledger.state, cooperative="coop-kassanda-diggers")
    assert kassanda["registrations"]["producers"] == {"women": 1, "men": 7}
    assert [s["site"] for s in kassanda["by_site"]] == [
        "site-kassanda-kitumbi",
        "site-kassanda-nalutuntu",
    ]
    assert kassanda["organisations"]["women_led_share"] == R(0.0, 0, 1)
    (coop,) = kassanda["by_cooperative"]
    assert coop["sites"] == ["site-kassanda-kitumbi", "site-kassanda-nalutuntu"]
    nothing = gender_report(events, ledger.state, country="CH")
    assert nothing["registrations"]["lots"] == 0
    assert nothing["registrations"]["women_share_of_producers"] == R(None, 0, 0)


class _Lookup:
    """Only what a report reads: actor, site, lot (the SQL store offers the same)."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self._state = ledger.state

    def actor(self, actor_id: str) -> ActorState | None:
        return self._state.actor(actor_id)

    def site(self, site_id: str) -> SiteState | None:
        return self._state.site(site_id)

    def lot(self, lot_id: str) -> LotState | None:
        return self._state.lot(lot_id)


def test_streams_once_and_takes_explicit_lists(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended

    def stream() -> Iterator[tuple[int, str, dict[str, Any]]]:
        yield from events

    derived = gender_report(events, ledger.state)
    entries = (
        {"seq": s, "event_id": i, "leaf_hash": "", "envelope": {"body": b}} for s, i, b in events
    )
    assert gender_report(events_from_entries(entries), ledger.state) == derived
    streamed = gender_report(stream(), _Lookup(ledger))
    explicit = gender_report(
        stream(),
        _Lookup(ledger),
        sites=ledger.state.sites.values(),
        actors=ledger.state.actors.values(),
    )
    assert derived == streamed == explicit
    dd = due_diligence_report(events, ledger.state, today="2027-02-01")
    dd_streamed = due_diligence_report(
        stream(),
        _Lookup(ledger),
        today=dt.date(2027, 2, 1),
        sites=ledger.state.sites.values(),
        lots=ledger.state.lots.values(),
    )
    assert dd == dd_streamed


# ---------------------------------------------------------------------------
# Due diligence


def test_due_diligence_on_the_scenario(base: tuple[MemoryLedger, Events]) -> None:
    ledger, events = base
    dd = due_diligence_report(events, ledger.state, today="2026-11-23")
    # makala and busia green; kitumbi yellow (valid until 2027-01-20)
    assert dd["sites"]["by_colour"] == {"green": 2, "yellow": 1, "red": 0, "blue": 0}
    # the bar is the only lot not consumed: site_yellow (from KIT) and cahra_origin (from MAK)
    assert dd["open_flags"] == {
        "total": 2,
        "by_class": {"hold": 0, "high": 0, "medium": 2},
        "by_code": {"cahra_origin": 1, "site_yellow": 1},
    }
    assert dd["lots_on_hold"] == []
    # the bar: 44 800 mg at 999 900 ppm → 44 795.52 → 44 795 mg fine; risk medium
    assert dd["mass_by_risk"] == {
        "low": {"lots": 0, "mass_mg": 0, "fine_mg": 0},
        "medium": {"lots": 1, "mass_mg": 44800, "fine_mg": 44795},
        "high": {"lots": 0, "mass_mg": 0, "fine_mg": 0},
        "hold": {"lots": 0, "mass_mg": 0, "fine_mg": 0},
    }
    # raised: KIT registration (mercury_worst_practice, site_yellow), MAK (cahra_origin)
    assert dd["flags_raised"] == {
        "total": 3,
        "by_class": {"hold": 0, "high": 0, "medium": 3},
        "by_code": {"cahra_origin": 1, "mercury_worst_practice": 1, "site_yellow": 1},
    }
    # mercury flag raised 2026-11-16T15:00Z, resolved 2026-11-20T13:00Z: 4 days − 2 h = 94 h
    assert dd["flags_resolved"] == {
        "count": 1,
        "by_outcome": {"unfounded": 0, "remediated": 1},
        "by_code": {"mercury_worst_practice": 1},
        "hours_to_resolution": {"count": 1, "median": 94.0, "max": 94.0},
    }


def test_due_diligence_with_holds_and_two_resolutions(
    extended: tuple[MemoryLedger, Events],
) -> None:
    ledger, events = extended
    dd = due_diligence_report(events, ledger.state, today="2027-02-01")
    # kitumbi's assessment expired 2027-01-20: a yellow site then counts as blue; epulu is
    # yellow until 2027-06-01; nalutuntu was never assessed: blue
    assert dd["sites"]["by_colour"] == {"green": 2, "yellow": 1, "red": 0, "blue": 2}
    # live lots: the bar (site_yellow, cahra_origin), MAK-2026-0002 (its cahra_origin,
    # serious_abuse; bribery resolved), TII-2027-0001 (busia is green, no cahra: none)
    assert dd["open_flags"] == {
        "total": 4,
        "by_class": {"hold": 1, "high": 0, "medium": 3},
        "by_code": {"cahra_origin": 2, "serious_abuse": 1, "site_yellow": 1},
    }
    assert dd["lots_on_hold"] == ["MAK-2026-0002"]
    # TII-2027-0001 low: 2 000 000 mg, × 500 ppm = 1 000 mg fine
    # MAK-2026-0002 hold: 5 000 mg × 850 000 ppm = 4 250 mg fine
    assert dd["mass_by_risk"]["low"] == {"lots": 1, "mass_mg": 2000000, "fine_mg": 1000}
    assert dd["mass_by_risk"]["medium"] == {"lots": 1, "mass_mg": 44800, "fine_mg": 44795}
    assert dd["mass_by_risk"]["hold"] == {"lots": 1, "mass_mg": 5000, "fine_mg": 4250}
    # 3 + cahra_origin, bribery, serious_abuse on MAK-2026-0002
    assert dd["flags_raised"]["total"] == 6
    assert dd["flags_raised"]["by_class"] == {"hold": 1, "high": 1, "medium": 4}
    # resolved: mercury 94 h (remediated), bribery 12-06T10:00 → 12-08T10:00 = 48 h
    # (unfounded): median (48 + 94) / 2 = 71, max 94
    assert dd["flags_resolved"] == {
        "count": 2,
        "by_outcome": {"unfounded": 1, "remediated": 1},
        "by_code": {"bribery": 1, "mercury_worst_practice": 1},
        "hours_to_resolution": {"count": 2, "median": 71.0, "max": 94.0},
    }
    # as of 2026-11-23 kitumbi was still yellow
    earlier = due_diligence_report(events, ledger.state, today=dt.date(2026, 11, 23))
    assert earlier["sites"]["by_colour"] == {"green": 2, "yellow": 2, "red": 0, "blue": 1}


def test_due_diligence_filters(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    december = due_diligence_report(
        events, ledger.state, today="2027-02-01", date_from="2026-12-01", date_to="2026-12-31"
    )
    assert december["flags_raised"]["by_code"] == {
        "bribery": 1,
        "cahra_origin": 1,
        "serious_abuse": 1,
    }
    assert december["flags_resolved"]["count"] == 1
    assert december["flags_resolved"]["hours_to_resolution"] == {
        "count": 1,
        "median": 48.0,
        "max": 48.0,
    }
    # lots are selected by origin: UG origins are every lot but MAK-0001 and MAK-0002
    ug = due_diligence_report(events, ledger.state, today="2027-02-01", country="UG")
    assert ug["sites"]["by_colour"] == {"green": 1, "yellow": 0, "red": 0, "blue": 2}
    assert ug["lots_on_hold"] == []
    assert ug["open_flags"]["by_code"] == {"cahra_origin": 1, "site_yellow": 1}  # the bar
    assert ug["mass_by_risk"]["low"]["mass_mg"] == 2000000
    assert ug["flags_resolved"]["by_code"] == {"mercury_worst_practice": 1}
    makala = due_diligence_report(
        events, ledger.state, today="2027-02-01", site="site-mambasa-makala"
    )
    assert makala["lots_on_hold"] == ["MAK-2026-0002"]
    assert makala["sites"]["count"] == 1
    coop = due_diligence_report(
        events, ledger.state, today="2027-02-01", cooperative="coop-kassanda-diggers"
    )
    assert [s["site"] for s in coop["sites"]["items"]] == [
        "site-kassanda-kitumbi",
        "site-kassanda-nalutuntu",
    ]
    assert coop["mass_by_risk"]["medium"]["lots"] == 1  # the bar carries Kitumbi gold


# ---------------------------------------------------------------------------
# CSV


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_gender_csv_parses_back(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    text = gender_csv(gender_report(events, ledger.state))
    rows = _rows(text)
    assert tuple(rows[0]) == GENDER_CSV_COLUMNS
    index = {(r["scope"], r["key"], r["indicator"], r["currency"]): r for r in rows}
    share = index[("total", "all", "women_share_of_producers", "")]
    assert (share["value"], share["numerator"], share["denominator"]) == ("0.6429", "36", "56")
    small = index[("month", "2026-12", "women_share_of_payments", "CDF")]
    assert (small["value"], small["suppressed"]) == ("", "true")
    shown = index[("month", "2026-11", "women_share_of_payments", "UGX")]
    assert (shown["value"], shown["suppressed"]) == ("0.7083", "false")
    women_income = index[("site", "site-mambasa-epulu", "daily_income_median_women_minor", "")]
    assert women_income["suppressed"] == "true" and women_income["value"] == ""
    gap = index[("site", "site-mambasa-makala", "daily_income_gap", "USD")]
    assert (gap["value"], gap["numerator"], gap["denominator"]) == ("0.25", "150", "600")
    assert index[("sites", "all", "women_owned_pits", "")]["value"] == "15"
    assert index[("organisations", "all", "women_share_of_leaders", "")]["value"] == "0.5556"
    assert index[("cooperative", "coop-kassanda-diggers", "women_led", "")]["value"] == "false"
    assert not re.search(r"\b(30000000|20000000)\b", text)  # the small group's payment


def test_csv_cells_never_start_a_formula(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    report = copy.deepcopy(gender_report(events, ledger.state))
    report["by_month"][0]["month"] = '=HYPERLINK("http://x")'
    rows = _rows(gender_csv(report))
    assert any(r["key"] == '\'=HYPERLINK("http://x")' for r in rows)
    assert not any(r["key"].startswith("=") for r in rows)


def test_lots_csv(base: tuple[MemoryLedger, Events]) -> None:
    ledger, _ = base
    rows = _rows(lots_csv(ledger.state.lots.values(), _Lookup(ledger)))
    assert tuple(rows[0]) == LOTS_CSV_COLUMNS
    assert [r["lot"] for r in rows] == [  # log order
        "KIT-2026-0007",
        "MAK-2026-0001",
        "TII-2026-0042",
        "TII-2026-0043",
        "TIW-2026-0007",
        "KLA-2026-0101",
        "ALP-2026-118842",
    ]
    bar = rows[-1]
    assert {k: v for k, v in bar.items() if k != "head"} == {
        "lot": "ALP-2026-118842",
        "status": "active",
        "custodian": "refiner-alpine",
        "form": "bar",
        "mass_mg": "44800",
        "fineness_ppm": "999900",
        "risk": "medium",
        "hold": "false",
        "origins": "site-busia-tiira;site-kassanda-kitumbi;site-mambasa-makala",
        "women": "30",
        "men": "18",
        "women_led_fine_mg": "37537",
        "origin_fine_mg": "44817",
        "destination": "",
        # issue 7 "its state": where the lot is, whether it left a country, and why its
        # risk is what it is: KIT-2026-0007's site_yellow (Kitumbi, yellow) and
        # MAK-2026-0001's cahra_origin (Makala, CAHRA) are still open on the bar; the
        # mercury flag was resolved on KLA-2026-0101 before the refining
        "country": "CH",
        "exported": "false",
        "open_flags": "cahra_origin;site_yellow",
        "resolved_flags": "",
    }
    assert re.fullmatch(r"[0-9a-f]{64}", bar["head"])
    kla = rows[5]
    # exported from Uganda by exporter-kampala, then accepted in Switzerland (which clears
    # the destination); its mercury flag resolved as remediated (retorts issued)
    assert (kla["country"], kla["exported"], kla["destination"]) == ("CH", "true", "")
    assert kla["open_flags"] == "cahra_origin;site_yellow"
    assert kla["resolved_flags"] == "mercury_worst_practice:remediated"
    mak = rows[1]
    # MAK-2026-0001 weighed 38 240 mg on receipt (min of 38 250 and 38 240); consumed
    assert (mak["status"], mak["mass_mg"], mak["women"], mak["men"]) == (
        "consumed",
        "38240",
        "6",
        "3",
    )
    # TIW-2026-0007 (from TII-0042 + TII-0043): women 14 + 9, men 6 + 2, fine 4 260 mg
    tiw = rows[4]
    assert (tiw["women"], tiw["men"], tiw["origin_fine_mg"], tiw["women_led_fine_mg"]) == (
        "23",
        "8",
        "4260",
        "4260",
    )


# ---------------------------------------------------------------------------
# Charts


def _check_svg(svg: str, title: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, no prolog needed
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.get("role") == "img"
    first = root[0]
    assert first.tag == f"{ns}title" and first.text == title
    assert len(svg.encode("utf-8")) <= 40_000
    # no references to anything outside: namespace declarations only
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", svg))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "@import" not in svg and "@font-face" not in svg and "<image" not in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', svg):
        assert ref in ids
    return root


def test_line_chart_is_accessible_small_and_deterministic() -> None:
    months = ["2026-10", "2026-11", "2026-12"]
    series: Mapping[str, list[float | None]] = {"Women": [0.5, None, 0.625], "Led": [0.2, 0.3, 0.1]}
    a = line_chart("Women's share", months, series, percent=True)
    b = line_chart("Women's share", months, series, percent=True)
    assert a == b
    _check_svg(a, "Women's share")
    assert "2026-11" in a  # the tick labels are text, not paths
    assert a != line_chart("Women's share", months, {"Women": [0.5, 0.6, 0.625]}, percent=True)


def test_bar_chart_and_empty_chart() -> None:
    svg = bar_chart("Per site <&>", ["Makala", "Tiira"], {"A": [1.0, None], "B": [2.0, 3.0]})
    _check_svg(svg, "Per site <&>")
    dollars = bar_chart("Costs in $", ["Site $1", "50% _x_"], {"$A": [1.0, 2.0]})
    _check_svg(dollars, "Costs in $")
    assert "Site $1" in dollars  # text, not TeX
    empty = bar_chart("Nothing", [], {})
    _check_svg(empty, "Nothing")
    assert "no data" in empty
    _check_svg(line_chart("No months", [], {"A": []}), "No months")
    with pytest.raises(ValueError):
        line_chart("Bad id", ["2026-11"], {"A": [1.0]}, chart_id='x" onload="alert(1)')


def test_charts_stay_small_with_many_points() -> None:
    months = [f"{2024 + i // 12}-{i % 12 + 1:02d}" for i in range(36)]
    line = line_chart("Three years", months, {c: [0.5] * 36 for c in ("CDF", "UGX", "USD", "RWF")})
    _check_svg(line, "Three years")
    sites = [f"Site number {i}" for i in range(30)]
    bars = bar_chart("Thirty sites", sites, {k: [0.3] * 30 for k in "abc"}, percent=True)
    _check_svg(bars, "Thirty sites")  # ≤ 40 000 bytes each


def test_charts_are_deterministic_across_processes() -> None:
    code = (
        "from ledger.charts import bar_chart; import sys; "
        "sys.stdout.write(bar_chart('T', ['a', 'b'], {'x': [1.0, 2.0]}))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            timeout=120,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] == bar_chart("T", ["a", "b"], {"x": [1.0, 2.0]})


def test_report_charts(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    gender = gender_report(events, ledger.state)
    dd = due_diligence_report(events, ledger.state, today="2027-02-01")
    charts = report_charts(gender, dd)
    assert all(isinstance(c, Chart) for c in charts)
    ids = [c.id for c in charts]
    assert len(ids) == len(set(ids))
    for chart in charts:
        _check_svg(chart.svg, chart.title)
        assert all(len(row) == len(chart.columns) for row in chart.rows)
    by_id = {c.id: c for c in charts}
    payments = by_id["trend-payments"]
    assert payments.columns == ["Month", "CDF", "UGX"]
    assert payments.rows == [
        ["2026-11", "suppressed", "70.8 % (1700000/2400000)"],
        ["2026-12", "suppressed", "–"],
        ["2027-01", "–", "suppressed"],
    ]
    gap = {row[0]: row[1] for row in by_id["site-income-gap"].rows}
    assert gap["Epulu river site"] == "suppressed"
    assert gap["Makala alluvial site"] == "25.0 % (150/600)"
    assert gap["Nalutuntu pits"] == "–"
    assert by_id["dd-colours"].rows == [
        ["green", "2"],
        ["yellow", "1"],
        ["red", "0"],
        ["blue", "2"],
    ]
    # the whole dashboard's SVG (a page) stays small
    assert sum(len(c.svg) for c in charts) < 200_000


def test_mass_table_shows_every_milligram(extended: tuple[MemoryLedger, Events]) -> None:
    # the table beside the chart is the chart's numbers: exact grams, never 6 digits of them
    ledger, events = extended
    gender = gender_report(events, ledger.state)
    dd = copy.deepcopy(due_diligence_report(events, ledger.state, today="2027-02-01"))
    dd["mass_by_risk"]["low"]["mass_mg"] = 1234567891  # 1 234 567.891 g
    dd["mass_by_risk"]["medium"]["mass_mg"] = 350000001  # 350 000.001 g
    (mass,) = [c for c in report_charts(gender, dd) if c.id == "dd-mass"]
    assert mass.rows == [
        ["low", "1234567.891"],
        ["medium", "350000.001"],
        ["high", "0"],
        ["hold", "5"],  # MAK-2026-0002: 5 000 mg
    ]


def test_count_charts_have_whole_number_axes(extended: tuple[MemoryLedger, Events]) -> None:
    # sites, open flags, pits and units are counted: an axis tick of "0.4" sites means
    # nothing (and stays "0.4", not "0,4", on the French page)
    ledger, events = extended
    gender = gender_report(events, ledger.state)
    dd = due_diligence_report(events, ledger.state, today="2027-02-01")
    by_id = {c.id: c for c in report_charts(gender, dd)}
    for chart_id, ticks in (
        ("dd-colours", ["0", "1", "2"]),  # at most 2 sites of a colour
        ("dd-flags", ["0", "1", "2"]),  # at most 2 open flags of a code
    ):
        texts = re.findall(r"<text\b[^>]*>([^<]*)</text>", by_id[chart_id].svg)
        assert [x for x in texts if re.fullmatch(r"[\d.]+", x)] == ticks, chart_id
    owned = re.findall(r"<text\b[^>]*>([^<]*)</text>", by_id["site-owned"].svg)
    assert not [x for x in owned if re.fullmatch(r"\d+\.\d+", x)]


def test_organisation_chart_and_income_medians(extended: tuple[MemoryLedger, Events]) -> None:
    # issue 7: "women-led organisations and women's share of members and leaders" and "the
    # median daily income of women and men and the gap between them" are on the dashboard,
    # not only in the JSON: a chart of the organisations and the medians beside the gap
    ledger, events = extended
    gender = gender_report(events, ledger.state)
    dd = due_diligence_report(events, ledger.state, today="2027-02-01")
    by_id = {c.id: c for c in report_charts(gender, dd)}
    orgs = by_id["org-shares"]
    _check_svg(orgs.svg, orgs.title)
    assert orgs.columns == [
        "Organisation",
        "Women among members",
        "Women among leaders",
        "Led by a woman",
    ]
    assert orgs.rows == [
        # 112/160 = 0.7; 6/9 = 0.6667
        ["Busia Gold Miners Cooperative Society", "70.0 % (112/160)", "66.7 % (6/9)", "yes"],
        # 19/96 = 0.1979; 1/8 = 0.125
        ["Kassanda Artisanal Diggers Association", "19.8 % (19/96)", "12.5 % (1/8)", "no"],
        # 41/58 = 0.7069; 5/7 = 0.7143
        ["Coopérative des femmes minières de Mambasa", "70.7 % (41/58)", "71.4 % (5/7)", "yes"],
        # 9/12 = 0.75; 3/3 = 1
        ["Tiira Women's Ore Processing Plant", "75.0 % (9/12)", "100.0 % (3/3)", "yes"],
    ]
    # the medians as assessed, in minor units with their currency, beside the gap; Epulu's
    # women (3 in the workforce) are too few to show
    income = by_id["site-income-gap"]
    assert income.columns == ["Site", "Income gap", "Women, median per day", "Men, median per day"]
    assert {row[0]: row[1:] for row in income.rows} == {
        # (12 000 − 10 000) / 12 000 = 0.1667
        "Tiira hard-rock site": ["16.7 % (2000/12000)", "10000 UGX", "12000 UGX"],
        # (9 000 − 2 000) / 9 000 = 0.7778
        "Kitumbi pits": ["77.8 % (7000/9000)", "2000 UGX", "9000 UGX"],
        "Nalutuntu pits": ["–", "–", "–"],
        "Epulu river site": ["suppressed", "suppressed", "500 USD"],
        # (600 − 450) / 600 = 0.25
        "Makala alluvial site": ["25.0 % (150/600)", "450 USD", "600 USD"],
    }
    # only the gap is drawn: two currencies' medians share no axis
    assert "Women, median per day" not in income.svg
    # no income figure about Epulu's 3 women anywhere: not in the table, not drawn
    assert "300" not in " ".join(" ".join(r) for r in income.rows)


def test_site_indicators_per_cooperative(base: tuple[MemoryLedger, Events]) -> None:
    # issue 7: "per site, per cooperative and over time (monthly)": women-owned pits and
    # processing units, women's share of the workforce and of site leaders, GBV reports per
    # 30 days, summed over the sites each cooperative operates (its latest assessments)
    ledger, events = base
    coops = by_key(gender_report(events, ledger.state)["by_cooperative"], "cooperative")
    mambasa = coops["coop-mambasa-femmes"]["site_indicators"]  # Makala alone
    assert (mambasa["sites"], mambasa["assessed"]) == (1, 1)
    # workforce 46 women, 71 men: 46 / 117 = 0.3932
    assert mambasa["women_share_of_workforce"] == R(0.3932, 46, 117)
    assert mambasa["women_share_of_leadership"] == R(0.7143, 5, 7)
    assert mambasa["women_owned"] == {"pits": 4, "processing_units": 1, "sites": 1}
    # 3 reports in 90 days: 1 per 30 days
    assert mambasa["gbv_per_30_days"] == R(1.0, 1, 1)
    busia = coops["coop-busia-gold"]["site_indicators"]  # Tiira: 230 / 370 = 0.6216
    assert busia["women_share_of_workforce"] == R(0.6216, 230, 370)
    assert busia["women_owned"] == {"pits": 11, "processing_units": 15, "sites": 1}
    assert busia["gbv_per_30_days"] == R(3.0, 3, 1)
    kassanda = coops["coop-kassanda-diggers"]["site_indicators"]  # Kitumbi: 35 / 215
    assert kassanda["women_share_of_workforce"] == R(0.1628, 35, 215)
    assert kassanda["gbv_per_30_days"] == R(11.0, 11, 1)
    # no income figure in a sum over sites (a median of medians is not a median)
    assert "daily_income_median" not in json.dumps(coops)


def test_site_indicators_per_cooperative_with_an_unassessed_site(
    extended: tuple[MemoryLedger, Events],
) -> None:
    ledger, events = extended
    coops = by_key(gender_report(events, ledger.state)["by_cooperative"], "cooperative")
    kassanda = coops["coop-kassanda-diggers"]["site_indicators"]  # Kitumbi and Nalutuntu
    assert (kassanda["sites"], kassanda["assessed"]) == (2, 1)
    assert kassanda["gbv_per_30_days"] == R(11.0, 11, 1)
    mambasa = coops["coop-mambasa-femmes"]["site_indicators"]  # Makala and Epulu
    assert (mambasa["sites"], mambasa["assessed"]) == (2, 2)
    # 1 (Makala: 3 in 90 days) + 1 (Epulu: 2 in 60 days) = 2 per 30 days
    assert mambasa["gbv_per_30_days"] == R(2.0, 2, 1)
    assert mambasa["workforce"] == {"women": 49, "men": 111, "sites": 2}


def test_site_indicators_by_month(extended: tuple[MemoryLedger, Events]) -> None:
    # over time: each month shows the sites registered by its end, with their latest
    # assessment logged by its end
    ledger, events = extended
    months = by_key(gender_report(events, ledger.state)["by_month"], "month")
    assert list(months) == ["2026-11", "2026-12", "2027-01"]
    nov = months["2026-11"]["site_indicators"]
    # Makala, Tiira, Kitumbi (assessed 2026-10-30); Epulu and Nalutuntu come in December
    assert (nov["sites"], nov["assessed"]) == (3, 3)
    assert nov["gbv_per_30_days"] == R(15.0, 15, 1)  # 1 + 3 + 11
    assert nov["women_share_of_workforce"] == R(0.443, 311, 702)
    assert nov["women_owned"] == {"pits": 15, "processing_units": 16, "sites": 3}
    dec = months["2026-12"]["site_indicators"]
    assert (dec["sites"], dec["assessed"]) == (5, 4)
    assert dec["gbv_per_30_days"] == R(16.0, 16, 1)  # + Epulu's 2 in 60 days
    # women 311 + 3 = 314, men 391 + 40 = 431: 314 / 745 = 0.4215
    assert dec["women_share_of_workforce"] == R(0.4215, 314, 745)
    assert dec["women_share_of_leadership"] == R(0.5, 12, 24)  # Epulu assessed none
    assert months["2027-01"]["site_indicators"] == dec
    # a country filter keeps its own sites in every month: Uganda's Tiira and Kitumbi in
    # November, Nalutuntu (unassessed) from December
    ug = by_key(gender_report(events, ledger.state, country="UG")["by_month"], "month")
    assert ug["2026-11"]["site_indicators"]["gbv_per_30_days"] == R(14.0, 14, 1)
    assert (
        ug["2026-12"]["site_indicators"]["sites"],
        ug["2026-12"]["site_indicators"]["assessed"],
    ) == (3, 2)


def test_site_indicators_in_the_csv(extended: tuple[MemoryLedger, Events]) -> None:
    ledger, events = extended
    text = gender_csv(gender_report(events, ledger.state))
    rows = {(r["scope"], r["key"], r["indicator"]): r for r in csv.DictReader(io.StringIO(text))}
    assert rows[("month", "2026-12", "gbv_per_30_days")]["value"] == "16.0"
    assert rows[("month", "2026-11", "women_owned_pits")]["value"] == "15"
    gbv = rows[("cooperative", "coop-mambasa-femmes", "gbv_per_30_days")]
    assert (gbv["value"], gbv["numerator"], gbv["denominator"]) == ("2.0", "2", "1")
    share = rows[("cooperative", "coop-busia-gold", "women_share_of_workforce")]
    assert (share["value"], share["numerator"], share["denominator"]) == ("0.6216", "230", "370")


def test_gbv_trend_chart(extended: tuple[MemoryLedger, Events]) -> None:
    # the dashboard's trend lines over months include the GBV reports per 30 days across
    # the sites (Epulu's 2 in 60 days join in December: 15, then 16)
    ledger, events = extended
    gender = gender_report(events, ledger.state)
    by_id = {c.id: c for c in report_charts(gender)}
    trend = by_id["trend-gbv"]
    _check_svg(trend.svg, trend.title)
    assert trend.columns == ["Month", "Reports per 30 days"]
    assert trend.rows == [
        ["2026-11", "15 (15/1)"],
        ["2026-12", "16 (16/1)"],
        ["2027-01", "16 (16/1)"],
    ]
    assert [c.id for c in report_charts(gender)][:3] == [
        "trend-producers",
        "trend-payments",
        "trend-gbv",
    ]


def test_the_monthly_series_covers_the_period_asked_for(
    extended: tuple[MemoryLedger, Events],
) -> None:
    # from=2026-10-01 to=2027-03-31: every month of the period that the log reaches is a
    # row (October: no registration, no site assessed by its end... but the sites assessed
    # on 2026-10-30 are), up to the log's last event (2027-01-10); none after it
    ledger, events = extended
    report = gender_report(events, ledger.state, date_from="2026-10-01", date_to="2027-03-31")
    months = by_key(report["by_month"], "month")
    assert list(months) == ["2026-10", "2026-11", "2026-12", "2027-01"]
    october = months["2026-10"]
    assert october["registrations"]["lots"] == 0
    assert october["registrations"]["women_share_of_producers"] == R(None, 0, 0)
    # Makala, Tiira and Kitumbi were registered and assessed on 2026-10-30
    assert october["site_indicators"]["gbv_per_30_days"] == R(15.0, 15, 1)
    assert months["2026-11"]["registrations"]["lots"] == 4
    # a period far wider than the log gives no row outside the log's months
    wide = gender_report(events, ledger.state, date_from="1990-01-01", date_to="2099-12-31")
    wide_months = [m["month"] for m in wide["by_month"]]
    assert (wide_months[0], wide_months[-1]) == ("2026-10", "2027-01")  # the log's first, last


PROFILE_CHANGES: list[dict[str, Any]] = [
    {
        "time": "2027-01-15T09:00:00Z",
        "actor": "coop-kassanda-diggers",
        "type": "actor.updated",
        "subject": "coop-kassanda-diggers",
        "profile": {
            "women_led": True,
            "members": {"women": 40, "total": 100},
            "leaders": {"women": 4, "total": 8},
        },
    },
    {
        "time": "2027-01-20T09:00:00Z",
        "actor": "registrar-ituri",
        "type": "actor.registered",
        "subject": "coop-epulu-new",
        "key": "<generated>",
        "name": "Epulu New Cooperative (demo)",
        "roles": ["cooperative"],
        "country": "CD",
        "lot_prefix": "EPN-",
        "profile": {
            "women_led": False,
            "members": {"women": 2, "total": 30},
            "leaders": {"women": 0, "total": 5},
        },
    },
]


def test_organisations_as_of_the_end_of_the_period() -> None:
    # a report for a past period counts the organisations and profiles of that period: a
    # profile updated and a cooperative registered after `to` do not change it
    events = load_scenario()["events"] + EXTRA + PROFILE_CHANGES
    ledger, _ = factories.play_scenario(
        events, origin=ORIGIN, now=dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    )
    records = sorted(ledger.state.events.values(), key=lambda r: r.seq)
    stream = [(r.seq, r.event_id, r.body) for r in records]
    now = gender_report(stream, ledger.state)["organisations"]
    # now: busia, kassanda (women-led since 2027-01-15), mambasa, tiira, epulu-new
    assert now["count"] == 5
    assert now["women_led_share"] == R(0.8, 4, 5)
    # members 112 + 40 + 41 + 9 + 2 = 204 of 160 + 100 + 58 + 12 + 30 = 360 → 0.5667
    assert now["women_share_of_members"] == R(0.5667, 204, 360)
    past = gender_report(stream, ledger.state, date_to="2026-12-31")
    orgs = past["organisations"]
    # as on 2026-12-31: the scenario's four profiles (see test_organisations)
    assert [o["actor"] for o in orgs["items"]] == [
        "coop-busia-gold",
        "coop-kassanda-diggers",
        "coop-mambasa-femmes",
        "plant-tiira-women",
    ]
    assert orgs["women_led_share"] == R(0.75, 3, 4)
    assert orgs["women_share_of_members"] == R(0.5552, 181, 326)
    assert orgs["women_share_of_leaders"] == R(0.5556, 15, 27)
    coops = by_key(past["by_cooperative"], "cooperative")
    assert "coop-epulu-new" not in coops
    assert coops["coop-kassanda-diggers"]["organisation"]["women_led"] is False
    assert coops["coop-kassanda-diggers"]["organisation"]["members"] == {"women": 19, "total": 96}
    # the last day counts: on 2027-01-15 the update is in
    on_the_day = gender_report(stream, ledger.state, date_to="2027-01-15")["organisations"]
    assert on_the_day["women_led_share"] == R(1.0, 4, 4)
