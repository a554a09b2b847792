"""Reports and exports (issue 7): thin routes over ``ledger.reports``, ``ledger.epcis`` and
``ledger.charts``, fed from the store by ``ledger.report_queries``.

- ``GET /v1/reports/gender`` (JSON, or CSV with ``?format=csv`` / ``Accept: text/csv``),
- ``GET /v1/reports/due-diligence`` (JSON),
- ``GET /v1/export/epcis`` (EPCIS 2.0 JSON-LD), ``GET /v1/export/lots.csv``,
- ``GET /reports``: the dashboard, one self-contained HTML page (inline CSS and SVG, no
  script, nothing loaded from elsewhere) in English or French, each chart drawn on the
  server with matplotlib and followed by the table of its numbers.

Every report reads the whole log once per request, in one read snapshot. Reports show
counts, never a person; payment and income figures about fewer than 5 people are
suppressed by the pure core (PROTOCOL.md section 7), and nothing here adds any.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field

from api import i18n, schemas
from api.errors import PROBLEM_TYPE
from api.i18n import t
from api.pages import choose_language, render_error_page
from api.runtime import Runtime
from ledger.charts import Chart, report_charts
from ledger.epcis import epcis_document
from ledger.errors import SchemaError
from ledger.report_queries import GENDER_EVENT_TYPES, report_source
from ledger.reports import due_diligence_report, gender_csv, gender_report, lots_csv

CSV_TYPE = "text/csv; charset=utf-8"
JSON_LD = "application/ld+json"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")


# ---------------------------------------------------------------------------
# Response shapes (for the OpenAPI document; the pure core builds the JSON)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportRatio(_Shape):
    """An exact ratio; ``value`` is rounded to 4 decimals, null when the denominator is 0."""

    value: float | None
    numerator: int
    denominator: int


class ReportSuppressed(_Shape):
    """A payment or income figure withheld: it concerns fewer than 5 people."""

    suppressed: Literal[True]
    reason: str


class ReportWomenMen(_Shape):
    women: int
    men: int


class ReportWomenTotal(_Shape):
    women: int
    total: int


class ReportFineMg(_Shape):
    women_led: int
    total: int


class ReportPayment(_Shape):
    """Payments in one currency over registrations whose women and whose men each number 0
    or at least 5 (``to_women`` is the women's pay, ``total − to_women`` the men's)."""

    currency: str
    lots: int
    producers: int
    total_minor: int
    to_women_minor: int
    women_share_of_payments: ReportRatio
    excluded_small_groups: int


class ReportPaymentSuppressed(_Shape):
    """A currency whose every payment concerns a group of 1 to 4 women or 1 to 4 men."""

    currency: str
    suppressed: Literal[True]
    reason: str
    excluded_small_groups: int


class ReportRegistrations(_Shape):
    """Sums over ``lot.registered`` events (counts, fine gold, payments)."""

    lots: int
    women_led_lots: int
    producers: ReportWomenMen
    women_share_of_producers: ReportRatio
    fine_mg: ReportFineMg
    women_led_fine_share: ReportRatio
    payments: list[ReportPayment | ReportPaymentSuppressed]


class ReportWorkforceSum(_Shape):
    women: int
    men: int
    sites: int


class ReportLeadershipSum(_Shape):
    women: int
    total: int
    sites: int


class ReportWomenOwnedSum(_Shape):
    pits: int
    processing_units: int
    sites: int


class ReportSiteTotals(_Shape):
    """Sums of the site indicators over the sites of the report, of a cooperative, or
    registered by a month's end (no income)."""

    sites: int
    assessed: int
    workforce: ReportWorkforceSum
    women_share_of_workforce: ReportRatio
    leadership: ReportLeadershipSum
    women_share_of_leadership: ReportRatio
    women_owned: ReportWomenOwnedSum
    gbv_per_30_days: ReportRatio | None
    gbv_sites: int


class ReportOrganisation(_Shape):
    """One organisation's declared profile and its shares."""

    actor: str
    name: str
    country: str
    roles: list[str]
    status: str
    women_led: bool | None
    members: ReportWomenTotal | None
    women_share_of_members: ReportRatio | None
    leaders: ReportWomenTotal | None
    women_share_of_leaders: ReportRatio | None


class ReportOrganisations(_Shape):
    count: int
    women_led: int
    women_led_share: ReportRatio
    members: ReportWomenTotal
    women_share_of_members: ReportRatio
    leaders: ReportWomenTotal
    women_share_of_leaders: ReportRatio
    items: list[ReportOrganisation]


class ReportMoney(_Shape):
    amount_minor: int
    currency: str


class ReportDailyIncome(_Shape):
    """Median daily incomes, each shown only for at least 5 women (men) in the workforce."""

    women: ReportMoney | ReportSuppressed
    men: ReportMoney | ReportSuppressed
    gap: ReportRatio | ReportSuppressed | None


class ReportWomenOwned(_Shape):
    pits: int
    processing_units: int


class ReportGbv(_Shape):
    count: int
    period_days: int


class ReportSiteIndicators(_Shape):
    """A site's gender indicators from its latest assessment in the period."""

    workforce: ReportWomenMen | None
    women_share_of_workforce: ReportRatio | None
    leadership: ReportWomenTotal | None
    women_share_of_leadership: ReportRatio | None
    women_owned: ReportWomenOwned | None
    daily_income_median: ReportDailyIncome | None
    gbv_reports: ReportGbv | None
    gbv_per_30_days: ReportRatio | None
    mercury_exposure_pregnant: int | None
    womens_association: bool | None
    grievance_mechanism: bool | None
    scheme: str | None


class ReportAssessment(_Shape):
    event_id: str
    status: str
    assessed_on: str
    valid_until: str


class GenderReportSite(_Shape):
    site: str
    name: str
    country: str
    operator: str
    registrations: ReportRegistrations
    assessment: ReportAssessment | None
    indicators: ReportSiteIndicators | None


class GenderReportCooperative(_Shape):
    cooperative: str
    name: str | None
    country: str | None
    sites: list[str]
    registrations: ReportRegistrations
    site_indicators: ReportSiteTotals
    organisation: ReportOrganisation | None


class GenderReportMonth(_Shape):
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    registrations: ReportRegistrations
    site_indicators: ReportSiteTotals


class ReportFilters(_Shape):
    """The filters the report was computed with (null: not filtered)."""

    model_config = ConfigDict(populate_by_name=True)

    date_from: str | None = Field(alias="from")
    date_to: str | None = Field(alias="to")
    country: str | None
    site: str | None
    cooperative: str | None


class ReportSuppression(_Shape):
    min_group: int
    replacement: ReportSuppressed
    rule: str


class GenderReport(_Shape):
    """The gender report: counts only, per site, per cooperative, per month and in total."""

    report: Literal["gender"]
    filters: ReportFilters
    suppression: ReportSuppression
    definitions: dict[str, str]
    registrations: ReportRegistrations
    sites: ReportSiteTotals
    organisations: ReportOrganisations
    by_site: list[GenderReportSite]
    by_cooperative: list[GenderReportCooperative]
    by_month: list[GenderReportMonth]


class DueDiligenceByColour(_Shape):
    green: int
    yellow: int
    red: int
    blue: int


class DueDiligenceSite(_Shape):
    site: str
    name: str
    country: str
    operator: str
    status: Literal["green", "yellow", "red", "blue"]
    assessed_on: str | None
    valid_until: str | None


class DueDiligenceSites(_Shape):
    count: int
    by_colour: DueDiligenceByColour
    items: list[DueDiligenceSite]


class DueDiligenceByClass(_Shape):
    hold: int
    high: int
    medium: int


class DueDiligenceFlags(_Shape):
    total: int
    by_class: DueDiligenceByClass
    by_code: dict[str, int]


class DueDiligenceRiskMass(_Shape):
    lots: int
    mass_mg: int
    fine_mg: int


class DueDiligenceMassByRisk(_Shape):
    low: DueDiligenceRiskMass
    medium: DueDiligenceRiskMass
    high: DueDiligenceRiskMass
    hold: DueDiligenceRiskMass


class DueDiligenceByOutcome(_Shape):
    unfounded: int
    remediated: int


class DueDiligenceHours(_Shape):
    count: int
    median: float | None
    max: float | None


class DueDiligenceResolved(_Shape):
    count: int
    by_outcome: DueDiligenceByOutcome
    by_code: dict[str, int]
    hours_to_resolution: DueDiligenceHours


class DueDiligenceReport(_Shape):
    """Sites by ICGLR colour, open flags, lots on hold, mass by risk; flags raised and
    resolved in the period with the hours they took."""

    report: Literal["due_diligence"]
    today: str
    filters: ReportFilters
    definitions: dict[str, str]
    sites: DueDiligenceSites
    open_flags: DueDiligenceFlags
    lots_on_hold: list[str]
    mass_by_risk: DueDiligenceMassByRisk
    flags_raised: DueDiligenceFlags
    flags_resolved: DueDiligenceResolved


class EpcisBody(BaseModel):
    eventList: list[dict[str, Any]]


class EpcisDocument(BaseModel):
    """An EPCIS 2.0 ``EPCISDocument`` (GS1's JSON Schema describes the events)."""

    model_config = ConfigDict(populate_by_name=True)

    context: list[Any] = Field(alias="@context")
    id: str
    type: Literal["EPCISDocument"]
    schemaVersion: Literal["2.0"]
    creationDate: str
    epcisBody: EpcisBody


# ---------------------------------------------------------------------------
# Query parameters


@dataclass(frozen=True)
class Filters:
    """Validated report filters."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    country: str | None = None
    site: str | None = None
    cooperative: str | None = None

    def query(self) -> dict[str, str]:
        """The filters as query parameters (the ones set)."""
        pairs = {
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "country": self.country,
            "site": self.site,
            "cooperative": self.cooperative,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the pure reports."""
        return {
            "date_from": self.date_from,
            "date_to": self.date_to,
            "country": self.country,
            "site": self.site,
            "cooperative": self.cooperative,
        }


def _blank(value: str | None) -> str | None:
    """An empty parameter (``?from=``, as an HTML form sends it) counts as absent."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _date(name: str, value: str | None) -> dt.date | None:
    value = _blank(value)
    if value is None:
        return None
    try:
        if not _DAY.match(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise SchemaError(
            f"{name}: {value[:20]!r} is not a date; write it as YYYY-MM-DD, like 2026-11-01."
        ) from None


def period(date_from: str | None, date_to: str | None) -> tuple[dt.date | None, dt.date | None]:
    """``from`` and ``to`` as dates; SchemaError for a bad date or ``from`` after ``to``."""
    start, end = _date("from", date_from), _date("to", date_to)
    if start is not None and end is not None and start > end:
        raise SchemaError(f"from ({start}) is after to ({end}): the period would be empty.")
    return start, end


def parse_filters(
    date_from: str | None = None,
    date_to: str | None = None,
    country: str | None = None,
    site: str | None = None,
    cooperative: str | None = None,
) -> Filters:
    """Validate the report filters. Raises SchemaError (422 ``schema``) for a bad value."""
    start, end = period(date_from, date_to)
    code = _blank(country)
    if code is not None:
        code = code.upper()
        if not _COUNTRY.match(code):
            raise SchemaError(
                f"country: {code[:20]!r} is not an ISO 3166-1 alpha-2 code, like CD or UG."
            )
    ids: dict[str, str | None] = {"site": _blank(site), "cooperative": _blank(cooperative)}
    for name, value in ids.items():
        if value is not None and not _ID.match(value):
            raise SchemaError(
                f"{name}: {value[:70]!r} is not an id (3 to 64 lower-case letters, digits or "
                "hyphens)."
            )
    return Filters(start, end, code, ids["site"], ids["cooperative"])


_FROM = Query(
    alias="from",
    description="first day of the period (UTC date, inclusive), YYYY-MM-DD",
    examples=["2026-11-01"],
    json_schema_extra={"format": "date"},
)
_TO = Query(
    alias="to",
    description="last day of the period (UTC date, inclusive), YYYY-MM-DD; not before `from`",
    examples=["2026-11-30"],
    json_schema_extra={"format": "date"},
)
_COUNTRY_Q = Query(description="ISO 3166-1 alpha-2 country of the sites", examples=["UG"])
_SITE_Q = Query(description="one site id", examples=["site-busia-tiira"])
_COOP_Q = Query(description="one cooperative (actor id)", examples=["coop-busia-gold"])


def _filters(
    date_from: Annotated[str | None, _FROM] = None,
    date_to: Annotated[str | None, _TO] = None,
    country: Annotated[str | None, _COUNTRY_Q] = None,
    site: Annotated[str | None, _SITE_Q] = None,
    cooperative: Annotated[str | None, _COOP_Q] = None,
) -> Filters:
    return parse_filters(date_from, date_to, country, site, cooperative)


FiltersDep = Annotated[Filters, Depends(_filters)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _media_ranges(accept: str | None) -> list[tuple[str, str, float]]:
    ranges: list[tuple[str, str, float]] = []
    for part in (accept or "").split(",")[:32]:
        kind, *params = (p.strip() for p in part.split(";"))
        main, _, sub = kind.lower().partition("/")
        if not main or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((main, sub, q))
    return ranges


def negotiate(accept: str | None, offers: Sequence[str]) -> str:
    """The offer the ``Accept`` header prefers (the most specific range that matches each
    offer gives its q); a tie, no header or nothing acceptable gives the first offer."""
    ranges = _media_ranges(accept)
    best, best_q = offers[0], 0.0
    for offer in offers:
        main, _, sub = offer.partition("/")
        found: tuple[int, float] = (0, 0.0)
        for r_main, r_sub, q in ranges:
            if (r_main, r_sub) == (main, sub):
                rank = 3
            elif (r_main, r_sub) == (main, "*"):
                rank = 2
            elif (r_main, r_sub) == ("*", "*"):
                rank = 1
            else:
                continue
            found = max(found, (rank, q))
        if found[1] > best_q:
            best, best_q = offer, found[1]
    return best


def _format(requested: str | None, accept: str | None, allowed: Sequence[str]) -> str:
    """``json`` or ``csv``: ``?format=`` when given (422 if not allowed), else ``Accept``."""
    requested = _blank(requested)
    if requested is not None:
        if requested.lower() not in allowed:
            raise SchemaError(f"format: {requested[:20]!r} is not one of {', '.join(allowed)}.")
        return requested.lower()
    if "csv" in allowed and negotiate(accept, ["application/json", "text/csv"]) == "text/csv":
        return "csv"
    return "json"


# ---------------------------------------------------------------------------
# The reports, computed in one snapshot


def compute_reports(
    runtime: Runtime, filters: Filters, *, gender: bool = True, due_diligence: bool = True
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, int]:
    """The gender and/or due-diligence reports and the log's size, from one read snapshot.

    The gender report reads the four event types it uses; the due-diligence report reads
    the whole log (any lot event can raise a flag). Site colours are as of today.
    """
    with report_source(runtime.store) as source:
        sites = source.sites()
        g = (
            gender_report(
                source.events(GENDER_EVENT_TYPES),
                source.state,
                sites=sites,
                actors=source.actors(),
                **filters.kwargs(),
            )
            if gender
            else None
        )
        dd = (
            due_diligence_report(
                source.events(),
                source.state,
                today=runtime.today(),
                sites=sites,
                lots=source.lots(),
                **filters.kwargs(),
            )
            if due_diligence
            else None
        )
        return g, dd, source.size()


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # the same shape as api.app._problem_responses (not imported: api.app imports us)
    return {
        status: {
            "model": schemas.Problem,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "A problem (RFC 9457) with a machine `code`; 422 `schema` for a "
            "bad date, `from` after `to`, a bad country, id or format.",
        }
        for status in statuses
    }


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


_CSV_DOC = {"schema": {"type": "string"}}
_FORMAT_Q = Query(
    alias="format",
    description="`json` (default) or `csv`; without it the `Accept` header chooses "
    "(`text/csv` for CSV)",
    examples=["csv"],
)

router = APIRouter()


@router.get(
    "/v1/reports/gender",
    name="gender_report",
    response_class=Response,
    responses={
        200: {
            "model": GenderReport,
            "description": "The gender report as JSON, or as long-format CSV (one indicator "
            "per row: scope, key, indicator, currency, value, numerator, denominator, "
            "suppressed).",
            "content": {"text/csv": _CSV_DOC},
        },
        **_problems(422),
    },
    summary="Gender report: per site, per cooperative and monthly; counts only",
)
def get_gender_report(
    request: Request,
    runtime: RuntimeDep,
    filters: FiltersDep,
    format_: Annotated[str | None, _FORMAT_Q] = None,
) -> Response:
    """Counts, shares and fine gold from the registrations, the sites' assessed indicators
    and the organisations' profiles. A payment or income figure about fewer than 5 people
    is never shown: it is replaced by ``{"suppressed": true, …}`` (PROTOCOL.md section 7).
    """
    kind = _format(format_, request.headers.get("accept"), ("json", "csv"))
    report, _, _ = compute_reports(runtime, filters, due_diligence=False)
    assert report is not None
    headers = {"Vary": "Accept"}
    if kind == "csv":
        return Response(
            gender_csv(report),
            media_type=CSV_TYPE,
            headers=headers | _attachment("goldtrail-gender-report.csv"),
        )
    return JSONResponse(report, headers=headers)


@router.get(
    "/v1/reports/due-diligence",
    name="due_diligence_report",
    response_class=Response,
    responses={
        200: {
            "model": DueDiligenceReport,
            "description": "The due-diligence report (JSON).",
        },
        **_problems(422),
    },
    summary="Due-diligence report: site colours, open flags, holds, mass by risk, resolutions",
)
def get_due_diligence_report(
    runtime: RuntimeDep,
    filters: FiltersDep,
    format_: Annotated[
        str | None,
        Query(alias="format", description="`json` (the only format of this report)"),
    ] = None,
) -> Response:
    """Sites by ICGLR colour today, open flags by class and code, lots on hold and the mass
    of lots in hand by risk class; over the period, the flags raised and resolved, and the
    hours from each flag to its resolution. Filters select lots by their origin sites."""
    _format(format_, None, ("json",))
    _, report, _ = compute_reports(runtime, filters, gender=False)
    return JSONResponse(report)


@router.get(
    "/v1/export/epcis",
    name="export_epcis",
    response_class=Response,
    responses={
        200: {
            "model": EpcisDocument,
            "description": "An EPCIS 2.0 EPCISDocument of the lot events in the period, as "
            "JSON-LD (application/json when that is what the client asks for).",
            "content": {JSON_LD: {"schema": {"$ref": "#/components/schemas/EpcisDocument"}}},
        },
        **_problems(422),
    },
    summary="The lot events as an EPCIS 2.0 JSON-LD document",
)
def export_epcis(
    request: Request,
    runtime: RuntimeDep,
    date_from: Annotated[str | None, _FROM] = None,
    date_to: Annotated[str | None, _TO] = None,
) -> Response:
    """Every ``lot.*`` event whose UTC date is within the period, in log order, mapped to
    EPCIS 2.0 (see ``ledger/epcis.py``); no payment or price is exported."""
    start, end = period(date_from, date_to)
    created = runtime.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with report_source(runtime.store) as source:
        document = epcis_document(
            source.events(),
            source.state,
            base_uri=runtime.settings.public_url,
            created=created,
            date_from=start,
            date_to=end,
            lots=source.lots(),
        )
    media = negotiate(request.headers.get("accept"), [JSON_LD, "application/json"])
    return JSONResponse(document, media_type=media, headers={"Vary": "Accept"})


@router.get(
    "/v1/export/lots.csv",
    name="export_lots_csv",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": _CSV_DOC},
            "description": "One row per lot, in creation order: lot, status, custodian, form, "
            "mass_mg, fineness_ppm, risk, hold, origins, women, men, women_led_fine_mg, "
            "origin_fine_mg, destination, head, country (the custodian's), exported, "
            "open_flags (codes), resolved_flags (code:outcome); lists joined by ';'.",
        },
    },
    summary="Every lot as CSV",
)
def export_lots_csv(runtime: RuntimeDep) -> Response:
    """Every lot's current state with its gender summary (counts and fine gold only)."""
    with report_source(runtime.store) as source:
        text = lots_csv(source.lots(), source.state)
    return Response(text, media_type=CSV_TYPE, headers=_attachment("goldtrail-lots.csv"))


# ---------------------------------------------------------------------------
# The dashboard

_env = Environment(
    loader=PackageLoader("api", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: chart id → i18n key of its title
CHART_TITLES = {
    "trend-producers": "reports.chart.trend_producers",
    "trend-payments": "reports.chart.trend_payments",
    "trend-gbv": "reports.chart.trend_gbv",
    "site-shares": "reports.chart.site_shares",
    "site-owned": "reports.chart.site_owned",
    "site-income-gap": "reports.chart.site_income_gap",
    "site-gbv": "reports.chart.site_gbv",
    "org-shares": "reports.chart.org_shares",
    "dd-colours": "reports.chart.dd_colours",
    "dd-mass": "reports.chart.dd_mass",
    "dd-flags": "reports.chart.dd_flags",
}
#: the English series and column names ``ledger.charts`` writes → i18n key (table heads)
SERIES = {
    "Women's share of producers": "reports.series.women_share",
    "Fine gold from women-led teams": "reports.series.women_led_fine",
    "Producers (registrations)": "reports.series.producers",
    "Workforce (assessment)": "reports.series.workforce",
    "Fine gold, women-led teams": "reports.series.women_led_fine",
    "Pits": "reports.series.pits",
    "Processing units": "reports.series.units",
    "Income gap": "reports.series.income_gap",
    "Reports per 30 days": "reports.series.gbv",
    "Sites": "reports.series.sites",
    "Mass (g)": "reports.series.mass",
    "Open flags": "reports.series.open_flags",
    "Women, median per day": "reports.series.income_women",
    "Men, median per day": "reports.series.income_men",
    "Women among members": "reports.series.members",
    "Women among leaders": "reports.series.leaders",
    "Led by a woman": "reports.series.women_led",
    "Month": "reports.column.month",
    "Organisation": "reports.column.organisation",
    "Site": "reports.column.site",
    "Colour": "reports.column.colour",
    "Risk": "reports.column.risk",
    "Code": "reports.column.code",
}
#: shorter names for the legends inside the SVG, where a longer text would be cut off
LEGEND = {
    "Women's share of producers": "reports.legend.women_share",
    "Fine gold from women-led teams": "reports.legend.women_led_fine",
    "Fine gold, women-led teams": "reports.legend.women_led_fine",
    "Producers (registrations)": "reports.legend.producers",
    "Processing units": "reports.legend.units",
    "Reports per 30 days": "reports.legend.gbv",
    "Women among members": "reports.legend.members",
    "Women among leaders": "reports.legend.leaders",
}
_COLOUR_KEYS = {c: f"site.{c}" for c in ("green", "yellow", "red", "blue")}
_RISK_KEYS = {r: f"risk.{r}" for r in ("low", "medium", "high", "hold")}
_TEXT = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")
_TITLE = re.compile(r'(<title id="[^"]*">)([^<]*)(</title>)')
_DESC = re.compile(r'(<desc id="[^"]*">)([^<]*)(</desc>)')
_FRACTION = re.compile(r"^(?P<value>.+) \((?P<num>-?\d+)/(?P<den>\d+)\)$")
_MONEY = re.compile(r"^(?P<minor>-?\d+) (?P<currency>[A-Z]{3})$")
_YES_NO = {"yes": "reports.yes", "no": "reports.no"}
_DECIMAL_POINT = re.compile(r"(\d)\.(\d)")


@dataclass
class Cell:
    """A table cell: the value as shown, the exact fraction under it, or suppressed."""

    text: str
    detail: str = ""
    suppressed: bool = False


@dataclass
class PageChart:
    """A chart on the dashboard: heading, SVG and the table of its numbers."""

    id: str
    title: str
    svg: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]

    @property
    def suppressed(self) -> bool:
        """Whether a cell of the table is suppressed (the page then says why)."""
        return any(c.suppressed for _, cells in self.rows for c in cells)


@dataclass
class Fact:
    label: str
    values: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class Dashboard:
    lang: str
    title: str
    intro: str
    period: str
    filters: list[str]
    form: dict[str, str]
    downloads: list[dict[str, str]]
    facts: list[Fact]
    gender_charts: list[PageChart]
    dd_charts: list[PageChart]
    languages: list[dict[str, Any]]
    generated: str


def _replace_text(svg: str, mapping: Mapping[str, str], pattern: re.Pattern[str]) -> str:
    def swap(match: re.Match[str]) -> str:
        text = html.unescape(match.group(2))
        if text not in mapping:
            return match.group(0)
        return match.group(1) + html.escape(mapping[text], quote=False) + match.group(3)

    return pattern.sub(swap, svg)


def _translate_chart(lang: str, chart: Chart) -> PageChart:
    """A chart of ``ledger.charts`` in ``lang``: the SVG's texts and accessible name, and
    its table with readable numbers.

    ``ledger.charts`` writes English. The chart's own strings (title, legends, colour and
    risk labels, "no data") are replaced in the SVG's text nodes; legends have short
    translations that fit where the English was laid out. Data (site names, months,
    codes) stay as they are.
    """
    title = t(lang, CHART_TITLES[chart.id]) if chart.id in CHART_TITLES else chart.title
    labels: dict[str, str] = {}
    if chart.id == "dd-colours":
        labels = {k: t(lang, v) for k, v in _COLOUR_KEYS.items()}
    elif chart.id == "dd-mass":
        labels = {k: t(lang, v) for k, v in _RISK_KEYS.items()}
    columns = [t(lang, SERIES[c]) if c in SERIES else c for c in chart.columns]
    rows = [(labels.get(row[0], row[0]), [_cell(lang, c) for c in row[1:]]) for row in chart.rows]
    texts = {chart.title: title, "no data": t(lang, "reports.no_data"), **labels}
    for name in chart.columns[1:]:
        key = LEGEND.get(name) or SERIES.get(name)
        if key is not None:
            texts[name] = t(lang, key)
    svg = _replace_text(chart.svg, texts, _TEXT)
    svg = _replace_text(svg, {chart.title: title}, _TITLE)
    desc = t(lang, "reports.chart_desc", title=title, series=", ".join(columns[1:]) or "–")
    escaped = html.escape(desc, quote=False)
    svg = _DESC.sub(lambda m: m.group(1) + escaped + m.group(3), svg, count=1)
    return PageChart(chart.id, title, svg, columns, rows)


def _number(lang: str, text: str) -> str:
    """``66.7 %`` / ``66,7 %`` (decimal comma in French, no break before %)."""
    if lang == "fr":
        text = _DECIMAL_POINT.sub(r"\1,\2", text)
    return text.replace(" %", f"{i18n.NBSP}%")


def _cell(lang: str, cell: str) -> Cell:
    """A table cell of ``ledger.charts`` (``66.7 % (132000000/198000000)``, ``suppressed``,
    ``450 USD`` (minor units, shown as money), ``yes`` / ``no``,
    ``–``, ``44.8``) as shown on the page: the value, and the exact fraction under it."""
    if cell == "suppressed":
        return Cell(t(lang, "reports.suppressed"), suppressed=True)
    if cell in _YES_NO:
        return Cell(t(lang, _YES_NO[cell]))
    money = _MONEY.match(cell)
    if money is not None:  # ``450 USD``: minor units
        return Cell(i18n.money(lang, int(money.group("minor")), money.group("currency")))
    match = _FRACTION.match(cell)
    if match is None:
        return Cell(_number(lang, cell))
    num, den = int(match.group("num")), int(match.group("den"))
    detail = f"{i18n.integer(lang, num)} / {i18n.integer(lang, den)}"
    return Cell(_number(lang, match.group("value")), detail)


def _pct(lang: str, ratio: Mapping[str, Any] | None) -> str:
    if ratio is None or ratio.get("value") is None:
        return "–"
    text = f"{float(ratio['value']) * 100:.1f}"
    if lang == "fr":
        text = text.replace(".", ",")
    return f"{text}{i18n.NBSP}%"


def _hours(lang: str, hours: float | None) -> str:
    if hours is None:
        return "–"
    text = f"{hours:.1f}".removesuffix(".0")
    if lang == "fr":
        text = text.replace(".", ",")
    return t(lang, "reports.hours", n=text)


def _facts(lang: str, gender: Mapping[str, Any], dd: Mapping[str, Any]) -> list[Fact]:
    n = i18n.integer
    reg = gender["registrations"]
    facts = [
        Fact(
            t(lang, "reports.fact.lots"),
            [
                t(
                    lang,
                    "reports.fact.lots_value",
                    lots=n(lang, reg["lots"]),
                    women_led=n(lang, reg["women_led_lots"]),
                )
            ],
        ),
        Fact(
            t(lang, "reports.fact.producers"),
            [
                t(
                    lang,
                    "reports.fact.producers_value",
                    women=n(lang, reg["producers"]["women"]),
                    men=n(lang, reg["producers"]["men"]),
                    share=_pct(lang, reg["women_share_of_producers"]),
                )
            ],
        ),
        Fact(
            t(lang, "reports.fact.fine"),
            [
                t(
                    lang,
                    "reports.fact.fine_value",
                    share=_pct(lang, reg["women_led_fine_share"]),
                    women_led=i18n.short_mass(lang, reg["fine_mg"]["women_led"]),
                    total=i18n.short_mass(lang, reg["fine_mg"]["total"]),
                )
            ],
        ),
    ]
    payments = []
    for p in reg["payments"]:
        if p.get("suppressed"):
            payments.append(t(lang, "reports.fact.payment_withheld", currency=p["currency"]))
        else:
            payments.append(
                t(
                    lang,
                    "reports.fact.payment_value",
                    currency=p["currency"],
                    share=_pct(lang, p["women_share_of_payments"]),
                    producers=n(lang, p["producers"]),
                )
            )
    excluded = sum(p["excluded_small_groups"] for p in reg["payments"])
    facts.append(
        Fact(
            t(lang, "reports.fact.payments"),
            payments or [t(lang, "reports.fact.no_payments")],
            t(lang, "reports.fact.excluded", n=n(lang, excluded)) if excluded else None,
        )
    )
    orgs = gender["organisations"]
    share = orgs["women_led_share"]
    if orgs["count"]:
        org_lines = [
            t(
                lang,
                "reports.fact.orgs_value",
                women_led=n(lang, share["numerator"]),
                known=n(lang, share["denominator"]),
                share=_pct(lang, share),
            )
        ]
        for group in ("members", "leaders"):
            if orgs[group]["total"]:
                org_lines.append(
                    t(
                        lang,
                        f"reports.fact.orgs_{group}",
                        share=_pct(lang, orgs[f"women_share_of_{group}"]),
                        women=n(lang, orgs[group]["women"]),
                        total=n(lang, orgs[group]["total"]),
                    )
                )
    else:
        org_lines = [t(lang, "reports.fact.orgs_none")]
    facts.append(Fact(t(lang, "reports.fact.orgs"), org_lines))
    colours = dd["sites"]["by_colour"]
    facts.append(
        Fact(
            t(lang, "reports.fact.sites"),
            [", ".join(f"{t(lang, f'site.{c}')} {n(lang, k)}" for c, k in colours.items())],
        )
    )
    flags = dd["open_flags"]
    facts.append(
        Fact(
            t(lang, "reports.fact.open_flags"),
            [
                t(
                    lang,
                    "reports.fact.open_flags_value",
                    total=n(lang, flags["total"]),
                    **{c: n(lang, v) for c, v in flags["by_class"].items()},
                )
            ],
        )
    )
    facts.append(
        Fact(
            t(lang, "reports.fact.on_hold"),
            [", ".join(dd["lots_on_hold"]) or t(lang, "reports.fact.none")],
        )
    )
    resolved = dd["flags_resolved"]
    hours = resolved["hours_to_resolution"]
    facts.append(
        Fact(
            t(lang, "reports.fact.resolved"),
            [
                t(
                    lang,
                    "reports.fact.resolved_value",
                    count=n(lang, resolved["count"]),
                    median=_hours(lang, hours["median"]),
                    max=_hours(lang, hours["max"]),
                )
                if hours["count"]
                else n(lang, resolved["count"])
            ],
        )
    )
    return facts


_CHART_CACHE: OrderedDict[str, list[Chart]] = OrderedDict()
_CHART_CACHE_SIZE = 32
_CHART_LOCK = threading.Lock()


def _charts(gender: Mapping[str, Any], dd: Mapping[str, Any]) -> list[Chart]:
    """``report_charts`` of the two reports, remembered for the last few distinct inputs.

    Drawing takes most of a page's time; the same reports (a reload, or filters that
    select the same data) give the same charts, so they are drawn once. The key is the
    reports' content (all of it but the filters), so nothing stale can be served.
    """
    data = [
        {k: v for k, v in gender.items() if k != "filters"},
        {k: v for k, v in dd.items() if k not in ("filters", "today")},
    ]
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    with _CHART_LOCK:
        if key in _CHART_CACHE:
            _CHART_CACHE.move_to_end(key)
            return _CHART_CACHE[key]
    charts = report_charts(gender, dd)
    with _CHART_LOCK:
        _CHART_CACHE[key] = charts
        while len(_CHART_CACHE) > _CHART_CACHE_SIZE:
            _CHART_CACHE.popitem(last=False)
    return charts


def _with_query(path: str, params: Mapping[str, str]) -> str:
    return path + ("?" + urlencode(params) if params else "")


def render_dashboard(
    lang: str,
    gender: Mapping[str, Any],
    dd: Mapping[str, Any],
    filters: Filters,
    *,
    origin: str,
    size: int,
) -> str:
    """The dashboard page for the two reports, as one self-contained HTML document."""
    lang = i18n.language(lang)
    charts = [_translate_chart(lang, c) for c in _charts(gender, dd)]
    query = filters.query()
    if filters.date_from and filters.date_to:
        when = t(
            lang,
            "reports.period.range",
            start=i18n.date(lang, query["from"]),
            end=i18n.date(lang, query["to"]),
        )
    elif filters.date_from:
        when = t(lang, "reports.period.from", start=i18n.date(lang, query["from"]))
    elif filters.date_to:
        when = t(lang, "reports.period.to", end=i18n.date(lang, query["to"]))
    else:
        when = t(lang, "reports.period.all")
    chosen = []
    if filters.country:
        chosen.append(
            t(lang, "reports.filter.country", country=i18n.country(lang, filters.country))
        )
    if filters.site:
        chosen.append(t(lang, "reports.filter.site", site=filters.site))
    if filters.cooperative:
        chosen.append(t(lang, "reports.filter.cooperative", cooperative=filters.cooperative))

    def link(path: str, **extra: str) -> str:
        return _with_query(path, {**query, **extra})

    downloads = [
        {"href": link("/v1/reports/gender"), "text": t(lang, "reports.download.gender_json")},
        {
            "href": link("/v1/reports/gender", format="csv"),
            "text": t(lang, "reports.download.gender_csv"),
        },
        {
            "href": link("/v1/reports/due-diligence"),
            "text": t(lang, "reports.download.dd_json"),
        },
        {
            "href": _with_query(
                "/v1/export/epcis", {k: query[k] for k in ("from", "to") if k in query}
            ),
            "text": t(lang, "reports.download.epcis"),
        },
        {"href": "/v1/export/lots.csv", "text": t(lang, "reports.download.lots_csv")},
    ]
    languages = [
        {
            "code": code,
            "name": t(code, "page.lang_name"),
            "href": "?" + urlencode({**query, "lang": code}),
            "current": code == lang,
        }
        for code in i18n.LANGUAGES
    ]
    page = Dashboard(
        lang=lang,
        title=t(lang, "reports.title"),
        intro=t(lang, "reports.intro", origin=origin, size=i18n.integer(lang, size)),
        period=when,
        filters=chosen,
        form={
            "from": query.get("from", ""),
            "to": query.get("to", ""),
            "country": filters.country or "",
            "site": filters.site or "",
            "cooperative": filters.cooperative or "",
        },
        downloads=downloads,
        facts=_facts(lang, gender, dd),
        gender_charts=[c for c in charts if not c.id.startswith("dd-")],
        dd_charts=[c for c in charts if c.id.startswith("dd-")],
        languages=languages,
        generated=t(lang, "reports.generated", date=i18n.date(lang, str(dd["today"]))),
    )

    def translate(key: str, **values: object) -> str:
        return t(lang, key, **values)

    return _env.get_template("reports.html").render(lang=lang, page=page, t=translate)


@router.get(
    "/reports",
    name="reports_page",
    response_class=HTMLResponse,
    responses={422: {"content": {"text/html": {}}, "description": "Filters that cannot be used."}},
    summary="The reports dashboard (HTML, English or French)",
)
def reports_page(
    request: Request,
    runtime: RuntimeDep,
    date_from: Annotated[str | None, _FROM] = None,
    date_to: Annotated[str | None, _TO] = None,
    country: Annotated[str | None, _COUNTRY_Q] = None,
    site: Annotated[str | None, _SITE_Q] = None,
    cooperative: Annotated[str | None, _COOP_Q] = None,
    lang: Annotated[
        str | None, Query(description="`en` or `fr` (else `Accept-Language` chooses)")
    ] = None,
) -> HTMLResponse:
    """The gender and due-diligence reports as charts (SVG drawn on the server), each with
    the table of its numbers; one self-contained page, readable on a phone."""
    language = choose_language(request.headers.get("accept-language"), (lang or "")[:16])
    try:
        filters = parse_filters(date_from, date_to, country, site, cooperative)
    except SchemaError as e:
        page = render_error_page(
            language,
            t(language, "reports.bad_filters.title"),
            t(language, "reports.bad_filters.detail", detail=e.detail),
        )
        return HTMLResponse(page, status_code=422)
    gender, dd, size = compute_reports(runtime, filters)
    assert gender is not None and dd is not None
    page = render_dashboard(language, gender, dd, filters, origin=runtime.store.origin, size=size)
    return HTMLResponse(page, headers={"Vary": "Accept-Language"})
