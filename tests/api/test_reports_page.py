"""The reports dashboard (``GET /reports``, issue 7) in English and French.

The page is served by the app over the played scenario (see test_reports_http.py). Each
chart of ``ledger.charts.report_charts`` must be there as inline SVG with the table of its
numbers beside it; the page must be self-contained (no script, nothing fetched) and, in
headless Chromium at a phone's width (360 px), fit without horizontal scrolling, with no
chart text cut off. The screenshots land in ``artifacts/`` for a person to look at.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from api import i18n
from api.i18n import NBSP, NNBSP, t
from api.reports import CHART_TITLES, LEGEND, SERIES, Filters, render_dashboard
from ledger.charts import Chart, report_charts
from ledger.reports import due_diligence_report, gender_report
from tests.api.test_reports_http import TODAY, Played, play

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
HOST = "http://goldtrail.test"
_SPACE = re.compile(r"[ \t\n\r\f]+")
#: table columns that no chart draws (the medians: two currencies share no axis)
TABLE_ONLY = {"Women, median per day", "Men, median per day", "Led by a woman"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


# ---------------------------------------------------------------------------
# A small DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    def all(self, tag: str | None = None, **attrs: str) -> Iterator[Node]:
        """Descendants with this tag and these attribute values (``class_`` for class)."""
        for child in self.children:
            if isinstance(child, Node):
                wanted = {k.rstrip("_"): v for k, v in attrs.items()}
                if (tag is None or child.tag == tag) and all(
                    child.attrs.get(k) == v for k, v in wanted.items()
                ):
                    yield child
                yield from child.all(tag, **attrs)

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = list(self.all(tag, **attrs))
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def text(self, *, skip: tuple[str, ...] = ()) -> str:
        parts = []
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag not in skip:
                parts.append(child.text(skip=skip))
        return _SPACE.sub(" ", " ".join(parts)).strip()  # ASCII space only: keep NBSP

    def own_text(self) -> str:
        """The text of the node without its <small> children."""
        return self.text(skip=("small",))


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, (self.stack[-1].tag, tag, self.getpos())
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def visible(root: Node) -> str:
    body = root.one("body")
    text = body.text(skip=("style", "title", "desc"))
    return text.replace(NBSP, " ").replace(NNBSP, " ")


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    world = play(tmp_path_factory.mktemp("dashboard"))
    with world.client:
        yield world


@pytest.fixture(scope="module")
def charts(played: Played) -> list[Chart]:
    gender = gender_report(played.events, played.memory.state)
    dd = due_diligence_report(played.events, played.memory.state, today=TODAY)
    return report_charts(gender, dd)


@pytest.fixture(scope="module")
def pages(played: Played) -> dict[str, Any]:
    """The dashboard in English and in French, as the app serves it."""
    out = {}
    for lang in ("en", "fr"):
        response = played.client.get(f"/reports?lang={lang}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        out[lang] = response
    return out


# ---------------------------------------------------------------------------
# What the tables must say


_FRACTION = re.compile(r"^(?P<value>.+) \((?P<num>-?\d+)/(?P<den>\d+)\)$")
_MONEY = re.compile(r"^(?P<minor>-?\d+) (?P<currency>[A-Z]{3})$")


def expected_cell(lang: str, cell: str) -> tuple[str, str]:
    """(value, exact fraction) as the page shows a cell of ``ledger.charts``."""
    if cell == "suppressed":
        return t(lang, "reports.suppressed"), ""
    if cell in ("yes", "no"):
        return {"en": {"yes": "Yes", "no": "No"}, "fr": {"yes": "Oui", "no": "Non"}}[lang][cell], ""
    money = _MONEY.match(cell)
    if money is not None:  # a median daily income, in minor units
        return i18n.money(lang, int(money.group("minor")), money.group("currency")), ""
    match = _FRACTION.match(cell)
    value, detail = (cell, "") if match is None else (match.group("value"), "")
    if match is not None:
        num, den = int(match.group("num")), int(match.group("den"))
        sep = "," if lang == "en" else NNBSP
        detail = f"{num:,} / {den:,}".replace(",", sep)
    if lang == "fr":
        value = re.sub(r"(\d)\.(\d)", r"\1,\2", value)
    return value.replace(" %", NBSP + "%"), detail


def expected_label(lang: str, chart: Chart, label: str) -> str:
    if chart.id == "dd-colours":
        return t(lang, f"site.{label}")
    if chart.id == "dd-mass":
        return t(lang, f"risk.{label}")
    return label


def check_charts(lang: str, root: Node, charts: list[Chart]) -> None:
    blocks = list(root.all("div", class_="chart-block"))
    assert [b.attrs["id"] for b in blocks] == [c.id for c in charts]
    for block, chart in zip(blocks, charts, strict=True):
        title = chart.title if lang == "en" else t(lang, CHART_TITLES[chart.id])
        assert block.one("h3").text() == title
        # the chart, inline
        svg = block.one("div", class_="fig").one("svg")
        assert svg.attrs["role"] == "img"
        assert svg.one("title").text() == title
        assert list(svg.all("image")) == [] and list(svg.all("script")) == []
        # and its numbers beside it
        table = block.one("table")
        columns = [th.text() for th in table.one("thead").all("th")]
        if lang == "en":
            assert columns[0] == chart.columns[0]
        assert len(columns) == len(chart.columns)
        body = list(table.one("tbody").all("tr"))
        assert len(body) == len(chart.rows)
        for tr, row in zip(body, chart.rows, strict=True):
            assert tr.one("th").text() == expected_label(lang, chart, row[0])
            tds = list(tr.all("td"))
            assert [td.attrs["data-label"] for td in tds] == columns[1:]
            for td, cell in zip(tds, row[1:], strict=True):
                value, detail = expected_cell(lang, cell)
                assert td.own_text() == value, (chart.id, row, cell)
                small = list(td.all("small"))
                assert (small[0].text() if small else "") == detail
                assert ("sup" in td.attrs.get("class", "")) == (cell == "suppressed")
        note = [p for p in block.all("p", class_="note")]
        has_suppressed = any(c == "suppressed" for row in chart.rows for c in row[1:])
        assert len(note) == (1 if has_suppressed else 0)


def check_self_contained(html: str, root: Node) -> None:
    assert "<script" not in html.lower()
    for tag in ("img", "link", "iframe", "object", "embed", "image", "use"):
        for node in root.all(tag):
            ref = node.attrs.get("href") or node.attrs.get("xlink:href") or ""
            assert tag == "use" and ref.startswith("#"), (tag, node.attrs)
    for node in root.all("a"):
        assert node.attrs["href"].startswith(("/v1/", "?")), node.attrs["href"]
    assert root.one("form").attrs["action"] == "/reports"
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "@import" not in html and "@font-face" not in html
    assert not re.search(r"url\((?!#)", html)
    csp = root.one("meta", **{"http-equiv": "Content-Security-Policy"}).attrs["content"]
    assert "default-src 'none'" in csp and "script-src" not in csp


# ---------------------------------------------------------------------------
# English and French


def test_dashboard_in_english(pages: dict[str, Any], charts: list[Chart]) -> None:
    html = pages["en"].text
    root = dom(html)
    assert '<html lang="en">' in html
    check_self_contained(html, root)
    check_charts("en", root, charts)
    assert [c.id for c in charts] == list(CHART_TITLES)  # every chart the core draws
    text = visible(root)
    for expected in (
        "Gold reports: gender and due diligence",
        "Period: the whole log",
        "6, of which 4 by women-led teams",
        "36 women and 20 men (64.3 % women)",
        "83.5 % (41.787 g of 50.067 g)",
        "CDF: withheld (fewer than 5 people)",
        "UGX: 70.8 % (groups totalling 20 producers)",
        "Registrations paying 1 to 4 women or 1 to 4 men, left out of every payment figure: 5",
        "Green 2, Yellow 1, Red 0, Blue 2",
        "4 (hold 1, high 0, medium 3)",
        "MAK-2026-0002",
        "2; time to resolve: median 71 h, longest 94 h",
        "Site colours as of 1 Feb 2027",
        # organisations (issue 7: "women-led organisations and women's share of members
        # and leaders"): 3 of 4 women-led; members 181 of 326, leaders 15 of 27
        "Organisations led by women 3 of 4 (75.0 %)",
        "Women among members: 55.5 % (181 of 326)",
        "Women among leaders: 55.6 % (15 of 27)",
        "Women among members and leaders, per organisation",
        # the medians of daily income beside the gap (minor units shown as money)
        "UGX 10,000",
        "USD 4.50",
        "USD 6.00",
    ):
        assert expected in text, expected
    # Epulu's 3 women's median (300 minor units of USD) is shown nowhere
    assert "USD 3.00" not in text
    # the small groups' payments are in no form anywhere on the page (MAK-2026-0002's, and
    # KIT-2026-0007's 60 000 UGX into 1 woman's hands)
    assert not re.search(r"30[ ,\u202f]?000[ ,\u202f]?000|20[ ,\u202f]?000[ ,\u202f]?000", html)
    assert not re.search(r"(?<![\d ,\u202f])60[ ,\u202f]?000(?![ ,\u202f]?\d)", html)
    links = {a.text(): a.attrs["href"] for a in root.one("ul", class_="downloads").all("a")}
    assert links == {
        "Gender report (JSON)": "/v1/reports/gender",
        "Gender report (CSV)": "/v1/reports/gender?format=csv",
        "Due-diligence report (JSON)": "/v1/reports/due-diligence",
        "Lot events, EPCIS 2.0 (JSON-LD)": "/v1/export/epcis",
        "Every lot (CSV)": "/v1/export/lots.csv",
    }
    assert pages["en"].headers["vary"] == "Accept-Language"


def test_dashboard_in_french(pages: dict[str, Any], charts: list[Chart]) -> None:
    html = pages["fr"].text
    root = dom(html)
    assert '<html lang="fr">' in html
    check_self_contained(html, root)
    check_charts("fr", root, charts)
    text = visible(root)
    for expected in (
        "Rapports sur l'or : genre et devoir de diligence",
        "Période : tout le journal",
        "6, dont 4 par des équipes dirigées par des femmes",
        "36 femmes et 20 hommes (64,3 % de femmes)",
        "CDF : masqué (moins de 5 personnes)",
        "UGX : 70,8 % (groupes totalisant 20 productrices et producteurs)",
        "Vert 2, Jaune 1, Rouge 0, Bleu 2",
        "médiane 71 h, le plus long 94 h",
        "Part des paiements remis aux femmes, par mois",
        "1 700 000 / 2 400 000",
        "masqué",
        "Organisations dirigées par des femmes 3 sur 4 (75,0 %)",
        "Femmes parmi les membres : 55,5 % (181 sur 326)",
        "Femmes parmi les dirigeants : 55,6 % (15 sur 27)",
        "10 000 UGX",
        "4,50 USD",
        "Femmes parmi les membres et les dirigeants, par organisation",
    ):
        assert expected in text, expected
    # the SVGs speak French too: titles, legends, labels, accessible descriptions
    for chart in charts:
        svg = root.one("div", id=chart.id).one("svg")
        assert svg.one("desc").text().startswith(t("fr", CHART_TITLES[chart.id]))
        texts = [n.text() for n in svg.all("text")]
        drawn = [c for c in chart.columns[1:] if c not in TABLE_ONLY]
        for name in drawn:
            key = LEGEND.get(name) or SERIES.get(name)
            if key is not None and len(drawn) > 1:  # a legend is drawn
                assert t("fr", key) in texts, (chart.id, name)
    colours = [n.text() for n in root.one("div", id="dd-colours").one("svg").all("text")]
    assert {"Vert", "Jaune", "Rouge", "Bleu"} <= set(colours)
    # no English interface string is left: the page's own strings, the charts' strings
    english = {v for k, v in i18n.EN.items() if k.startswith("reports.") and v != i18n.FR[k]}
    english |= {c.title for c in charts} | {n for c in charts for n in c.columns} | {"no data"}
    french = {v for k, v in i18n.FR.items() if k.startswith("reports.")}
    for phrase in english - french:
        if "{" not in phrase and len(phrase) > 5:
            assert not re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text), phrase
    assert "suppressed" not in text


def test_language_from_accept_language(played: Played) -> None:
    headers = {"Accept-Language": "fr-CD,fr;q=0.9,en;q=0.5"}
    french = played.client.get("/reports?country=CH", headers=headers)
    assert '<html lang="fr">' in french.text
    english = played.client.get("/reports?country=CH&lang=en", headers=headers)
    assert '<html lang="en">' in english.text
    # with nothing in the country, every chart says so
    root = dom(french.text)
    assert "aucune donnée" in [n.text() for n in root.all("text")]


def test_dashboard_filters(played: Played) -> None:
    response = played.client.get("/reports?country=ug&from=2026-11-01&lang=en")
    assert response.status_code == 200
    root = dom(response.text)
    chips = [li.text() for li in root.one("ul", class_="chosen").all("li")]
    assert chips == [f"Period: from 1{NBSP}Nov{NBSP}2026", "Country: Uganda"]
    body = root.one("div", id="site-shares").one("tbody")
    sites = [tr.one("th").text() for tr in body.all("tr")]
    assert sites == ["Tiira hard-rock site", "Kitumbi pits", "Nalutuntu pits"]
    links = [a.attrs["href"] for a in root.one("ul", class_="downloads").all("a")]
    assert links == [
        "/v1/reports/gender?from=2026-11-01&country=UG",
        "/v1/reports/gender?from=2026-11-01&country=UG&format=csv",
        "/v1/reports/due-diligence?from=2026-11-01&country=UG",
        "/v1/export/epcis?from=2026-11-01",
        "/v1/export/lots.csv",
    ]
    form = root.one("form")
    values = {i.attrs["name"]: i.attrs.get("value", "") for i in form.all("input")}
    assert values == {
        "from": "2026-11-01",
        "to": "",
        "country": "UG",
        "site": "",
        "cooperative": "",
        "lang": "en",
    }
    languages = {a.text(): a.attrs["href"] for a in root.one("footer").all("a")}
    assert languages["Français"] == "?from=2026-11-01&country=UG&lang=fr"
    # UG lots: 28 women of 44 producers
    assert "28 women and 16 men (63.6 % women)" in visible(root)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_bad_filters_give_an_html_page(played: Played, lang: str) -> None:
    response = played.client.get(f"/reports?from=2026-12-01&to=2026-11-01&lang={lang}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text = visible(dom(response.text))
    assert t(lang, "reports.bad_filters.title") in text
    assert "from (2026-12-01) is after to (2026-11-01)" in text


def test_data_is_escaped(played: Played) -> None:
    gender = gender_report(played.events, played.memory.state)
    dd = due_diligence_report(played.events, played.memory.state, today=TODAY)
    hostile = copy.deepcopy(gender)
    hostile["by_site"][0]["name"] = '<script>alert("x")</script> & Co'
    html = render_dashboard("en", hostile, dd, Filters(), origin="o<b>", size=1)
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "o&lt;b&gt;" in html
    dom(html)  # still well nested


# ---------------------------------------------------------------------------
# In a browser, at a phone's width

MEASURE = """() => {
  const doc = document.documentElement;
  const cut = [];
  for (const svg of document.querySelectorAll('.fig svg')) {
    const box = svg.getBoundingClientRect();
    for (const text of svg.querySelectorAll('text')) {
      const r = text.getBoundingClientRect();
      if (r.left < box.left - 1 || r.right > box.right + 1 ||
          r.top < box.top - 1 || r.bottom > box.bottom + 1) {
        cut.push(svg.closest('.chart-block').id + ': ' + text.textContent);
      }
    }
  }
  const tables = [...document.querySelectorAll('.numbers')]
    .filter(n => n.scrollWidth > n.clientWidth + 1).map(n => n.parentElement.id);
  const wide = [...document.querySelectorAll('body *')]
    .filter(n => n.getBoundingClientRect().right > doc.clientWidth + 1
                 && !n.closest('svg') && !n.closest('caption') && !n.closest('thead'))
    .map(n => n.tagName + '.' + n.className);
  return {scroll: doc.scrollWidth, client: doc.clientWidth, cut, tables, wide,
          svgs: document.querySelectorAll('.fig > svg').length};
}"""


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_dashboard_at_360_px(page: Any, pages: dict[str, Any], lang: str) -> None:
    response = pages[lang]
    requests: list[str] = []
    errors: list[str] = []

    def serve(route: Any) -> None:
        if route.request.url == f"{HOST}/reports?lang={lang}":
            route.fulfill(
                status=200, content_type=response.headers["content-type"], body=response.text
            )
        else:
            route.abort()

    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.route("**/*", serve)
    page.set_viewport_size({"width": 360, "height": 780})
    page.goto(f"{HOST}/reports?lang={lang}")
    page.wait_for_load_state("load")
    assert requests == [f"{HOST}/reports?lang={lang}"]  # nothing else is fetched
    assert errors == []  # no CSP violation either
    found = page.evaluate(MEASURE)
    assert found["scroll"] <= 360 and found["client"] == 360, found
    assert found["wide"] == [], found["wide"]
    assert found["tables"] == [], found["tables"]
    assert found["cut"] == [], found["cut"]
    assert found["svgs"] == len(CHART_TITLES)
    ARTIFACTS.mkdir(exist_ok=True)
    name = "reports-360.png" if lang == "en" else "reports-360-fr.png"
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    # on a wide screen each table sits beside its chart
    page.set_viewport_size({"width": 1280, "height": 900})
    fig = page.locator("#site-shares .fig").bounding_box()
    table = page.locator("#site-shares .numbers").bounding_box()
    assert table["x"] > fig["x"] + fig["width"] - 1 and abs(table["y"] - fig["y"]) < 40
    assert page.evaluate(MEASURE)["cut"] == []
