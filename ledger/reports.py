"""Gender and due-diligence reports, and the CSV exports, computed from the log and the state.

Pure functions: no web, no database, no clock. A report reads

- ``events``: the accepted events as ``(seq, event_id, body)`` in log order (a store can
  stream them from the log; each function makes one pass and keeps only aggregates), and
- ``state``: anything with ``.actor(id)``, ``.site(id)`` and ``.lot(id)`` (``MemoryState``,
  the SQL store); the lists of actors, sites and lots come from the explicit ``actors``,
  ``sites`` and ``lots`` arguments when given, else from the ids the event stream names.

Reports show **counts, never a person**. Ratios are exact fractions, shown as
``{"value": <number rounded to 4 decimals, or null when the denominator is 0>,
"numerator": <int>, "denominator": <int>}`` (reports are not signed data: floats are fine).

Small-group suppression (PROTOCOL.md section 7: pages and reports show a payment or income
figure only when it concerns a group of at least 5 people):

- A registration's ``payment`` concerns two groups: ``to_women`` is the pay of the team's
  women, and ``total − to_women`` (two shown figures) that of its men. A registration
  enters the payment figures only when each of the two groups is absent (0 people) or has
  at least ``MIN_GROUP`` people; otherwise (1 woman and 7 men, say) it never enters any
  payment figure: not a total, not a share, not an aggregate over a site, a cooperative, a
  month or the whole report. It is only counted in ``excluded_small_groups``. So every
  payment figure shown is a sum over groups that each have at least 5 people, and no
  subtraction of two shown figures can reveal a small group's payment (an aggregate that
  merely totals 5 people or more would let "site total − month total" give a small group
  away).
- A per-currency payment entry with nothing left to show is replaced by
  ``{"currency": …, "suppressed": true, "reason": "fewer than 5 people", …}``.
- A site's median daily income for women (men) concerns the women (men) of the site's
  ``workforce``; it is replaced by ``{"suppressed": true, "reason": …}`` when that count is
  below 5 or unknown (no ``workforce``). The gap is shown only when both medians are shown
  and are in the same currency. Medians are never aggregated across sites (a median of
  medians is not a median, and sites pay in different currencies).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, cast

from ledger.events import FLAG_CLASS, FlagCode
from ledger.state import ActorState, LotState, SiteState, StateReader, gender_summary

__all__ = [
    "COLOURS",
    "GENDER_CSV_COLUMNS",
    "LOTS_CSV_COLUMNS",
    "MIN_GROUP",
    "RISK_CLASSES",
    "SUPPRESSED",
    "LogEvent",
    "StateLookup",
    "due_diligence_report",
    "events_from_entries",
    "gender_csv",
    "gender_report",
    "lots_csv",
    "ratio",
]

#: the smallest group of people whose payment or income figure a report may show
MIN_GROUP = 5
#: what replaces a payment or income figure about fewer than ``MIN_GROUP`` people
SUPPRESSED: dict[str, Any] = {"suppressed": True, "reason": "fewer than 5 people"}
#: ICGLR site colours, in report order
COLOURS = ("green", "yellow", "red", "blue")
#: lot risk classes, lowest first
RISK_CLASSES = ("low", "medium", "high", "hold")
FLAG_CLASSES = ("hold", "high", "medium")
OUTCOMES = ("unfounded", "remediated")

#: one accepted event: ``(seq, event_id, body)``
LogEvent = tuple[int, str, Mapping[str, Any]]


class StateLookup(Protocol):
    """The part of ``ledger.state.StateReader`` the reports read."""

    def actor(self, actor_id: str) -> ActorState | None:
        """The actor, or None."""

    def site(self, site_id: str) -> SiteState | None:
        """The site, or None."""

    def lot(self, lot_id: str) -> LotState | None:
        """The lot, or None."""


def events_from_entries(entries: Iterable[Mapping[str, Any]]) -> Iterator[LogEvent]:
    """``(seq, event_id, body)`` from log entries shaped ``{seq, event_id, envelope, …}``
    (as ``GET /v1/log/entries`` and the store's ``entries`` give them), lazily."""
    for entry in entries:
        yield int(entry["seq"]), str(entry["event_id"]), entry["envelope"]["body"]


# ---------------------------------------------------------------------------
# Small helpers


def ratio(numerator: int | Fraction, denominator: int | Fraction = 1) -> dict[str, Any]:
    """An exact ratio as ``{value, numerator, denominator}``, value rounded to 4 decimals.

    With integers the raw numerator and denominator are kept as given (not reduced); a
    ``Fraction`` numerator (with denominator 1) is shown in lowest terms. ``value`` is null
    when the denominator is 0.
    """
    if isinstance(numerator, Fraction) or isinstance(denominator, Fraction):
        exact = Fraction(numerator) / Fraction(denominator) if denominator else None
        num = exact.numerator if exact is not None else int(numerator)
        den = exact.denominator if exact is not None else 0
    else:
        num, den = numerator, denominator
        exact = Fraction(num, den) if den else None
    value = None if exact is None else float(round(exact, 4))
    return {"value": value, "numerator": num, "denominator": den}


def filter_day(value: dt.date | str | None) -> str | None:
    """A filter date as ``YYYY-MM-DD`` (ISO dates compare as strings)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(value).isoformat()


def _in_period(time: str, date_from: str | None, date_to: str | None) -> bool:
    """True if the UTC date of ``time`` is within ``[date_from, date_to]`` (inclusive)."""
    day = time[:10]
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


def _seconds(time: str) -> int:
    """A protocol timestamp (``…Z``, whole seconds) as seconds since the epoch."""
    return int(dt.datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp())


def _months(first: str, last: str) -> list[str]:
    """Every month ``YYYY-MM`` from ``first`` to ``last`` inclusive."""
    year, month = int(first[:4]), int(first[5:7])
    out: list[str] = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _filters(
    date_from: str | None,
    date_to: str | None,
    country: str | None,
    site: str | None,
    cooperative: str | None,
) -> dict[str, Any]:
    return {
        "from": date_from,
        "to": date_to,
        "country": country,
        "site": site,
        "cooperative": cooperative,
    }


# ---------------------------------------------------------------------------
# Gender report: registration aggregates


def _payment_shown(women: int, men: int) -> bool:
    """Whether a registration's payment may enter a figure: its women (whose pay is
    ``to_women``) and its men (``total − to_women``) are each none or at least 5."""
    return all(n == 0 or n >= MIN_GROUP for n in (women, men)) and women + men >= MIN_GROUP


@dataclass
class _Money:
    """Payments in one currency over registrations whose women and men each number 0 or ≥ 5."""

    lots: int = 0
    people: int = 0
    total: int = 0
    to_women: int = 0
    excluded: int = 0  # registrations left out: 1 to 4 women or 1 to 4 men

    def render(self, currency: str) -> dict[str, Any]:
        if self.lots == 0:
            return {"currency": currency, **SUPPRESSED, "excluded_small_groups": self.excluded}
        return {
            "currency": currency,
            "lots": self.lots,
            "producers": self.people,
            "total_minor": self.total,
            "to_women_minor": self.to_women,
            "women_share_of_payments": ratio(self.to_women, self.total),
            "excluded_small_groups": self.excluded,
        }


@dataclass
class _Registrations:
    """Running sums over ``lot.registered`` bodies."""

    lots: int = 0
    women_led_lots: int = 0
    women: int = 0
    men: int = 0
    fine_women_led: int = 0  # Σ mass_mg × fineness_ppm, women-led teams
    fine_total: int = 0  # Σ mass_mg × fineness_ppm
    payments: dict[str, _Money] = field(default_factory=dict)

    def add(self, body: Mapping[str, Any]) -> None:
        producers = body["producers"]
        women, men = int(producers["women"]), int(producers["men"])
        fine = int(body["mass_mg"]) * int(body["fineness_ppm"])
        self.lots += 1
        self.women += women
        self.men += men
        self.fine_total += fine
        if producers.get("women_led", False):
            self.women_led_lots += 1
            self.fine_women_led += fine
        payment = body.get("payment")
        if payment is not None:
            money = self.payments.setdefault(payment["total"]["currency"], _Money())
            if not _payment_shown(women, men):
                money.excluded += 1
            else:
                money.lots += 1
                money.people += women + men
                money.total += int(payment["total"]["amount_minor"])
                money.to_women += int(payment["to_women"]["amount_minor"])

    def render(self) -> dict[str, Any]:
        women_led_mg, total_mg = self.fine_women_led // 10**6, self.fine_total // 10**6
        return {
            "lots": self.lots,
            "women_led_lots": self.women_led_lots,
            "producers": {"women": self.women, "men": self.men},
            "women_share_of_producers": ratio(self.women, self.women + self.men),
            "fine_mg": {"women_led": women_led_mg, "total": total_mg},
            "women_led_fine_share": ratio(women_led_mg, total_mg),
            "payments": [m.render(cur) for cur, m in sorted(self.payments.items())],
        }


# ---------------------------------------------------------------------------
# Gender report: site and organisation indicators


def _money_or_suppressed(money: Mapping[str, Any], people: int | None) -> dict[str, Any]:
    if people is None or people < MIN_GROUP:
        return dict(SUPPRESSED)
    return {"amount_minor": int(money["amount_minor"]), "currency": money["currency"]}


def _site_indicators(ind: Mapping[str, Any]) -> dict[str, Any]:
    """One site's gender indicators from its assessment's signed indicator fields."""
    out: dict[str, Any] = {}
    workforce = ind.get("workforce")
    out["workforce"] = (
        None
        if workforce is None
        else {"women": int(workforce["women"]), "men": int(workforce["men"])}
    )
    out["women_share_of_workforce"] = (
        None
        if workforce is None
        else ratio(int(workforce["women"]), int(workforce["women"]) + int(workforce["men"]))
    )
    leadership = ind.get("leadership")
    out["leadership"] = (
        None
        if leadership is None
        else {"women": int(leadership["women"]), "total": int(leadership["total"])}
    )
    out["women_share_of_leadership"] = (
        None if leadership is None else ratio(int(leadership["women"]), int(leadership["total"]))
    )
    owned = ind.get("women_owned")
    out["women_owned"] = (
        None
        if owned is None
        else {"pits": int(owned["pits"]), "processing_units": int(owned["processing_units"])}
    )
    income = ind.get("daily_income_median")
    if income is None:
        out["daily_income_median"] = None
    else:
        women_n = None if workforce is None else int(workforce["women"])
        men_n = None if workforce is None else int(workforce["men"])
        women = _money_or_suppressed(income["women"], women_n)
        men = _money_or_suppressed(income["men"], men_n)
        gap: dict[str, Any] | None
        if women.get("suppressed") or men.get("suppressed"):
            gap = dict(SUPPRESSED)
        elif women["currency"] != men["currency"]:
            gap = None  # not comparable
        else:
            # gap = 1 − women/men = (men − women) / men
            gap = ratio(men["amount_minor"] - women["amount_minor"], men["amount_minor"])
        out["daily_income_median"] = {"women": women, "men": men, "gap": gap}
    gbv = ind.get("gbv_reports")
    out["gbv_reports"] = (
        None
        if gbv is None
        else {"count": int(gbv["count"]), "period_days": int(gbv["period_days"])}
    )
    out["gbv_per_30_days"] = (
        None if gbv is None else ratio(int(gbv["count"]) * 30, int(gbv["period_days"]))
    )
    for name in (
        "mercury_exposure_pregnant",
        "womens_association",
        "grievance_mechanism",
        "scheme",
    ):
        out[name] = ind.get(name)
    return out


@dataclass
class _SiteTotals:
    """Sums of site indicators over the sites of a report (counts only, no income)."""

    sites: int = 0
    assessed: int = 0
    workforce_women: int = 0
    workforce_men: int = 0
    with_workforce: int = 0
    leaders_women: int = 0
    leaders_total: int = 0
    with_leadership: int = 0
    pits: int = 0
    units: int = 0
    with_women_owned: int = 0
    gbv_rate: Fraction = field(default_factory=Fraction)
    with_gbv: int = 0

    def add(self, ind: Mapping[str, Any] | None) -> None:
        self.sites += 1
        if ind is None:
            return
        self.assessed += 1
        if (w := ind.get("workforce")) is not None:
            self.with_workforce += 1
            self.workforce_women += int(w["women"])
            self.workforce_men += int(w["men"])
        if (lead := ind.get("leadership")) is not None:
            self.with_leadership += 1
            self.leaders_women += int(lead["women"])
            self.leaders_total += int(lead["total"])
        if (owned := ind.get("women_owned")) is not None:
            self.with_women_owned += 1
            self.pits += int(owned["pits"])
            self.units += int(owned["processing_units"])
        if (gbv := ind.get("gbv_reports")) is not None and int(gbv["period_days"]) > 0:
            self.with_gbv += 1
            self.gbv_rate += Fraction(int(gbv["count"]) * 30, int(gbv["period_days"]))

    def render(self) -> dict[str, Any]:
        ww, wm = self.workforce_women, self.workforce_men
        return {
            "sites": self.sites,
            "assessed": self.assessed,
            "workforce": {"women": ww, "men": wm, "sites": self.with_workforce},
            "women_share_of_workforce": ratio(ww, ww + wm),
            "leadership": {
                "women": self.leaders_women,
                "total": self.leaders_total,
                "sites": self.with_leadership,
            },
            "women_share_of_leadership": ratio(self.leaders_women, self.leaders_total),
            "women_owned": {
                "pits": self.pits,
                "processing_units": self.units,
                "sites": self.with_women_owned,
            },
            "gbv_per_30_days": ratio(self.gbv_rate) if self.with_gbv else None,
            "gbv_sites": self.with_gbv,
        }


@dataclass
class _Organisations:
    """Sums over actor profiles."""

    count: int = 0
    women_led_known: int = 0
    women_led: int = 0
    members_women: int = 0
    members_total: int = 0
    leaders_women: int = 0
    leaders_total: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, actor: ActorState) -> None:
        profile = actor.profile or {}
        self.count += 1
        if profile.get("women_led") is not None:
            self.women_led_known += 1
            self.women_led += 1 if profile["women_led"] else 0
        members, leaders = profile.get("members"), profile.get("leaders")
        if members is not None:
            self.members_women += int(members["women"])
            self.members_total += int(members["total"])
        if leaders is not None:
            self.leaders_women += int(leaders["women"])
            self.leaders_total += int(leaders["total"])
        self.items.append(_organisation(actor))

    def render(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "women_led": self.women_led,
            "women_led_share": ratio(self.women_led, self.women_led_known),
            "members": {"women": self.members_women, "total": self.members_total},
            "women_share_of_members": ratio(self.members_women, self.members_total),
            "leaders": {"women": self.leaders_women, "total": self.leaders_total},
            "women_share_of_leaders": ratio(self.leaders_women, self.leaders_total),
            "items": self.items,
        }


def _organisation(actor: ActorState) -> dict[str, Any]:
    """One organisation's profile with its shares (None fields when not declared)."""
    profile = actor.profile or {}
    members, leaders = profile.get("members"), profile.get("leaders")
    return {
        "actor": actor.id,
        "name": actor.name,
        "country": actor.country,
        "roles": sorted(actor.roles),
        "status": actor.status,
        "women_led": profile.get("women_led"),
        "members": None
        if members is None
        else {"women": int(members["women"]), "total": int(members["total"])},
        "women_share_of_members": None
        if members is None
        else ratio(int(members["women"]), int(members["total"])),
        "leaders": None
        if leaders is None
        else {"women": int(leaders["women"]), "total": int(leaders["total"])},
        "women_share_of_leaders": None
        if leaders is None
        else ratio(int(leaders["women"]), int(leaders["total"])),
    }


GENDER_DEFINITIONS: dict[str, str] = {
    "period": (
        "Registrations count when the UTC date of their `time` is within [from, to], both "
        "inclusive; an absent bound is open."
    ),
    "women_share_of_producers": (
        "Σ producers.women / Σ (producers.women + producers.men) over the lot.registered "
        "events counted."
    ),
    "women_led_fine_share": (
        "fine_mg.women_led / fine_mg.total, where fine_mg.total = floor(Σ mass_mg × "
        "fineness_ppm / 10^6) over the registrations counted and fine_mg.women_led the same "
        "over those with producers.women_led = true (as registered)."
    ),
    "women_share_of_payments": (
        "Per currency: Σ payment.to_women / Σ payment.total (minor units) over the "
        "registrations with a payment whose women and whose men (paid to_women and "
        "total − to_women) each number 0 or at least 5; the others (1 woman and 7 men, say) "
        "are left out of every payment figure and counted in excluded_small_groups."
    ),
    "organisations": (
        "Active actors with a profile, as they stood at the end of `to` (registered, updated "
        "and revoked by then; without `to`, as of now, the end of the log). "
        "women_led_share = women-led / organisations declaring women_led; "
        "women_share_of_members = Σ members.women / Σ members.total; women_share_of_leaders = "
        "Σ leaders.women / Σ leaders.total."
    ),
    "site_indicators": (
        "From each site's latest site.assessed logged on or before `to` (the end of the log "
        "without `to`), whatever its valid_until."
    ),
    "women_share_of_workforce": (
        "workforce.women / (workforce.women + workforce.men); over sites, the sums of both."
    ),
    "women_share_of_leadership": (
        "leadership.women / leadership.total as assessed (the site's leaders); over sites, "
        "the sums of both."
    ),
    "women_owned": (
        "women_owned.pits and women_owned.processing_units as assessed; over sites, their sums."
    ),
    "daily_income_median": (
        "The medians as assessed, each shown only when the site's workforce has at least 5 "
        "women (men); gap = 1 − women/men = (men − women) / men in minor units, shown only "
        "when both are shown and in one currency; never aggregated across sites."
    ),
    "gbv_per_30_days": (
        "gbv_reports.count × 30 / gbv_reports.period_days; over sites, the sum of the sites' "
        "rates (reports per 30 days across those sites)."
    ),
    "by_month": (
        "Registrations grouped by the YYYY-MM of their `time`, every month from the first to "
        "the last registration counted, or from `from` and to `to` when given (within the "
        "months of the log's events); each month's site_indicators sum, over the sites "
        "registered by the month's end, each site's latest site.assessed logged by then (and "
        "on or before `to`), as `sites` does."
    ),
    "by_cooperative": (
        "Each cooperative's registrations, its organisation profile, and site_indicators: "
        "the sums of `sites` over the sites it operates."
    ),
    "ratios": (
        "value rounded to 4 decimals (null when the denominator is 0), with the exact "
        "numerator and denominator."
    ),
}


def gender_report(
    events: Iterable[LogEvent],
    state: StateLookup,
    *,
    date_from: dt.date | str | None = None,
    date_to: dt.date | str | None = None,
    country: str | None = None,
    site: str | None = None,
    cooperative: str | None = None,
    sites: Iterable[SiteState] | None = None,
    actors: Iterable[ActorState] | None = None,
) -> dict[str, Any]:
    """The gender report of issue 7: per site, per cooperative, per month and in total.

    Filters (all optional, combined with AND):

    - ``date_from`` / ``date_to``: registrations whose ``time`` falls on those UTC dates
      (inclusive); site indicators come from the latest assessment logged on or before
      ``date_to``. Organisations are as they stood on ``date_to`` (as of now without it).
    - ``country``: sites in that country, registrations at them, organisations based there.
    - ``site``: that site, its registrations and its operator's organisation.
    - ``cooperative``: the sites it operates, the lots it registered, its own profile.

    Sections: ``registrations`` (totals), ``sites`` (sums of site indicators),
    ``organisations``, ``by_site``, ``by_cooperative`` (with the sums of its sites'
    indicators), ``by_month`` (with the sums of the sites' indicators as of each month's
    end); ``definitions``
    states each indicator's numerator and denominator, ``suppression`` the small-group rule
    (see the module docstring).
    """
    d_from, d_to = filter_day(date_from), filter_day(date_to)
    site_info: dict[str, dict[str, str]] = {}
    assessed: dict[str, tuple[str, Mapping[str, Any]]] = {}  # site → (event id, body)
    history: dict[str, list[Mapping[str, Any]]] = {}  # site → its assessments, in log order
    actor_ids: list[str] = []
    coop_sites: dict[str, set[str]] = {}
    total = _Registrations()
    per_site: dict[str, _Registrations] = {}
    per_coop: dict[str, _Registrations] = {}
    per_month: dict[str, _Registrations] = {}

    def site_country(site_id: str) -> str | None:
        info = site_info.get(site_id)
        if info is not None:
            return info["country"]
        found = state.site(site_id)
        return None if found is None else found.country

    first_seen: str | None = None  # the months the event stream reaches
    # with `to`: each actor's name, roles, country, profile and status on that day
    as_of: dict[str, dict[str, Any]] = {}
    last_seen: str | None = None
    for _seq, event_id, body in events:
        kind = body.get("type")
        month = str(body.get("time", ""))[:7]
        if month:
            first_seen = month if first_seen is None else min(first_seen, month)
            last_seen = month if last_seen is None else max(last_seen, month)
        if kind == "site.registered":
            site_info[body["site"]] = {
                "name": body["name"],
                "country": body["country"],
                "operator": body["operator"],
                "time": body["time"],
            }
        elif kind == "site.assessed":
            if d_to is None or body["time"][:10] <= d_to:
                assessed[body["site"]] = (event_id, body)
                history.setdefault(body["site"], []).append(body)
        elif kind == "actor.registered":
            actor_ids.append(body["subject"])
            if d_to is not None and body["time"][:10] <= d_to:
                as_of[body["subject"]] = {
                    "name": body["name"],
                    "roles": list(body["roles"]),
                    "country": body["country"],
                    "profile": body.get("profile"),
                    "status": "active",
                }
        elif kind in ("actor.updated", "actor.revoked"):
            if d_to is not None and body["time"][:10] <= d_to and body["subject"] in as_of:
                then = as_of[body["subject"]]
                if kind == "actor.revoked":
                    then["status"] = "revoked"
                for name in ("name", "roles", "profile"):
                    if name in body:
                        then[name] = body[name]
        elif kind == "lot.registered":
            if not _in_period(body["time"], d_from, d_to):
                continue
            if site is not None and body["site"] != site:
                continue
            if cooperative is not None and body["actor"] != cooperative:
                continue
            if country is not None and site_country(body["site"]) != country:
                continue
            total.add(body)
            per_site.setdefault(body["site"], _Registrations()).add(body)
            per_coop.setdefault(body["actor"], _Registrations()).add(body)
            per_month.setdefault(body["time"][:7], _Registrations()).add(body)
            coop_sites.setdefault(body["actor"], set()).add(body["site"])

    # sites
    site_states: list[SiteState]
    if sites is not None:
        site_states = list(sites)
    else:
        site_states = [s for s in (state.site(i) for i in site_info) if s is not None]
    site_states = [
        s
        for s in site_states
        if (site is None or s.id == site)
        and (country is None or s.country == country)
        and (cooperative is None or s.operator == cooperative)
    ]
    site_states.sort(key=lambda s: s.id)
    site_totals = _SiteTotals()
    by_site: list[dict[str, Any]] = []
    site_indicators: dict[str, Mapping[str, Any] | None] = {}
    for s in site_states:
        coop_sites.setdefault(s.operator, set()).add(s.id)
        assessment: dict[str, Any] | None = None
        indicators: Mapping[str, Any] | None = None
        if s.id in assessed:
            event_id, body = assessed[s.id]
            assessment = {
                "event_id": event_id,
                "status": body["status"],
                "assessed_on": body["assessed_on"],
                "valid_until": body["valid_until"],
            }
            indicators = body
        elif s.assessment is not None and (d_to is None or s.assessment.time[:10] <= d_to):
            last = s.assessment
            assessment = {
                "event_id": last.event_id,
                "status": last.status,
                "assessed_on": last.assessed_on,
                "valid_until": last.valid_until,
            }
            indicators = last.indicators
            history.setdefault(s.id, [{**last.indicators, "time": last.time}])
        site_totals.add(indicators)
        site_indicators[s.id] = indicators
        by_site.append(
            {
                "site": s.id,
                "name": s.name,
                "country": s.country,
                "operator": s.operator,
                "registrations": per_site.get(s.id, _Registrations()).render(),
                "assessment": assessment,
                "indicators": None if indicators is None else _site_indicators(indicators),
            }
        )

    # organisations and cooperatives
    actor_states: list[ActorState]
    if actors is not None:
        actor_states = list(actors)
    else:
        actor_states = [a for a in (state.actor(i) for i in actor_ids) if a is not None]
    if d_to is not None:  # as they stood at the end of the period
        actor_states = [a.model_copy(update=as_of[a.id]) for a in actor_states if a.id in as_of]
    by_id = {a.id: a for a in actor_states}
    operator = None
    if site is not None:
        found = state.site(site)
        operator = found.operator if found is not None else ""

    def wanted(a: ActorState) -> bool:
        return (
            (country is None or a.country == country)
            and (cooperative is None or a.id == cooperative)
            and (operator is None or a.id == operator)
        )

    organisations = _Organisations()
    for org in sorted(actor_states, key=lambda x: x.id):
        if org.status == "active" and org.profile and wanted(org):
            organisations.add(org)
    coop_ids = {
        a.id
        for a in actor_states
        if "cooperative" in a.roles and a.status == "active" and wanted(a)
    }
    coop_ids.update(per_coop)
    by_cooperative: list[dict[str, Any]] = []
    for coop_id in sorted(coop_ids):
        actor = by_id.get(coop_id)
        if actor is None and d_to is None:
            actor = state.actor(coop_id)
        coop_totals = _SiteTotals()
        for site_id in sorted(coop_sites.get(coop_id, set())):
            if site_id in site_indicators:
                coop_totals.add(site_indicators[site_id])
        by_cooperative.append(
            {
                "cooperative": coop_id,
                "name": None if actor is None else actor.name,
                "country": None if actor is None else actor.country,
                "sites": sorted(coop_sites.get(coop_id, set())),
                "registrations": per_coop.get(coop_id, _Registrations()).render(),
                "site_indicators": coop_totals.render(),
                "organisation": None
                if actor is None or not actor.profile
                else _organisation(actor),
            }
        )

    # every month from the first to the last registration; with `from` (`to`), from the
    # period's first (to its last) month, within the months the log reaches
    start = min(per_month) if per_month else None
    end = max(per_month) if per_month else None
    if d_from is not None and first_seen is not None:
        start = max(d_from[:7], first_seen)
    if d_to is not None and last_seen is not None:
        end = min(d_to[:7], last_seen)
    months = _months(start, end) if start is not None and end is not None else []

    def sites_by_month_end(month: str) -> dict[str, Any]:
        """The site totals over the sites registered by the end of ``month``, each with its
        latest assessment logged by then."""
        totals = _SiteTotals()
        for s in site_states:
            registered = site_info.get(s.id, {}).get("time")
            if registered is not None and registered[:7] > month:
                continue
            latest = None
            for body in history.get(s.id, []):
                if body["time"][:7] <= month:
                    latest = body
            totals.add(latest)
        return totals.render()

    return {
        "report": "gender",
        "filters": _filters(d_from, d_to, country, site, cooperative),
        "suppression": {
            "min_group": MIN_GROUP,
            "replacement": dict(SUPPRESSED),
            "rule": GENDER_DEFINITIONS["women_share_of_payments"],
        },
        "definitions": dict(GENDER_DEFINITIONS),
        "registrations": total.render(),
        "sites": site_totals.render(),
        "organisations": organisations.render(),
        "by_site": by_site,
        "by_cooperative": by_cooperative,
        "by_month": [
            {
                "month": m,
                "registrations": per_month.get(m, _Registrations()).render(),
                "site_indicators": sites_by_month_end(m),
            }
            for m in months
        ],
    }


# ---------------------------------------------------------------------------
# Due-diligence report


def _flag_class(code: str) -> str:
    return FLAG_CLASS[FlagCode(code)]


def _counter(keys: Iterable[str]) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


DUE_DILIGENCE_DEFINITIONS: dict[str, str] = {
    "sites_by_colour": (
        "Sites by ICGLR colour on `today` (PROTOCOL.md section 5: the latest assessment while "
        "valid, then blue; red stays red; never assessed: blue)."
    ),
    "lot_filter": (
        "country, site and cooperative select lots by their origins: a lot counts when one of "
        "its origin sites is in the country, is the site, or is operated by the cooperative."
    ),
    "open_flags": (
        "Distinct flag ids open on at least one lot that is not consumed, as of the end of "
        "the log, by class and by code (an inherited flag counts once)."
    ),
    "lots_on_hold": ("Ids of lots with an open flag of class hold."),
    "mass_by_risk": (
        "Lots that are not consumed, by risk class: count, Σ mass_mg and floor(Σ mass_mg × "
        "fineness_ppm / 10^6) as fine_mg."
    ),
    "flags_raised": (
        "Distinct flag ids carried by the lots whose raising event (the id before the '/') "
        "has a `time` within [from, to], by class and by code."
    ),
    "flags_resolved": (
        "lot.flag_resolved events whose `time` is within [from, to], by outcome and by code; "
        "hours_to_resolution = (resolution time − raising event time) / 3600, median and max."
    ),
}


def due_diligence_report(
    events: Iterable[LogEvent],
    state: StateLookup,
    *,
    today: dt.date | str,
    date_from: dt.date | str | None = None,
    date_to: dt.date | str | None = None,
    country: str | None = None,
    site: str | None = None,
    cooperative: str | None = None,
    sites: Iterable[SiteState] | None = None,
    lots: Iterable[LotState] | None = None,
) -> dict[str, Any]:
    """The due-diligence report of issue 7.

    ``sites_by_colour`` (as of ``today``), ``open_flags`` by class and code,
    ``lots_on_hold``, ``mass_by_risk`` (snapshots at the end of the log), and, over the
    period ``[date_from, date_to]``, ``flags_raised`` and ``flags_resolved`` with the hours
    between the event that raised each flag (flag id = ``<raising event id>/<code>``) and
    its resolution. Pass ``lots`` (every lot, consumed ones included) to stream ``events``
    in one pass; without it the events are read into memory to find the lots first.
    """
    d_from, d_to, day = filter_day(date_from), filter_day(date_to), filter_day(today)
    assert day is not None
    today_date = dt.date.fromisoformat(day)

    if lots is None or sites is None:
        events = list(events)
    if lots is None:
        lot_ids: list[str] = []
        for _seq, _eid, body in events:
            if body.get("type") == "lot.registered":
                lot_ids.append(body["lot"])
            elif body.get("type") == "lot.processed":
                lot_ids.extend(out["lot"] for out in body["outputs"])
        lots = [lot for lot in (state.lot(i) for i in lot_ids) if lot is not None]
    if sites is None:
        site_ids = [b["site"] for _s, _e, b in events if b.get("type") == "site.registered"]
        sites = [s for s in (state.site(i) for i in site_ids) if s is not None]

    all_sites = {s.id: s for s in sites}
    selected_sites = sorted(
        (
            s
            for s in all_sites.values()
            if (site is None or s.id == site)
            and (country is None or s.country == country)
            and (cooperative is None or s.operator == cooperative)
        ),
        key=lambda s: s.id,
    )
    selected_ids = {s.id for s in selected_sites}
    site_filtered = site is not None or country is not None or cooperative is not None

    def lot_selected(lot: LotState) -> bool:
        return not site_filtered or bool(selected_ids.intersection(lot.origins))

    all_lots = [lot for lot in lots if lot_selected(lot)]
    lot_by_id = {lot.lot: lot for lot in all_lots}

    # snapshot: sites, open flags, holds, mass by risk
    by_colour = _counter(COLOURS)
    site_items = []
    for s in selected_sites:
        colour = s.status_on(today_date)
        by_colour[colour] += 1
        a = s.assessment
        site_items.append(
            {
                "site": s.id,
                "name": s.name,
                "country": s.country,
                "operator": s.operator,
                "status": colour,
                "assessed_on": None if a is None else a.assessed_on,
                "valid_until": None if a is None else a.valid_until,
            }
        )

    open_flags: dict[str, str] = {}  # flag id → code
    on_hold: list[str] = []
    mass: dict[str, list[int]] = {r: [0, 0, 0] for r in RISK_CLASSES}  # lots, mg, fine product
    for lot in all_lots:
        if lot.status == "consumed":
            continue
        for f in lot.flags:
            if f.status == "open":
                open_flags[f.id] = f.code
        if lot.hold:
            on_hold.append(lot.lot)
        row = mass[lot.risk]
        row[0] += 1
        row[1] += lot.mass_mg
        row[2] += lot.mass_mg * lot.fineness_ppm
    open_by_class = _counter(FLAG_CLASSES)
    open_by_code: dict[str, int] = {}
    for code in open_flags.values():
        open_by_class[_flag_class(code)] += 1
        open_by_code[code] = open_by_code.get(code, 0) + 1

    # the period: flags raised and resolved, from the event stream
    raised_codes: dict[str, str] = {}  # flag id → code, for every selected lot's flags
    for lot in all_lots:
        for f in lot.flags:
            raised_codes[f.id] = f.code
    raisers: dict[str, list[str]] = {}  # raising event id → flag ids it raised
    for flag_id in raised_codes:
        raisers.setdefault(flag_id.partition("/")[0], []).append(flag_id)
    raised_at: dict[str, int] = {}
    raised_in_period: dict[str, str] = {}
    resolutions: list[tuple[str, str, int | None]] = []  # code, outcome, seconds taken
    for _seq, event_id, body in events:
        if event_id in raisers:
            raised_at[event_id] = _seconds(body["time"])
            if _in_period(body["time"], d_from, d_to):
                for flag_id in raisers[event_id]:
                    raised_in_period[flag_id] = raised_codes[flag_id]
        if body.get("type") != "lot.flag_resolved" or body["lot"] not in lot_by_id:
            continue
        if not _in_period(body["time"], d_from, d_to):
            continue
        flag_id = body["flag"]
        raiser, _, code = flag_id.partition("/")
        start = raised_at.get(raiser)
        taken = None if start is None else _seconds(body["time"]) - start
        resolutions.append((code, body["outcome"], taken))

    raised_by_class = _counter(FLAG_CLASSES)
    raised_by_code: dict[str, int] = {}
    for code in raised_in_period.values():
        raised_by_class[_flag_class(code)] += 1
        raised_by_code[code] = raised_by_code.get(code, 0) + 1
    by_outcome = _counter(OUTCOMES)
    resolved_by_code: dict[str, int] = {}
    durations: list[int] = []
    for code, outcome, taken in resolutions:
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        resolved_by_code[code] = resolved_by_code.get(code, 0) + 1
        if taken is not None:
            durations.append(taken)

    def hours(seconds: Fraction | int) -> float:
        return float(round(Fraction(seconds) / 3600, 4))

    return {
        "report": "due_diligence",
        "today": day,
        "filters": _filters(d_from, d_to, country, site, cooperative),
        "definitions": dict(DUE_DILIGENCE_DEFINITIONS),
        "sites": {"count": len(site_items), "by_colour": by_colour, "items": site_items},
        "open_flags": {
            "total": len(open_flags),
            "by_class": open_by_class,
            "by_code": dict(sorted(open_by_code.items())),
        },
        "lots_on_hold": sorted(on_hold),
        "mass_by_risk": {
            r: {"lots": v[0], "mass_mg": v[1], "fine_mg": v[2] // 10**6} for r, v in mass.items()
        },
        "flags_raised": {
            "total": len(raised_in_period),
            "by_class": raised_by_class,
            "by_code": dict(sorted(raised_by_code.items())),
        },
        "flags_resolved": {
            "count": len(resolutions),
            "by_outcome": by_outcome,
            "by_code": dict(sorted(resolved_by_code.items())),
            "hours_to_resolution": {
                "count": len(durations),
                "median": hours(Fraction(statistics.median(durations))) if durations else None,
                "max": hours(max(durations)) if durations else None,
            },
        },
    }


# ---------------------------------------------------------------------------
# CSV

#: the columns of ``gender_csv``
GENDER_CSV_COLUMNS = (
    "scope",
    "key",
    "indicator",
    "currency",
    "value",
    "numerator",
    "denominator",
    "suppressed",
)
#: the columns of ``lots_csv``
LOTS_CSV_COLUMNS = (
    "lot",
    "status",
    "custodian",
    "form",
    "mass_mg",
    "fineness_ppm",
    "risk",
    "hold",
    "origins",
    "women",
    "men",
    "women_led_fine_mg",
    "origin_fine_mg",
    "destination",
    "head",
    "country",
    "exported",
    "open_flags",
    "resolved_flags",
)


def _cell(value: object) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _rows_ratio(
    scope: str, key: str, name: str, r: Mapping[str, Any] | None, currency: str = ""
) -> Iterator[list[object]]:
    if r is None:
        return
    if r.get("suppressed"):
        yield [scope, key, name, currency, "", "", "", True]
    else:
        yield [scope, key, name, currency, r["value"], r["numerator"], r["denominator"], False]


def _rows_count(scope: str, key: str, name: str, value: object) -> Iterator[list[object]]:
    if value is not None:
        yield [scope, key, name, "", value, "", "", False]


def _rows_registrations(scope: str, key: str, reg: Mapping[str, Any]) -> Iterator[list[object]]:
    yield from _rows_count(scope, key, "lots", reg["lots"])
    yield from _rows_count(scope, key, "women_led_lots", reg["women_led_lots"])
    yield from _rows_count(scope, key, "producers_women", reg["producers"]["women"])
    yield from _rows_count(scope, key, "producers_men", reg["producers"]["men"])
    yield from _rows_ratio(scope, key, "women_share_of_producers", reg["women_share_of_producers"])
    yield from _rows_count(scope, key, "fine_mg_women_led", reg["fine_mg"]["women_led"])
    yield from _rows_count(scope, key, "fine_mg_total", reg["fine_mg"]["total"])
    yield from _rows_ratio(scope, key, "women_led_fine_share", reg["women_led_fine_share"])
    for p in reg["payments"]:
        cur = p["currency"]
        if p.get("suppressed"):
            for name in (
                "payment_total_minor",
                "payment_to_women_minor",
                "women_share_of_payments",
            ):
                yield [scope, key, name, cur, "", "", "", True]
            continue
        yield [scope, key, "payment_total_minor", cur, p["total_minor"], "", "", False]
        yield [scope, key, "payment_to_women_minor", cur, p["to_women_minor"], "", "", False]
        yield from _rows_ratio(
            scope, key, "women_share_of_payments", p["women_share_of_payments"], cur
        )


def _rows_site(key: str, ind: Mapping[str, Any]) -> Iterator[list[object]]:
    scope = "site"
    for group, label in (("workforce", "workforce"), ("leadership", "leadership")):
        if ind[group] is not None:
            for part, n in ind[group].items():
                yield from _rows_count(scope, key, f"{label}_{part}", n)
    yield from _rows_ratio(scope, key, "women_share_of_workforce", ind["women_share_of_workforce"])
    yield from _rows_ratio(
        scope, key, "women_share_of_leadership", ind["women_share_of_leadership"]
    )
    if ind["women_owned"] is not None:
        yield from _rows_count(scope, key, "women_owned_pits", ind["women_owned"]["pits"])
        yield from _rows_count(
            scope, key, "women_owned_processing_units", ind["women_owned"]["processing_units"]
        )
    income = ind["daily_income_median"]
    if income is not None:
        for sex in ("women", "men"):
            m = income[sex]
            if m.get("suppressed"):
                yield [scope, key, f"daily_income_median_{sex}_minor", "", "", "", "", True]
            else:
                yield [
                    scope,
                    key,
                    f"daily_income_median_{sex}_minor",
                    m["currency"],
                    m["amount_minor"],
                    "",
                    "",
                    False,
                ]
        cur = "" if income["women"].get("suppressed") else income["women"]["currency"]
        yield from _rows_ratio(scope, key, "daily_income_gap", income["gap"], cur)
    yield from _rows_ratio(scope, key, "gbv_per_30_days", ind["gbv_per_30_days"])


def _rows_site_totals(scope: str, key: str, sites: Mapping[str, Any]) -> Iterator[list[object]]:
    """The sums of site indicators (``_SiteTotals``): counts and shares, no income."""
    yield from _rows_count(scope, key, "sites", sites["sites"])
    yield from _rows_count(scope, key, "workforce_women", sites["workforce"]["women"])
    yield from _rows_count(scope, key, "workforce_men", sites["workforce"]["men"])
    yield from _rows_ratio(
        scope, key, "women_share_of_workforce", sites["women_share_of_workforce"]
    )
    yield from _rows_ratio(
        scope, key, "women_share_of_leadership", sites["women_share_of_leadership"]
    )
    yield from _rows_count(scope, key, "women_owned_pits", sites["women_owned"]["pits"])
    yield from _rows_count(
        scope, key, "women_owned_processing_units", sites["women_owned"]["processing_units"]
    )
    yield from _rows_ratio(scope, key, "gbv_per_30_days", sites["gbv_per_30_days"])


def _rows_organisation(scope: str, key: str, org: Mapping[str, Any]) -> Iterator[list[object]]:
    yield from _rows_count(scope, key, "women_led", org["women_led"])
    for group in ("members", "leaders"):
        if org[group] is not None:
            yield from _rows_count(scope, key, f"{group}_women", org[group]["women"])
            yield from _rows_count(scope, key, f"{group}_total", org[group]["total"])
            yield from _rows_ratio(
                scope, key, f"women_share_of_{group}", org[f"women_share_of_{group}"]
            )


def gender_csv(report: Mapping[str, Any]) -> str:
    """The gender report as long-format CSV: one indicator value per row.

    Columns ``GENDER_CSV_COLUMNS``: ``scope`` (``total``, ``sites``, ``organisations``,
    ``site``, ``cooperative``, ``month``), ``key`` (site or cooperative id, ``YYYY-MM``, or
    ``all``), ``indicator``, ``currency`` (payments and incomes), ``value``, ``numerator``
    and ``denominator`` (ratios), ``suppressed`` (``true`` when the figure is withheld:
    fewer than 5 people; ``value`` is then empty). Text cells starting with ``= + - @`` get
    a leading ``'`` so that no spreadsheet runs them.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(GENDER_CSV_COLUMNS)
    rows: list[list[object]] = []
    rows += _rows_registrations("total", "all", report["registrations"])
    sites = report["sites"]
    rows += _rows_site_totals("sites", "all", sites)
    orgs = report["organisations"]
    rows += _rows_count("organisations", "all", "organisations", orgs["count"])
    rows += _rows_count("organisations", "all", "women_led", orgs["women_led"])
    rows += _rows_ratio("organisations", "all", "women_led_share", orgs["women_led_share"])
    for group in ("members", "leaders"):
        rows += _rows_ratio(
            "organisations", "all", f"women_share_of_{group}", orgs[f"women_share_of_{group}"]
        )
    for item in report["by_site"]:
        rows += _rows_registrations("site", item["site"], item["registrations"])
        if item["indicators"] is not None:
            rows += _rows_site(item["site"], item["indicators"])
    for item in report["by_cooperative"]:
        rows += _rows_registrations("cooperative", item["cooperative"], item["registrations"])
        rows += _rows_site_totals("cooperative", item["cooperative"], item["site_indicators"])
        if item["organisation"] is not None:
            rows += _rows_organisation("cooperative", item["cooperative"], item["organisation"])
    for item in report["by_month"]:
        rows += _rows_registrations("month", item["month"], item["registrations"])
        rows += _rows_site_totals("month", item["month"], item["site_indicators"])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def lots_csv(lots: Iterable[LotState], state: StateLookup) -> str:
    """One CSV row per lot (``LOTS_CSV_COLUMNS``), ordered by creation in the log.

    ``origins`` are the origin site ids joined by ``;``; ``women``, ``men``,
    ``women_led_fine_mg`` and ``origin_fine_mg`` come from the lot's gender summary
    (PROTOCOL.md section 7; counts and fine gold only, no payment); ``hold`` is
    ``true``/``false``; ``destination`` is empty when none is recorded; ``country`` is the
    custodian's; ``exported`` whether the lot was ever exported on its own chain;
    ``open_flags`` the codes of its open flags and ``resolved_flags`` ``code:outcome`` of
    its resolved ones, sorted and joined by ``;``.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(LOTS_CSV_COLUMNS)
    for lot in sorted(lots, key=lambda x: (x.created_seq, x.lot)):
        summary = gender_summary(cast(StateReader, state), lot)  # reads only state.lot
        custodian = state.actor(lot.custodian)
        open_flags = sorted(f.code for f in lot.flags if f.status == "open")
        resolved = sorted(f"{f.code}:{f.outcome}" for f in lot.flags if f.status == "resolved")
        writer.writerow(
            [
                _cell(v)
                for v in (
                    lot.lot,
                    lot.status,
                    lot.custodian,
                    lot.form,
                    lot.mass_mg,
                    lot.fineness_ppm,
                    lot.risk,
                    lot.hold,
                    ";".join(sorted(lot.origins)),
                    summary["producers"]["women"],
                    summary["producers"]["men"],
                    summary["women_led_fine_mg"],
                    summary["origin_fine_mg"],
                    lot.destination,
                    lot.head,
                    None if custodian is None else custodian.country,
                    lot.exported,
                    ";".join(open_flags),
                    ";".join(resolved),
                )
            ]
        )
    return buf.getvalue()
