"""The human verification page a lot's QR code opens (``GET /l/{lot}?at=``), and its errors.

The page is built from a verifier ``Report`` (ledger.verify), never from server state: what
the buyer reads is what the bundle proves. It is made for a cheap phone on a slow link: one
self-contained HTML document (inline CSS and SVG, no script, no external asset; a
Content-Security-Policy forbids loading anything), readable at 360 px, in English or
French. Payment figures appear only for groups of at least 5 people (PROTOCOL.md
section 7), as in the reports (ledger.reports): a currency's figure is shown only when every
registration it sums has 5 producers or more, since comparing it with the pages of the
other lots could otherwise tell a small group's payment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from api import i18n
from api.i18n import t
from ledger.protocol import event_id
from ledger.verify import Report, TimelineItem

#: the width of the gender chart's bars, in SVG units
CHART_WIDTH = 320

#: the smallest group whose payment or income figures a page may show

_env = Environment(
    loader=PackageLoader("api", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_LANG_RANGE = re.compile(
    r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*[qQ]\s*=\s*([01](?:\.[0-9]{0,3})?))?\s*"
)


def bundle_filename(lot_id: str) -> str:
    """The name a lot's bundle is downloaded under, which the page's command names."""
    return f"{lot_id}.bundle.json"


# ---------------------------------------------------------------------------
# Language


def choose_language(accept_language: str | None, query_lang: str | None) -> str:
    """``en`` or ``fr``: ``?lang=`` when it names one of them, else the best of the
    ``Accept-Language`` header (q-values honoured, ``fr-CD`` counts as ``fr``), else ``en``."""
    if query_lang:
        primary = query_lang.strip().lower().split("-")[0].split("_")[0]
        if primary in i18n.LANGUAGES:
            return primary
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        match = _LANG_RANGE.fullmatch(part)
        if match is None:
            continue
        tag, q_text = match.group(1).lower(), match.group(2)
        try:
            q = float(q_text) if q_text is not None else 1.0
        except ValueError:
            continue
        primary = i18n.DEFAULT_LANGUAGE if tag == "*" else tag.split("-")[0]
        if primary in i18n.LANGUAGES and 0 < q <= 1:
            ranked.append((q, -position, primary))  # on a tie the earlier range wins
    return max(ranked)[2] if ranked else i18n.DEFAULT_LANGUAGE


# ---------------------------------------------------------------------------
# What the template shows


@dataclass
class Row:
    label: str
    value: str
    mono: bool = False


@dataclass
class Site:
    name: str
    place: str
    operator: str
    colour: str
    colour_word: str
    colour_means: str
    assessed: str
    cahra: bool


@dataclass
class Step:
    date: str
    time: str
    iso: str
    title: str
    details: list[str]
    lots: str
    own: bool


@dataclass
class Flag:
    sentence: str
    cls: str
    cls_word: str
    status: str
    status_word: str


@dataclass
class Payment:
    currency: str
    text: str
    shown: bool


@dataclass
class Gender:
    sentence: str
    women_led: str | None
    payments: list[Payment]
    chart: dict[str, Any]


@dataclass
class Page:
    lang: str
    ok: bool
    title: str
    lot: str
    verdict: str
    verdict_detail: str
    reasons: list[str] = field(default_factory=list)
    label_notice: dict[str, Any] | None = None
    rows: list[Row] = field(default_factory=list)
    on_hold: bool = False
    #: the lots a consumed lot's gold went into (id, link to their page)
    went_into: list[dict[str, str]] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    risk: str = "low"
    risk_word: str = ""
    flags: list[Flag] = field(default_factory=list)
    gender: Gender | None = None
    bundle_url: str = ""
    command: str = ""
    log_key: str = ""
    registrar_key: str | None = None
    bundle_file: str = ""
    server_name: str = ""
    languages: list[dict[str, Any]] = field(default_factory=list)


def render_lot_page(
    report: Report,
    *,
    lang: str,
    bundle_url: str,
    label_at: str | None,
    head_is_newer: bool,
    log_key: str,
    server_name: str,
    bundle: Mapping[str, Any] | None = None,
    registrar_key: str | None = None,
    bundle_file: str | None = None,
) -> str:
    """The lot page for a verifier report, as one self-contained HTML document.

    ``label_at`` is the label's ``?at=`` event id (None without one) and ``head_is_newer``
    says the lot has moved on since; ``log_key`` is the log's verifier key (shown, with the
    command to check the bundle offline); ``server_name`` names this server.

    ``bundle`` (optional) is the bundle the report was verified from. With it the timeline
    says more (the process, the recipient, the destination...). Only bodies whose event id is
    in the report's verified timeline are read. A payment figure is shown only where the
    report's ``payment_groups`` (the smallest group paid in that currency, which the verifier
    worked out from the registrations) is at least 5.

    ``registrar_key`` (hex), when given, is pinned in the offline command and shown for
    comparison with the programme's; ``bundle_file`` is the name the download is saved under
    (the server's ``Content-Disposition``), which the command names.
    """
    lang = i18n.language(lang)
    lot = report.lot or t(lang, "verdict.unknown_lot")
    bundle_file = bundle_file or bundle_filename(report.lot or "lot")
    page = Page(
        lang=lang,
        ok=report.ok and report.state is not None,
        title=t(lang, "page.title", lot=lot),
        lot=lot,
        verdict="",
        verdict_detail="",
        bundle_url=bundle_url,
        command=_verify_command(bundle_file, log_key, registrar_key),
        bundle_file=bundle_file,
        log_key=log_key,
        registrar_key=registrar_key,
        server_name=server_name,
        languages=_language_links(lang, label_at),
    )
    if not page.ok:
        page.verdict = t(lang, "verdict.bad")
        page.verdict_detail = t(lang, "verdict.bad_detail", lot=lot)
        page.reasons = [str(f) for f in report.failures] or ["verification did not complete"]
        return _env.get_template("lot.html").render(lang=lang, page=page, t=_translator(lang))

    state = report.state
    assert state is not None
    bodies = _verified_bodies(report, bundle)
    names = _actor_names(report, bundle)
    page.verdict = t(lang, "verdict.ok")
    page.verdict_detail = t(
        lang,
        "verdict.ok_detail",
        lot=lot,
        origin=report.origin or "",
        size=i18n.integer(lang, report.checkpoint_size or 0),
    )
    page.label_notice = _label_notice(lang, report, label_at, head_is_newer, bodies, names)
    page.rows = _identity(lang, state, names)
    page.on_hold = bool(state.get("hold"))
    page.went_into = _went_into(report)
    registered_on = _registration_dates(report, bodies)
    page.sites = [_site(lang, s, registered_on.get(str(s.get("id")))) for s in report.sites]
    page.steps = [
        _step(lang, item, bodies.get(item.event_id), names, report) for item in report.timeline
    ]
    page.risk = str(state.get("risk", "low"))
    page.risk_word = (
        t(lang, f"risk.{page.risk}") if i18n.has(lang, f"risk.{page.risk}") else page.risk
    )
    page.flags = [_flag(lang, f) for f in state.get("flags", [])]
    page.gender = _gender(lang, state.get("gender"), report)
    return _env.get_template("lot.html").render(lang=lang, page=page, t=_translator(lang))


def render_error_page(lang: str, title: str, detail: str) -> str:
    """A plain page for a lot or label the server does not know (served with 404)."""
    lang = i18n.language(lang)
    return _env.get_template("error.html").render(
        lang=lang, title=title, detail=detail, t=_translator(lang)
    )


# ---------------------------------------------------------------------------
# Pieces


def _translator(lang: str) -> Any:
    def translate(key: str, **values: object) -> str:
        return t(lang, key, **values)

    return translate


def _verify_command(bundle_file: str, log_key: str, registrar_key: str | None) -> str:
    """The command that checks the downloaded bundle offline, with the keys pinned."""
    command = f"goldtrail verify {shlex.quote(bundle_file)} --log-key {_shell_quote(log_key)}"
    if registrar_key:
        command += f" --registrar-key {registrar_key}"
    return command


def _shell_quote(text: str) -> str:
    """Single-quoted for a POSIX shell, always (as the instructions read best)."""
    quoted = shlex.quote(text)
    return quoted if quoted.startswith("'") else f"'{text}'"


def _language_links(lang: str, label_at: str | None) -> list[dict[str, Any]]:
    links = []
    for code in i18n.LANGUAGES:
        query = {"at": label_at, "lang": code} if label_at else {"lang": code}
        links.append(
            {
                "code": code,
                "name": t(code, "page.lang_name"),
                "href": "?" + urlencode(query),
                "current": code == lang,
            }
        )
    return links


def _verified_bodies(report: Report, bundle: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Bodies of the bundle whose event id is in the report's verified timeline."""
    if not bundle or not report.ok:
        return {}
    wanted = {item.event_id for item in report.timeline}
    bodies: dict[str, dict[str, Any]] = {}
    for item in bundle.get("entries", []):
        body = item.get("envelope", {}).get("body") if isinstance(item, Mapping) else None
        if not isinstance(body, dict) or not body.get("type", "").startswith("lot."):
            continue
        try:
            eid = event_id(body)
        except Exception:  # a body the verifier would have refused: never shown
            continue
        if eid in wanted:
            bodies[eid] = body
    return bodies


def _actor_names(report: Report, bundle: Mapping[str, Any] | None) -> dict[str, str]:
    """Organisation names by actor id: signers from the timeline, then (for the recipient
    of a pending offer, who has signed nothing yet) the bundle's registrations."""
    names: dict[str, str] = {}
    if bundle and report.ok:
        for item in bundle.get("entries", []):
            body = item.get("envelope", {}).get("body") if isinstance(item, Mapping) else None
            if (
                isinstance(body, dict)
                and body.get("type") in ("actor.registered", "actor.updated")
                and isinstance(body.get("name"), str)
            ):
                names[body["subject"]] = body["name"]
    for step in report.timeline:
        names[step.actor] = step.actor_name
    return names


def _label_notice(
    lang: str,
    report: Report,
    label_at: str | None,
    head_is_newer: bool,
    bodies: dict[str, dict[str, Any]],
    names: dict[str, str],
) -> dict[str, Any] | None:
    if label_at is None:
        return None
    if not head_is_newer:
        return {"older": False, "text": t(lang, "label.current"), "steps": []}
    label = next((s for s in report.timeline if s.event_id == label_at), None)
    when = i18n.date(lang, label.time) if label is not None else "—"
    steps = [_step(lang, s, bodies.get(s.event_id), names, report) for s in report.after_label]
    key = "label.older_since" if steps else "label.older_nothing"
    return {
        "older": True,
        "title": t(lang, "label.older_title"),
        "text": t(lang, key, date=when),
        "steps": steps,
    }


def _identity(lang: str, state: Mapping[str, Any], names: dict[str, str]) -> list[Row]:
    form = state.get("form")
    rows = [Row(t(lang, "lot.id"), str(state.get("lot", "")), mono=True)]
    if form:
        key = f"form.{form}"
        rows.append(Row(t(lang, "lot.form"), t(lang, key) if i18n.has(lang, key) else str(form)))
    mass_mg, ppm = state.get("mass_mg"), state.get("fineness_ppm")
    if isinstance(mass_mg, int):
        rows.append(Row(t(lang, "lot.mass"), i18n.mass(lang, mass_mg)))
    if isinstance(ppm, int):
        label = "lot.grade" if form in ("ore", "concentrate") else "lot.fineness"
        rows.append(Row(t(lang, label), i18n.fineness(lang, ppm, form)))
    if isinstance(mass_mg, int) and isinstance(ppm, int) and form not in ("ore", "concentrate"):
        rows.append(Row(t(lang, "lot.fine_gold"), i18n.mass(lang, mass_mg * ppm // 1_000_000)))
    bar = state.get("bar")
    if isinstance(bar, Mapping) and bar.get("serial"):
        rows.append(
            Row(
                t(lang, "lot.bar"),
                t(lang, "lot.bar_value", serial=bar["serial"], year=bar.get("year", "")),
            )
        )
    custodian = state.get("custodian")
    if custodian:
        name = names.get(custodian, custodian)
        rows.append(
            Row(
                t(lang, "lot.held_by"),
                t(lang, "lot.held_in", name=name, country=i18n.country(lang, state.get("country"))),
            )
        )
    status = state.get("status")
    if status == "offered" and isinstance(state.get("offer"), Mapping):
        to = state["offer"].get("to", "")
        rows.append(
            Row(t(lang, "lot.status"), t(lang, "lot.status.offered", name=names.get(to, to)))
        )
    elif status in ("active", "consumed"):
        rows.append(Row(t(lang, "lot.status"), t(lang, f"lot.status.{status}")))
    if state.get("destination"):
        rows.append(
            Row(
                t(lang, "lot.export"),
                t(lang, "lot.exported_to", country=i18n.country(lang, state["destination"])),
            )
        )
    elif state.get("exported"):
        rows.append(Row(t(lang, "lot.export"), t(lang, "lot.exported")))
    return rows


def _went_into(report: Report) -> list[dict[str, str]]:
    """``report.went_into()``, each lot with a link to its own page on this server
    (relative: ``/l/A`` links to ``B`` as ``/prefix/l/A`` does)."""
    return [{"lot": lot, "href": quote(lot, safe="")} for lot in report.went_into()]


_COLOURS = ("green", "yellow", "red", "blue")


def _registration_dates(report: Report, bodies: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The date of the latest registration of this gold at each origin site (known only
    from the bundle's bodies)."""
    dates: dict[str, str] = {}
    for item in report.timeline:
        body = bodies.get(item.event_id)
        if body is not None and body.get("type") == "lot.registered":
            site, day = str(body.get("site")), item.time[:10]
            dates[site] = max(day, dates.get(site, day))
    return dates


def _site(lang: str, site: Mapping[str, Any], registered_on: str | None = None) -> Site:
    colour = site.get("status") if site.get("status") in _COLOURS else "blue"
    assessment = site.get("assessment")
    if isinstance(assessment, Mapping):
        valid = str(assessment.get("valid_until", ""))
        assessed = t(
            lang,
            "origins.assessed",
            assessed=i18n.date(lang, str(assessment.get("assessed_on", ""))),
            valid=i18n.date(lang, valid),
        )
        cahra = assessment.get("cahra") is True
        # PROTOCOL.md 5: after valid_until a green or yellow site counts as blue
        expired = registered_on is not None and valid < registered_on
        if expired and assessment.get("status") in ("green", "yellow"):
            colour = "blue"
            assessed = t(lang, "origins.expired", valid=i18n.date(lang, valid))
    else:
        assessed, cahra = t(lang, "origins.never_assessed"), False
    place = ", ".join(
        p for p in (str(site.get("region") or ""), i18n.country(lang, site.get("country"))) if p
    )
    return Site(
        name=str(site.get("name", site.get("id", ""))),
        place=place,
        operator=t(lang, "origins.operated_by", name=site.get("operator_name", "")),
        colour=str(colour),
        colour_word=t(lang, f"site.{colour}"),
        colour_means=t(lang, f"site.{colour}.means"),
        assessed=assessed,
        cahra=cahra,
    )


def _step(
    lang: str,
    item: TimelineItem,
    body: Mapping[str, Any] | None,
    names: dict[str, str],
    report: Report,
) -> Step:
    key = f"event.{item.type}"
    title = t(lang, key if i18n.has(lang, key) else "event.other", actor=item.actor_name)
    details = _details(lang, item, body, names, report) if body is not None else []
    return Step(
        date=i18n.date(lang, item.time),
        time=i18n.time_of_day(lang, item.time),
        iso=item.time,
        title=title,
        details=details,
        lots=", ".join(item.lots),
        own=item.on_own_chain,
    )


def _word(lang: str, prefix: str, value: object) -> str:
    key = f"{prefix}.{value}"
    return t(lang, key) if i18n.has(lang, key) else str(value)


def _details(
    lang: str,
    item: TimelineItem,
    body: Mapping[str, Any],
    names: dict[str, str],
    report: Report,
) -> list[str]:
    """What a step did, from its (verified) body: no prices, no free text."""
    kind = item.type
    out: list[str] = []
    if kind == "lot.registered":
        site = next((s for s in report.sites if s.get("id") == body.get("site")), None)
        out.append(t(lang, "detail.site", site=site["name"] if site else body.get("site", "")))
        out.append(_describe(lang, body.get("form"), body.get("mass_mg")))
    elif kind == "lot.transfer_offered":
        to = str(body.get("to", ""))
        out.append(t(lang, "detail.to", name=names.get(to, to)))
    elif kind == "lot.transfer_accepted" and isinstance(body.get("mass_mg"), int):
        out.append(t(lang, "detail.weighed", mass=i18n.short_mass(lang, body["mass_mg"])))
    elif kind == "lot.processed":
        out.append(_word(lang, "process", body.get("process")))
        outputs = [
            f"{o.get('lot')} ({_describe(lang, o.get('form'), o.get('mass_mg'))})"
            for o in body.get("outputs", [])
            if isinstance(o, Mapping)
        ]
        if len(outputs) > 6:
            outputs = [*outputs[:5], f"… (+{len(outputs) - 5})"]
        out.append(t(lang, "detail.made", outputs=", ".join(outputs)))
    elif kind == "lot.assayed" and isinstance(body.get("fineness_ppm"), int):
        out.append(
            t(
                lang,
                "detail.assay",
                method=_word(lang, "method", body.get("method")),
                fineness=i18n.fineness(lang, body["fineness_ppm"], None).split(" (")[0],
            )
        )
    elif kind == "lot.exported":
        out.append(
            t(lang, "detail.destination", country=i18n.country(lang, body.get("destination")))
        )
    elif kind == "lot.flagged":
        out.append(_word(lang, "code", body.get("code")))
    elif kind == "lot.flag_resolved":
        code = str(body.get("flag", "")).rpartition("/")[2]
        out.append(_word(lang, "code", code))
        out.append(t(lang, "detail.outcome", outcome=_word(lang, "outcome", body.get("outcome"))))
    return out


def _describe(lang: str, form: object, mass_mg: object) -> str:
    parts = []
    if form is not None:
        parts.append(_word(lang, "form", form).split(" (")[0].lower())
    if isinstance(mass_mg, int):
        parts.append(i18n.short_mass(lang, mass_mg))
    return ", ".join(parts)


def _flag(lang: str, flag: Mapping[str, Any]) -> Flag:
    code = str(flag.get("code", ""))
    key = f"code.{code}"
    sentence = t(lang, key) if i18n.has(lang, key) else t(lang, "code.other", code=code)
    cls = str(flag.get("class", ""))
    status = str(flag.get("status", ""))
    if status == "resolved" and flag.get("outcome"):
        status_word = t(lang, "flag.resolved_as", outcome=_word(lang, "outcome", flag["outcome"]))
    else:
        status_word = _word(lang, "flag", status)
    return Flag(sentence, cls, _word(lang, "class", cls), status, status_word)


def _gender(lang: str, summary: object, report: Report) -> Gender | None:
    if not isinstance(summary, Mapping):
        return None
    producers = summary.get("producers", {})
    women, men = int(producers.get("women", 0)), int(producers.get("men", 0))
    plural = {True: "one", False: "other"}
    sentence = t(
        lang,
        "gender.producers",
        women=t(lang, f"gender.women.{plural[women == 1]}", n=i18n.integer(lang, women)),
        men=t(lang, f"gender.men.{plural[men == 1]}", n=i18n.integer(lang, men)),
    )
    led, fine = int(summary.get("women_led_fine_mg", 0)), int(summary.get("origin_fine_mg", 0))
    women_led = t(lang, "gender.women_led", pct=i18n.percent(lang, led, fine)) if fine > 0 else None
    payments = []
    for paid in summary.get("paid", []):
        currency = str(paid.get("currency", ""))
        if report.payment_shown(currency):
            text = t(
                lang,
                "gender.paid",
                total=i18n.money(lang, int(paid["total"]), currency),
                to_women=i18n.money(lang, int(paid["to_women"]), currency),
                pct=i18n.percent(lang, int(paid["to_women"]), int(paid["total"])),
            )
            payments.append(Payment(currency, text, True))
        else:
            payments.append(Payment(currency, t(lang, "gender.withheld", currency=currency), False))
    total = women + men
    chart = {
        "producers": {
            "women": women,
            "men": men,
            "women_w": round(CHART_WIDTH * women / total) if total else 0,
            "women_pct": i18n.percent(lang, women, total),
        },
        "led": {
            "w": round(CHART_WIDTH * led / fine) if fine else 0,
            "pct": i18n.percent(lang, led, fine),
            "shown": fine > 0,
        },
    }
    return Gender(sentence, women_led, payments, chart)
