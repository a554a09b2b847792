"""Server-side SVG charts for the reports dashboard, drawn with matplotlib.

No pyplot, no GUI backend, no files and no network: each chart is a ``matplotlib.figure.Figure``
saved as SVG into a string. The output is deterministic (fixed ``svg.hashsalt``, no date,
no creator, text kept as ``<text>`` with ``svg.fonttype = none`` so no glyphs or fonts are
embedded or fetched), small (a few KB to tens of KB), and ready to inline in HTML: no XML
prolog or DOCTYPE, a ``<title>`` and ``<desc>`` for screen readers (``role="img"``,
``aria-labelledby``), and every ``id`` prefixed per chart so several charts can share a page.

``report_charts`` turns a gender report (and optionally a due-diligence report) from
``ledger.reports`` into the dashboard's charts, each with the table of its numbers.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from matplotlib.typing import RcKeyType

__all__ = ["Chart", "bar_chart", "line_chart", "report_charts"]

#: matplotlib settings for every chart (applied under a lock: rcParams are global)
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "goldtrail",
    "svg.fonttype": "none",
    "text.parse_math": False,  # a "$" in a site name is text, not TeX
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # bundled with matplotlib: same metrics everywhere
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
#: series colours (colour-blind safe pairs first), in order
PALETTE = ("#7b3294", "#e66101", "#008837", "#0571b0", "#ca0020", "#404040")
#: SVG metadata: no date or creator, so the same data gives the same bytes
METADATA: dict[str, str | None] = {"Date": None, "Creator": None, "Format": None, "Type": None}
FIGSIZE = (7.0, 3.4)

_LOCK = threading.Lock()
_CHART_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(xlink:href="#|href="#|url\(#)([^")]+)')
_GEOMETRY = re.compile(r'\b(d|x|y|transform)="([^"]*)"')
_DECIMAL = re.compile(r"-?\d+\.\d{3,}")

Series = Mapping[str, Sequence[float | None]]


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _round(match: re.Match[str]) -> str:
    """A coordinate to 2 decimals (1/100 pt: invisible), trailing zeros dropped."""
    text = f"{float(match.group(0)):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg(fig: Figure, title: str, desc: str, chart_id: str | None) -> str:
    """Render ``fig`` as inline-ready SVG text with an accessible title and unique ids."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=METADATA)
    text = _PROLOG.sub("", buf.getvalue(), count=1)
    prefix = chart_id or "c" + hashlib.sha256(title.encode("utf-8")).hexdigest()[:8]
    if not _CHART_ID.match(prefix):
        raise ValueError(f"chart_id must match {_CHART_ID.pattern}, not {prefix!r}")
    text = _GEOMETRY.sub(lambda m: f'{m.group(1)}="{_DECIMAL.sub(_round, m.group(2))}"', text)
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    head_end = text.index(">") + 1
    opening = text[: head_end - 1].rstrip("/").rstrip()
    opening += f' role="img" aria-labelledby="{prefix}-title {prefix}-desc">'
    accessible = (
        f'\n <title id="{prefix}-title">{escape(title)}</title>'
        f'\n <desc id="{prefix}-desc">{escape(desc)}</desc>'
    )
    return opening + accessible + text[head_end:]


def _finish(
    fig: Figure, ax: Any, title: str, y_label: str, percent: bool, integer: bool = False
) -> None:
    ax.set_title(title, loc="left", fontsize=10)
    if y_label:
        ax.set_ylabel(y_label)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=integer, nbins=6))
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _percent_limits(ax: Any, series: Series, percent: bool) -> None:
    """Shares in 0..1 get the full 0–100 % axis; anything outside keeps automatic limits."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if percent and all(0 <= v <= 1 for v in values):
        ax.set_ylim(0, 1)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def line_chart(
    title: str,
    months: Sequence[str],
    series: Series,
    *,
    y_label: str = "",
    percent: bool = False,
    chart_id: str | None = None,
) -> str:
    """A line chart over ``months`` (``YYYY-MM``), one line per series, as SVG text.

    A ``None`` value leaves a gap (no data, or suppressed). ``percent`` formats the y axis
    for shares in 0..1. ``chart_id`` prefixes the SVG's ids (default: from the title).
    """
    names = list(series)
    desc = f"Line chart over {len(months)} months"
    if months:
        desc += f" ({months[0]} to {months[-1]})"
    desc += f"; series: {', '.join(names) or 'none'}. The numbers are in the table beside it."
    with _LOCK, matplotlib.rc_context(RC):
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        ax = fig.add_subplot()
        if not months or not names:
            _no_data(ax)
        else:
            x = list(range(len(months)))
            for i, name in enumerate(names):
                ax.plot(
                    x,
                    _nan(series[name]),
                    marker="o",
                    markersize=4,
                    linewidth=1.6,
                    label=name,
                    color=PALETTE[i % len(PALETTE)],
                )
            step = max(1, math.ceil(len(months) / 12))  # at most 12 month labels
            ax.set_xticks(x[::step], list(months)[::step], rotation=30 if len(months) > 6 else 0)
            ax.set_xlim(-0.5, len(months) - 0.5)
            _percent_limits(ax, series, percent)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _finish(fig, ax, title, y_label, percent)
        return _svg(fig, title, desc, chart_id)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Series,
    *,
    y_label: str = "",
    percent: bool = False,
    integer: bool = False,
    chart_id: str | None = None,
) -> str:
    """Grouped bars: one group per label (e.g. per site), one bar per series, as SVG text.

    A ``None`` value draws no bar (no data, or suppressed). ``percent`` formats the y axis
    for shares in 0..1; ``integer`` puts only whole numbers on the axis (counts).
    ``chart_id`` prefixes the SVG's ids (default: from the title).
    """
    names = list(series)
    desc = (
        f"Bar chart of {len(labels)} groups; series: {', '.join(names) or 'none'}. "
        "The numbers are in the table beside it."
    )
    with _LOCK, matplotlib.rc_context(RC):
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        ax = fig.add_subplot()
        if not labels or not names:
            _no_data(ax)
        else:
            width = 0.8 / len(names)
            for i, name in enumerate(names):
                offset = (i - (len(names) - 1) / 2) * width
                values = _nan(series[name])
                xs = [j + offset for j, v in enumerate(values) if not math.isnan(v)]
                ax.bar(
                    xs,
                    [v for v in values if not math.isnan(v)],
                    width=width * 0.95,
                    label=name,
                    color=PALETTE[i % len(PALETTE)],
                )
            long = max(len(label) for label in labels) > 12 or len(labels) > 5
            rotation = (60 if len(labels) > 10 else 20) if long else 0
            ax.set_xticks(
                list(range(len(labels))),
                list(labels),
                rotation=rotation,
                ha="right" if long else "center",
                rotation_mode="anchor" if long else "default",
            )
            ax.set_xlim(-0.5, len(labels) - 0.5)
            _percent_limits(ax, series, percent)
            if len(names) > 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _finish(fig, ax, title, y_label, percent, integer)
        return _svg(fig, title, desc, chart_id)


# ---------------------------------------------------------------------------
# The dashboard's charts


@dataclass
class Chart:
    """One dashboard chart: its SVG and the table of the numbers it draws.

    ``columns`` head the table; each row starts with its label (month, site…) followed by
    one text cell per series ("suppressed" for a withheld figure, "–" for no data): a ratio
    as ``66.7 % (2/3)``, a money figure as ``<minor units> <currency>`` (``450 USD``), a
    yes-or-no as ``yes`` / ``no``.
    """

    id: str
    title: str
    svg: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _value(r: Mapping[str, Any] | None) -> float | None:
    if r is None or r.get("suppressed"):
        return None
    v = r.get("value")
    return None if v is None else float(v)


def _cell(r: Mapping[str, Any] | None, percent: bool = True) -> str:
    if r is None:
        return "–"
    if r.get("suppressed"):
        return "suppressed"
    v = r.get("value")
    if v is None:
        return "–"
    num, den = r.get("numerator"), r.get("denominator")
    shown = f"{float(v) * 100:.1f} %" if percent else f"{float(v):g}"
    return shown if num is None or den is None else f"{shown} ({num}/{den})"


def _money(m: Mapping[str, Any] | None) -> str:
    """A money figure as ``<amount in minor units> <currency>`` (``450 USD``)."""
    if m is None:
        return "–"
    if m.get("suppressed"):
        return "suppressed"
    return f"{int(m['amount_minor'])} {m['currency']}"


def _payment(reg: Mapping[str, Any], currency: str) -> Mapping[str, Any] | None:
    for p in reg["payments"]:
        if p["currency"] == currency:
            share: Mapping[str, Any] = p if p.get("suppressed") else p["women_share_of_payments"]
            return share
    return None


def _grams(mass_mg: int) -> str:
    """mg as exact grams: ``44800`` → ``44.8``, ``1234567891`` → ``1234567.891``."""
    whole, rest = divmod(mass_mg, 1000)
    return str(whole) if rest == 0 else f"{whole}.{rest:03d}".rstrip("0")


def _table(labels: Sequence[str], cells: Mapping[str, Sequence[str]]) -> list[list[str]]:
    return [[label, *(cells[name][i] for name in cells)] for i, label in enumerate(labels)]


def report_charts(
    gender: Mapping[str, Any], due_diligence: Mapping[str, Any] | None = None
) -> list[Chart]:
    """The dashboard's charts for a ``gender_report`` (and a ``due_diligence_report``).

    Trends over months (women's share of producers, women-led fine-gold share, women's
    share of payments per currency, GBV reports per 30 days across the sites), bars per
    site (shares, women-owned pits and units, income gap with the medians in its table,
    GBV reports per 30 days), bars per organisation (women among members and leaders) and,
    with ``due_diligence``, sites by colour, lot mass by risk and open flags by code.
    Suppressed figures stay suppressed: no bar, no
    point, and "suppressed" in the table.
    """
    charts: list[Chart] = []
    months = [m["month"] for m in gender["by_month"]]
    regs = [m["registrations"] for m in gender["by_month"]]

    def add(
        cid: str,
        title: str,
        svg: str,
        head: str,
        labels: Sequence[str],
        cells: Mapping[str, Sequence[str]],
    ) -> None:
        charts.append(Chart(cid, title, svg, [head, *cells], _table(labels, cells)))

    def add_shares(
        cid: str,
        title: str,
        chart: Callable[..., str],
        head: str,
        labels: Sequence[str],
        series: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """A chart of shares (as percentages) with its table, and ``extra`` table columns."""
        values = {k: [_value(x) for x in v] for k, v in series.items()}
        svg = chart(title, labels, values, percent=True, chart_id=cid)
        cells = {k: [_cell(x) for x in v] for k, v in series.items()}
        add(cid, title, svg, head, labels, {**cells, **(extra or {})})

    # trends over months
    shares = {
        "Women's share of producers": [r["women_share_of_producers"] for r in regs],
        "Fine gold from women-led teams": [r["women_led_fine_share"] for r in regs],
    }
    title = "Women in production, by month"
    add_shares("trend-producers", title, line_chart, "Month", months, shares)

    currencies = sorted({p["currency"] for r in regs for p in r["payments"]})
    pay = {cur: [_payment(r, cur) for r in regs] for cur in currencies}
    title = "Share of payments into women's hands, by month"
    add_shares("trend-payments", title, line_chart, "Month", months, pay)

    gbv_months = [m["site_indicators"]["gbv_per_30_days"] for m in gender["by_month"]]
    title = "Gender-based violence: reports per 30 days across the sites, by month"
    add(
        "trend-gbv",
        title,
        line_chart(
            title,
            months,
            {"Reports per 30 days": [_value(g) for g in gbv_months]},
            chart_id="trend-gbv",
        ),
        "Month",
        months,
        {"Reports per 30 days": [_cell(g, percent=False) for g in gbv_months]},
    )

    # bars per site
    sites = gender["by_site"]
    labels = [s["name"] or s["site"] for s in sites]

    def ind(s: Mapping[str, Any], key: str) -> Any:
        return None if s["indicators"] is None else s["indicators"][key]

    per_site = {
        "Producers (registrations)": [
            s["registrations"]["women_share_of_producers"] for s in sites
        ],
        "Workforce (assessment)": [ind(s, "women_share_of_workforce") for s in sites],
        "Fine gold, women-led teams": [s["registrations"]["women_led_fine_share"] for s in sites],
    }
    title = "Women's shares per site"
    add_shares("site-shares", title, bar_chart, "Site", labels, per_site)

    owned: dict[str, list[int | None]] = {"Pits": [], "Processing units": []}
    for s in sites:
        wo = ind(s, "women_owned")
        owned["Pits"].append(None if wo is None else wo["pits"])
        owned["Processing units"].append(None if wo is None else wo["processing_units"])
    title = "Women-owned pits and processing units per site"
    add(
        "site-owned",
        title,
        bar_chart(
            title,
            labels,
            {k: [None if x is None else float(x) for x in v] for k, v in owned.items()},
            integer=True,
            chart_id="site-owned",
        ),
        "Site",
        labels,
        {k: ["–" if x is None else str(x) for x in v] for k, v in owned.items()},
    )

    incomes = [ind(s, "daily_income_median") for s in sites]
    gaps = [None if i is None else i["gap"] for i in incomes]
    title = "Gap in median daily income, women vs men (1 − women/men)"
    add_shares(
        "site-income-gap",
        title,
        bar_chart,
        "Site",
        labels,
        {"Income gap": gaps},
        {
            # the medians themselves, in the table only (sites pay in different currencies)
            "Women, median per day": [_money(None if i is None else i["women"]) for i in incomes],
            "Men, median per day": [_money(None if i is None else i["men"]) for i in incomes],
        },
    )

    gbv = [ind(s, "gbv_per_30_days") for s in sites]
    title = "Reports of gender-based violence per 30 days, per site"
    add(
        "site-gbv",
        title,
        bar_chart(
            title, labels, {"Reports per 30 days": [_value(g) for g in gbv]}, chart_id="site-gbv"
        ),
        "Site",
        labels,
        {"Reports per 30 days": [_cell(g, percent=False) for g in gbv]},
    )

    organisations = gender["organisations"]["items"]
    org_labels = [o["name"] or o["actor"] for o in organisations]
    org_shares = {
        "Women among members": [o["women_share_of_members"] for o in organisations],
        "Women among leaders": [o["women_share_of_leaders"] for o in organisations],
    }
    title = "Women among members and leaders, per organisation"
    add_shares(
        "org-shares",
        title,
        bar_chart,
        "Organisation",
        org_labels,
        org_shares,
        {
            "Led by a woman": [
                "–" if o["women_led"] is None else "yes" if o["women_led"] else "no"
                for o in organisations
            ],
        },
    )

    if due_diligence is not None:
        colours = list(due_diligence["sites"]["by_colour"])
        counts = [due_diligence["sites"]["by_colour"][c] for c in colours]
        title = "Sites by ICGLR colour"
        add(
            "dd-colours",
            title,
            bar_chart(
                title,
                colours,
                {"Sites": [float(c) for c in counts]},
                integer=True,
                chart_id="dd-colours",
            ),
            "Colour",
            colours,
            {"Sites": [str(c) for c in counts]},
        )
        risks = list(due_diligence["mass_by_risk"])
        mass_mg = [int(due_diligence["mass_by_risk"][r]["mass_mg"]) for r in risks]
        grams = [m / 1000 for m in mass_mg]
        title = "Mass of lots in hand by risk class (g)"
        add(
            "dd-mass",
            title,
            bar_chart(title, risks, {"Mass (g)": grams}, y_label="g", chart_id="dd-mass"),
            "Risk",
            risks,
            {"Mass (g)": [_grams(m) for m in mass_mg]},
        )
        codes = list(due_diligence["open_flags"]["by_code"])
        n = [due_diligence["open_flags"]["by_code"][c] for c in codes]
        title = "Open flags by code"
        add(
            "dd-flags",
            title,
            bar_chart(
                title,
                codes,
                {"Open flags": [float(x) for x in n]},
                integer=True,
                chart_id="dd-flags",
            ),
            "Code",
            codes,
            {"Open flags": [str(x) for x in n]},
        )
    return charts
