"""The human lot page (api/pages.py): rendered from real verifier reports of the demo
scenario, in English and French, then loaded in Chromium at a phone's width (360 px).

The screenshots land in ``artifacts/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import copy
import re
import string
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from api import i18n
from api.i18n import t
from api.pages import choose_language, render_error_page, render_lot_page
from clients.scenario import load_scenario
from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner
from ledger.events import FLAG_CLASS, TYPE_MODELS, AssayMethod, Form, Outcome, Process
from ledger.protocol import canonical, event_id, public_key_hex
from ledger.replay import MemoryLedger
from ledger.reports import MIN_GROUP
from ledger.verify import Report, verify_bundle
from tests import factories

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
ORIGIN = "demo.goldtrail.example/log"
SERVER = "demo.goldtrail.example"
BAR = "ALP-2026-118842"
DORE = "KLA-2026-0101"
SCENARIO = load_scenario()
MAX_PAGE_BYTES = 60 * 1024
NNBSP, NBSP = "\u202f", "\u00a0"


# ---------------------------------------------------------------------------
# Reports from the played scenario


@dataclass
class Log:
    ledger: MemoryLedger
    signer: LogSigner
    registrar_key: str

    def eid(self, seq: int) -> str:
        return event_id(self.ledger.envelopes[seq]["body"])

    def bundle(
        self, lot: str, *, head: str | None = None, label_at: str | None = None
    ) -> dict[str, Any]:
        size = len(self.ledger.leaves)
        return build_bundle(
            self.ledger,
            lot=lot,
            head=head or self.ledger.state.lots[lot].head,
            label_at=label_at,
            origin=ORIGIN,
            verifier_key=self.signer.verifier_key,
            registrar_key=self.registrar_key,
            checkpoint_note=self.signer.sign(size, self.ledger.root()).note,
            size=size,
        )

    def report(self, bundle: dict[str, Any]) -> Report:
        return verify_bundle(canonical(bundle), self.signer.verifier_key, self.registrar_key)


def play(events: list[dict[str, Any]]) -> Log:
    registrar = nacl.signing.SigningKey(b"\x31" * 32)
    ledger, _ = factories.play_scenario(events, origin=ORIGIN, registrar=registrar)
    return Log(ledger, LogSigner(ORIGIN, b"\x32" * 32), public_key_hex(registrar))


@pytest.fixture(scope="module")
def log() -> Log:
    return play(SCENARIO["events"])


@pytest.fixture(scope="module")
def bar(log: Log) -> tuple[dict[str, Any], Report]:
    bundle = log.bundle(BAR, label_at=log.ledger.state.lots[BAR].head)
    report = log.report(bundle)
    assert report.ok, [str(f) for f in report.failures]
    return bundle, report


def render(
    log: Log,
    bundle: dict[str, Any] | None,
    report: Report,
    lang: str = "en",
    *,
    head_is_newer: bool = False,
    with_bundle: bool = True,
) -> str:
    return render_lot_page(
        report,
        lang=lang,
        bundle_url=f"/v1/lots/{report.lot}/bundle?at={report.label_at or ''}",
        label_at=report.label_at,
        head_is_newer=head_is_newer,
        log_key=log.signer.verifier_key,
        server_name=SERVER,
        bundle=bundle if with_bundle else None,
        registrar_key=log.registrar_key,
    )


class _Text(HTMLParser):
    """The visible text of a page, one string per element, with <style> and <title> left
    out; plus every attribute value that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title", "script"):
            self.skip += 1
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster", "xlink:href"):
                self.refs.append((tag, name, value or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.parts.append(data)


def visible(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts).replace(NBSP, " ").replace(NNBSP, " "))


def refs(html: str) -> list[tuple[str, str, str]]:
    parser = _Text()
    parser.feed(html)
    return parser.refs


def section(html: str, heading_id: str) -> str:
    """The HTML of the <section> labelled by ``heading_id``."""
    match = re.search(
        rf'<section[^>]*aria-labelledby="{heading_id}"[^>]*>(.*?)</section>', html, re.S
    )
    assert match is not None, heading_id
    return match.group(1)


# ---------------------------------------------------------------------------
# Language choice and strings


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [
        (None, None, "en"),
        ("", None, "en"),
        ("fr", None, "fr"),
        ("fr-CD,fr;q=0.9,en;q=0.8", None, "fr"),
        ("sw-CD, fr;q=0.7, en;q=0.5", None, "fr"),
        ("en-GB,en;q=0.9,fr;q=0.8", None, "en"),
        ("de-DE,de;q=0.9", None, "en"),
        ("en;q=0.4, fr;q=0.6", None, "fr"),
        ("fr;q=0, en;q=0.1", None, "en"),
        ("fr;q=0", None, "en"),
        ("*", None, "en"),
        ("FR-cd", None, "fr"),
        ("fr;q=abc, en", None, "en"),
        ("garbage;;;,,", None, "en"),
        ("en", "fr", "fr"),
        ("fr", "en", "en"),
        ("fr", "FR-CD", "fr"),
        ("fr", "de", "fr"),
        (None, "xx", "en"),
    ],
)
def test_choose_language(accept: str | None, query: str | None, expected: str) -> None:
    assert choose_language(accept, query) == expected


def test_every_string_exists_in_both_languages_with_the_same_placeholders() -> None:
    assert set(i18n.EN) == set(i18n.FR)
    fields = string.Formatter()
    for key in i18n.EN:
        en = {name for _, name, _, _ in fields.parse(i18n.EN[key]) if name}
        fr = {name for _, name, _, _ in fields.parse(i18n.FR[key]) if name}
        assert en == fr, key
        assert i18n.FR[key].strip(), key


def test_every_vocabulary_value_has_a_translation() -> None:
    for lang in i18n.LANGUAGES:
        for code in FLAG_CLASS:
            assert i18n.has(lang, f"code.{code}"), (lang, code)
        for cls in {*FLAG_CLASS.values(), "low"}:
            assert i18n.has(lang, f"risk.{cls}"), (lang, cls)
        for cls in set(FLAG_CLASS.values()):
            assert i18n.has(lang, f"class.{cls}"), (lang, cls)
        for form in Form:
            assert i18n.has(lang, f"form.{form}"), (lang, form)
        for process in Process:
            assert i18n.has(lang, f"process.{process}"), (lang, process)
        for method in AssayMethod:
            assert i18n.has(lang, f"method.{method}"), (lang, method)
        for outcome in Outcome:
            assert i18n.has(lang, f"outcome.{outcome}"), (lang, outcome)
        for kind in TYPE_MODELS:
            if kind.startswith("lot."):
                assert i18n.has(lang, f"event.{kind}"), (lang, kind)
        for colour in ("green", "yellow", "red", "blue"):
            assert i18n.has(lang, f"site.{colour}") and i18n.has(lang, f"site.{colour}.means")
    assert t("en", "code.worst_forms_child_labour") == "Worst forms of child labour"
    assert t("fr", "code.worst_forms_child_labour") == "Pires formes de travail des enfants"


def test_number_formats() -> None:
    assert i18n.mass("en", 44_800) == f"44.8{NBSP}g (44,800{NBSP}mg)"
    assert i18n.mass("fr", 44_800) == f"44,8{NBSP}g (44{NNBSP}800{NBSP}mg)"
    assert i18n.mass("en", 350_000_000) == f"350{NBSP}kg (350,000,000{NBSP}mg)"
    assert i18n.mass("en", 7) == f"0.007{NBSP}g (7{NBSP}mg)"
    assert i18n.fineness("en", 999_900, "bar") == f"999.9{NBSP}‰ (999,900{NBSP}ppm)"
    assert i18n.fineness("fr", 872_000, "dore") == f"872{NBSP}‰ (872{NNBSP}000{NBSP}ppm)"
    assert i18n.fineness("en", 6, "ore") == f"6{NBSP}g/t (6{NBSP}ppm)"
    assert i18n.money("en", 198_000_000, "CDF") == f"CDF{NBSP}1,980,000.00"
    assert i18n.money("fr", 5_650_000, "UGX") == f"5{NNBSP}650{NNBSP}000{NBSP}UGX"
    assert i18n.percent("en", 37_537, 44_817) == f"84{NBSP}%"
    assert i18n.percent("en", 1, 2) == f"50{NBSP}%"
    assert i18n.percent("en", 0, 0) == f"0{NBSP}%"
    assert i18n.date("fr", "2026-11-20T14:00:00Z") == f"20{NBSP}nov.{NBSP}2026"
    assert i18n.time_of_day("fr", "2026-11-20T14:05:00Z") == f"14{NBSP}h{NBSP}05{NBSP}UTC"
    assert i18n.country("fr", "CH") == "Suisse"
    assert i18n.country("en", "CD") == "DR Congo"
    assert i18n.country("en", "ZZ") == "ZZ"


# ---------------------------------------------------------------------------
# The page from a real report


def test_english_page(log: Log, bar: tuple[dict[str, Any], Report]) -> None:
    bundle, report = bar
    html = render(log, bundle, report)
    text = visible(html)
    assert len(html.encode()) < MAX_PAGE_BYTES
    assert html.startswith("<!doctype html>")
    assert '<html lang="en">' in html
    # the verdict comes first
    assert text.startswith("Verified by this server")
    assert f"public log {ORIGIN} (44 entries)" in text
    # lot identity
    for expected in (
        BAR,
        "Refined gold bar",
        "44.8 g (44,800 mg)",
        "999.9 ‰ (999,900 ppm)",
        "Fine gold 44.795 g",
        "Bar serial AP-2026-118842 (made in 2026)",
        "Held by Alpine Precious Metals Refinery (demo), Switzerland",
    ):
        assert expected in text, expected
    # origin sites with their ICGLR colour, as a dot and a word
    origins = visible(section(html, "origins"))
    for expected in (
        "Green — certified Tiira hard-rock site Busia District, Uganda",
        "Yellow — may produce, must remedy Kitumbi pits",
        "Makala alluvial site Ituri, Mambasa territory, DR Congo",
        "Operated by Coopérative des femmes minières de Mambasa",
        "Conflict-affected or high-risk area",
        "Assessed on 20 Oct 2026, valid until 20 Jan 2027",
    ):
        assert expected in origins, expected
    assert origins.count("Green") == 2
    assert section(html, "origins").count("<circle") == 3
    assert '#f2c200"' in section(html, "origins")  # the yellow dot
    # custody and processing, with organisations and dates, oldest first
    timeline = visible(section(html, "timeline"))
    assert timeline.index("Registered at the mine site by Kassanda") < timeline.index(
        "Processed by Alpine Precious Metals Refinery (demo)"
    )
    for expected in (
        "16 Nov 2026 · 15:00 UTC Registered at the mine site by Kassanda Artisanal Diggers",
        "Received by Comptoir d'achat Bunia (demo)",
        "Smelting Made: KLA-2026-0101 (doré, 51.5 g)",
        "Fire assay: 872 ‰",
        "Exported by Lake Victoria Bullion Exporters (demo) Destination: Switzerland",
        "Flag resolved by Great Lakes Independent Audit (demo)",
        "Outcome: remediated",
        "20 Nov 2026 · 14:00 UTC · ◆ this lot Processed by Alpine Precious Metals Refinery",
        "Refining Made: ALP-2026-118842 (refined gold bar, 44.8 g)",
    ):
        assert expected in timeline, expected
    assert section(html, "timeline").count("<li") == len(report.timeline) == 27
    # no prices, no seller's sex: the timeline shows no money at all
    assert "UGX" not in timeline and "USD" not in timeline and "woman" not in timeline
    # flags with class and status
    flags = visible(section(html, "flags"))
    assert "Risk level Medium" in flags
    assert "Mine site rated yellow: may produce, must remedy Class: Medium Open" in flags
    assert "Mined in a conflict-affected or high-risk area Class: Medium Open" in flags
    # the gender summary in words, with its chart
    gender = section(html, "gender")
    words = visible(gender)
    assert "30 women and 18 men produced this gold." in words
    assert "84 % of its fine gold came from teams led by women." in words
    # CDF: MAK-2026-0001 has 3 men; UGX: KIT-2026-0007 has 1 woman, TII-2026-0043 2 men
    assert "CDF: withheld to protect privacy" in words
    assert "UGX: withheld to protect privacy" in words
    assert '<svg class="chart"' in gender and 'role="img"' in gender
    assert 'width="200"' in gender  # 30 of 48 producers on a 320-unit bar
    assert 'width="268"' in gender  # 84 % of the fine gold
    # offline verification
    verify = visible(section(html, "verify"))
    assert "This verdict is this server's own check." in verify
    assert "Full trust comes from verifying the bundle offline" in verify
    # the command names the file the download is saved as, and pins both keys
    assert (
        f"goldtrail verify {BAR}.bundle.json --log-key '{log.signer.verifier_key}' "
        f"--registrar-key {log.registrar_key}"
    ) in verify
    assert f"Download the bundle (saved as {BAR}.bundle.json)" in verify
    assert f"Log key {log.signer.verifier_key} Registrar key {log.registrar_key}" in verify
    assert f'href="/v1/lots/{BAR}/bundle?at={report.label_at}"' in html
    assert "This label shows the lot's latest step." in text
    assert f"Page served by {SERVER}" in text


def test_french_page(log: Log, bar: tuple[dict[str, Any], Report]) -> None:
    bundle, report = bar
    html = render(log, bundle, report, "fr")
    text = visible(html)
    assert '<html lang="fr">' in html
    assert text.startswith("Vérifié par ce serveur")
    for expected in (
        "Lingot d'or affiné",
        "44,8 g (44 800 mg)",
        "999,9 ‰ (999 900 ppm)",
        "Alpine Precious Metals Refinery (demo), Suisse",
        "Vert — certifié",
        "Jaune — peut produire, doit remédier",
        "RD Congo",
        "Zone de conflit ou à haut risque",
        "Fonte Produit : KLA-2026-0101 (doré, 51,5 g)",
        "Essai par coupellation : 872 ‰",
        "Destination : Suisse",
        "Signalement résolu par Great Lakes Independent Audit (demo)",
        "Niveau de risque Moyen",
        "Site minier classé jaune : peut produire, doit remédier Classe : Moyen Ouvert",
        "Extrait dans une zone de conflit ou à haut risque",
        "30 femmes et 18 hommes ont produit cet or.",
        "84 % de son or fin provient d'équipes dirigées par des femmes.",
        "CDF : montant masqué pour protéger la vie privée",
        "Ce verdict est la vérification faite par ce serveur.",
        "Télécharger le paquet de preuves (JSON)",
        "20 nov. 2026 · 14 h 00 UTC · ◆ ce lot",
    ):
        assert expected in text, expected
    # no English interface string leaks into the French page
    for key, en in i18n.EN.items():
        if en != i18n.FR[key] and "{" not in en and len(en) > 5 and key != "page.lang_name":
            assert not re.search(rf"(?<!\w){re.escape(en)}(?!\w)", text), (key, en)


def test_french_page_has_no_english_interface_words(
    log: Log, bar: tuple[dict[str, Any], Report]
) -> None:
    bundle, report = bar
    text = visible(render(log, bundle, report, "fr"))
    for word in ("Verified", "Fineness", "Held by", "Received by", "Offered", "women", " of "):
        assert word not in text, word


def test_failing_report_page(log: Log, bar: tuple[dict[str, Any], Report]) -> None:
    bundle, _ = bar
    bad = copy.deepcopy(bundle)
    bad["entries"][26]["envelope"]["body"]["mass_mg"] += 1
    report = log.report(bad)
    assert not report.ok
    for lang, title in (("en", "Not verified"), ("fr", "Non vérifié")):
        html = render(log, bad, report, lang)
        text = visible(html)
        assert text.startswith(title)
        verdict = section(html, "verdict")
        assert 'class="verdict bad"' in html
        for failure in report.failures:
            assert str(failure) in visible(verdict)
        assert "the inclusion proof does not match the checkpoint" in text
        # nothing the bundle failed to prove is shown
        for heading in ("lot", "origins", "timeline", "flags", "gender"):
            assert f'aria-labelledby="{heading}"' not in html
        assert "30 women" not in text and "30 femmes" not in text and "CDF" not in text
        # but the bundle can still be downloaded and checked offline
        assert 'aria-labelledby="verify"' in html and "--log-key" in text


def test_unverifiable_bytes_page(log: Log) -> None:
    report = verify_bundle(b"not json", log.signer.verifier_key)
    html = render(log, None, report)
    text = visible(html)
    assert text.startswith("Not verified")
    assert "unknown lot" in text and "the bundle is not valid JSON" in text


def test_label_older_than_head_notice(log: Log) -> None:
    assay = next(
        seq
        for seq, env in enumerate(log.ledger.envelopes)
        if env["body"]["type"] == "lot.assayed" and env["body"]["lot"] == DORE
    )
    bundle = log.bundle(DORE, label_at=log.eid(assay))
    report = log.report(bundle)
    assert report.ok, [str(f) for f in report.failures]
    assert [t.seq for t in report.after_label] == list(range(assay + 1, 44))

    html = render(log, bundle, report, head_is_newer=True)
    notice_html = section(html, "label-notice")
    notice = visible(notice_html)
    assert (
        visible(html).index("Verified by this server")
        < visible(html).index("This label was printed at an earlier step")
        < visible(html).index("This gold")
    )
    assert notice.startswith(
        "This label was printed at an earlier step It was printed for the step of 20 Nov 2026. "
        "Since then:"
    )
    assert notice_html.count("<li") == len(report.after_label) == 7
    for expected in (
        "Offered for sale by Kampala Licensed Gold Dealer (demo) To Lake Victoria Bullion",
        "Exported by Lake Victoria Bullion Exporters (demo) Destination: Switzerland",
        "Received by Alpine Precious Metals Refinery (demo)",
        "Flag resolved by Great Lakes Independent Audit (demo)",
        "Processed by Alpine Precious Metals Refinery (demo) Refining",
    ):
        assert expected in notice, expected
    assert "Processed into other lots" in visible(html)  # the doré is consumed now

    french = visible(section(render(log, bundle, report, "fr", head_is_newer=True), "label-notice"))
    assert french.startswith(
        "Cette étiquette a été imprimée à une étape antérieure Elle a été imprimée pour "
        "l'étape du 20 nov. 2026. Depuis :"
    )
    assert "Exporté par Lake Victoria Bullion Exporters (demo)" in french

    # a label at the head gets no such notice
    current = render(log, bundle, report, head_is_newer=False)
    assert "label-notice" not in current
    assert "This label shows the lot's latest step." in visible(current)


def _small_group(women: int, men: int) -> tuple[Log, dict[str, Any], Report]:
    """The scenario up to the Mambasa registration, with that team made of ``women`` and
    ``men``: the CDF payment then concerns that many people."""
    events = copy.deepcopy(SCENARIO["events"][:19])
    registration = events[18]
    assert registration["lot"] == "MAK-2026-0001"
    registration["producers"].update(women=women, men=men)
    small = play(events)
    bundle = small.bundle("MAK-2026-0001")
    report = small.report(bundle)
    assert report.ok, [str(f) for f in report.failures]
    return small, bundle, report


@pytest.mark.parametrize(("women", "men"), [(1, 0), (2, 2), (3, 1)])
def test_payments_of_a_small_group_are_withheld(women: int, men: int) -> None:
    assert women + men < MIN_GROUP
    small, bundle, report = _small_group(women, men)
    assert report.state is not None
    assert report.state["gender"]["paid"] == [
        {"currency": "CDF", "total": 198_000_000, "to_women": 132_000_000}
    ]
    for lang, withheld in (
        ("en", "CDF: withheld to protect privacy"),
        ("fr", "CDF : montant masqué pour protéger la vie privée"),
    ):
        html = render(small, bundle, report, lang)
        text = visible(html)
        assert withheld in text
        for figure in ("1,980,000", "1,320,000", "1 980 000", "1 320 000", "198000000", "67 %"):
            assert figure not in text, figure
            assert figure not in html, figure
        # the counts of people are not payment figures: they stay
        assert f"{women} wom" in text or f"{women} femme" in text


def test_payments_of_a_group_of_five_are_shown() -> None:
    small, bundle, report = _small_group(5, 0)
    text = visible(render(small, bundle, report))
    assert "5 women and 0 men produced this gold." in text
    assert "CDF 1,980,000.00, of which CDF 1,320,000.00 (67 %)" in text
    assert "withheld" not in text


@pytest.mark.parametrize(("women", "men"), [(3, 2), (6, 3), (1, 7)])
def test_payments_into_fewer_than_five_womens_or_mens_hands_are_withheld(
    women: int, men: int
) -> None:
    # to_women is the women's pay, total − to_women the men's: each group is 0 or ≥ 5
    small, bundle, report = _small_group(women, men)
    text = visible(render(small, bundle, report))
    assert "CDF: withheld to protect privacy" in text
    assert "1,980,000" not in text and "1,320,000" not in text


def test_bar_page_minus_its_origins_pages_cannot_give_one_womans_pay(
    log: Log, bar: tuple[dict[str, Any], Report]
) -> None:
    # KIT-2026-0007 (1 woman, 7 men) is paid in UGX with TII-0042 and TII-0043, whose own
    # pages show their payments: the bar's UGX figure minus theirs would be her pay
    bundle, report = bar
    text = visible(render(log, bundle, report))
    assert "UGX: withheld to protect privacy" in text
    assert "CDF: withheld to protect privacy" in text  # MAK-2026-0001: 3 men
    assert "3,260,000" not in text and "5,650,000" not in text


def test_payments_are_withheld_without_the_registrations(
    log: Log, bar: tuple[dict[str, Any], Report]
) -> None:
    """Without the bundle, the page cannot tell how many people a payment concerns: it
    withholds every figure rather than guess."""
    _, report = bar
    text = visible(render(log, None, report, with_bundle=False))
    assert "CDF: withheld to protect privacy" in text
    assert "UGX: withheld to protect privacy" in text
    assert "1,980,000" not in text
    assert "30 women and 18 men produced this gold." in text
    # and the timeline still names every organisation and date
    assert "Received by Comptoir d'achat Bunia (demo)" in text


def _bar_page_with_team(lot: str, women: int, men: int) -> str:
    """The bar's page (visible text) when the registration of ``lot`` had that team."""
    events = copy.deepcopy(SCENARIO["events"])
    for body in events:
        if body.get("lot") == lot and body["type"] == "lot.registered":
            body["producers"].update(women=women, men=men)
    small = play(events)
    bundle = small.bundle(BAR)
    report = small.report(bundle)
    assert report.ok, [str(f) for f in report.failures]
    return visible(render(small, bundle, report))


def test_payment_groups_count_only_registrations_in_that_currency(log: Log) -> None:
    """KIT (1 woman, UGX) with MAK (now 5 women and 5 men, CDF): each currency has its own
    group."""
    text = _bar_page_with_team("MAK-2026-0001", 5, 5)
    assert "CDF 1,980,000.00, of which CDF 1,320,000.00 (67 %)" in text
    assert "UGX: withheld to protect privacy" in text


def test_a_currency_summing_one_small_group_is_withheld(log: Log) -> None:
    """KIT (now 3 people), TII-0042 (20) and TII-0043 (11) are all paid in UGX: together
    34 people, but the bar's UGX figure minus those of the TII lots' own pages would give
    KIT's payment, so the figure is withheld, as the reports leave KIT out."""
    text = _bar_page_with_team("KIT-2026-0007", 1, 2)
    assert "UGX: withheld to protect privacy" in text
    assert "5,650,000" not in text
    assert "CDF: withheld to protect privacy" in text  # MAK-2026-0001: 3 men


def test_text_from_the_log_is_escaped(log: Log, bar: tuple[dict[str, Any], Report]) -> None:
    bundle, report = bar
    evil = copy.deepcopy(report)
    evil.timeline[0].actor_name = '<script>alert("x")</script>'
    assert evil.state is not None
    evil.state["lot"] = "<img src=x onerror=alert(1)>"
    html = render(log, bundle, evil)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x" in html


def test_no_external_reference(log: Log, bar: tuple[dict[str, Any], Report]) -> None:
    bundle, report = bar
    for lang in i18n.LANGUAGES:
        html = render(log, bundle, report, lang)
        assert "<script" not in html and "<link" not in html and "<img" not in html
        assert (
            "@import" not in html
            and "url(" not in html
            and "//" not in html.split("</style>")[0].split("<style>")[1]
        )
        hrefs = [(tag, name, value) for tag, name, value in refs(html)]
        assert {name for _, name, _ in hrefs} == {"href"}
        for _, _, value in hrefs:
            assert value.startswith(("?", "/v1/")), value
        assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_error_page() -> None:
    html = render_error_page(
        "fr",
        t("fr", "error.unknown_lot.title"),
        t("fr", "error.unknown_lot.detail", lot="<b>XX-1</b>"),
    )
    text = visible(html)
    assert '<html lang="fr">' in html
    assert text.startswith("Lot introuvable")
    assert "Ce serveur ne connaît aucun lot d'or <b>XX-1</b>." in text
    assert "<b>" not in html
    assert "<title>Lot introuvable</title>" in html
    english = render_error_page("xx", "Lot not found", "No such lot.")
    assert '<html lang="en">' in english and "<h1" in english


# ---------------------------------------------------------------------------
# In a browser, at a phone's width


def _load(page: Any, html: str) -> list[str]:
    """Load ``html`` at 360 x 740 with every network request counted and refused."""
    requests: list[str] = []

    def refuse(route: Any) -> None:
        requests.append(route.request.url)
        route.abort()

    page.set_viewport_size({"width": 360, "height": 740})
    page.route("**/*", refuse)
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(html, wait_until="load")
    return requests


def _check_layout(page: Any) -> None:
    first_heading = page.evaluate(
        "() => { const h = document.querySelector('h1,h2,h3,h4,h5,h6');"
        " return [h.tagName, h.textContent.trim()]; }"
    )
    assert first_heading[0] == "H1"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("document.body.scrollWidth") <= 360
    # nothing sticks out of the viewport on the right
    widest = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('body *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= 360, widest
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16


@pytest.mark.browser
def test_page_at_360px_in_chromium(log: Log, bar: tuple[dict[str, Any], Report], page: Any) -> None:
    bundle, report = bar
    requests = _load(page, render(log, bundle, report))
    _check_layout(page)
    heading = page.evaluate("document.querySelector('h1').textContent.trim()")
    assert heading == "Verified by this server"
    assert page.locator("h1, h2").first.inner_text().strip() == "Verified by this server"
    assert page.locator("h2").all_inner_texts()[:2] == ["This gold", "Where it was mined"]
    assert requests == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lot-page-360.png"), full_page=True)
    assert (ARTIFACTS / "lot-page-360.png").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.parametrize("variant", ["fr", "label", "failed"])
def test_other_pages_at_360px_in_chromium(
    log: Log, bar: tuple[dict[str, Any], Report], page: Any, variant: str
) -> None:
    bundle, report = bar
    if variant == "fr":
        html, first = render(log, bundle, report, "fr"), "Vérifié par ce serveur"
    elif variant == "label":
        first_event = log.ledger.state.lots[DORE].created_event
        dore = log.bundle(DORE, label_at=first_event)
        html = render(log, dore, log.report(dore), head_is_newer=True)
        first = "Verified by this server"
    else:
        bad = copy.deepcopy(bundle)
        bad["checkpoint"] = bad["checkpoint"].replace("\n44\n", "\n45\n")
        html, first = render(log, bad, log.report(bad)), "Not verified"
    requests = _load(page, html)
    _check_layout(page)
    assert page.evaluate("document.querySelector('h1').textContent.trim()") == first
    assert requests == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"lot-page-360-{variant}.png"), full_page=True)


@pytest.mark.browser
def test_error_page_at_360px_in_chromium(page: Any) -> None:
    html = render_error_page(
        "en", t("en", "error.unknown_lot.title"), t("en", "error.unknown_lot.detail", lot="XX-1")
    )
    requests = _load(page, html)
    _check_layout(page)
    assert requests == []


def test_site_whose_assessment_expired_before_registration_shows_blue() -> None:
    """A green assessment that expired before the gold was registered counts as blue
    (PROTOCOL.md 5): the page says so, in line with the lot's ``site_unassessed`` flag."""
    w = factories.World()
    w.register_actor("coop", ["cooperative"], lot_prefix="COOP-")
    w.register_site("site-a", "coop")
    w.assess_site("site-a", "green", assessed_on="2026-10-01", valid_until="2026-10-15")
    w.register_lot("COOP-1", "site-a")
    signer = LogSigner(w.origin, b"\x05" * 32)
    bundle = factories.signed_bundle(w.ledger, signer, "COOP-1")
    report = verify_bundle(canonical(bundle), signer.verifier_key)
    assert report.ok
    html = render_lot_page(
        report,
        lang="en",
        bundle_url="/v1/lots/COOP-1/bundle",
        label_at=None,
        head_is_newer=False,
        log_key=signer.verifier_key,
        server_name=SERVER,
        bundle=bundle,
    )
    origins = visible(section(html, "origins"))
    assert "Blue — not inspected" in origins
    assert "Its assessment had expired on 15 Oct 2026, before this gold was registered" in origins
    assert "Green" not in origins
    assert "Mine site not inspected when the gold was registered" in visible(html)
