"""Issue 5, the buyer's path end to end against the real app (SQLite), as a person takes it.

A label is printed and its QR code decoded by an independent reader (zxing-cpp); the lot
moves on; the old label is scanned on a phone (Chromium at 360 px, every request answered by
the app itself); the page's download link is followed and the file saved under the name the
server gives it; the command the page shows is run exactly as written, in that folder; and
``goldtrail verify`` is given the label's URL. Each step must say what happened after the
label was printed.
"""

from __future__ import annotations

import html as htmllib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import nacl.signing
import pytest
import zxingcpp
from PIL import Image

from api.compression import accepts_gzip
from clients.cli import Hooks
from clients.keys import MIN_LIMITS
from clients.scenario import ScenarioPlayer, load_scenario
from ledger.checkpoint import LogSigner
from ledger.protocol import public_key_hex
from tests.api.test_page_render import section, visible
from tests.clients.conftest import run_main

from .conftest import PUBLIC_URL, Api, fresh_database, open_api

SCENARIO = load_scenario()
BAR = SCENARIO["expected"]["bar_lot"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FLAG = {
    "time": "2026-11-21T09:00:00Z",
    "actor": "refiner-alpine",
    "type": "lot.flagged",
    "lot": BAR,
    "code": "origin_misrepresentation",
    "note": "Serial number on the bar differs from the refinery record",
}


@dataclass
class Journey:
    api: Api
    player: ScenarioPlayer
    registrar_key: str
    label_url: str  # decoded from the label printed before the lot moved on


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    folder = tmp_path_factory.mktemp("journey")
    with fresh_database("sqlite", folder) as url:
        registrar = nacl.signing.SigningKey.generate()
        api = open_api(url, folder, registrar_key=public_key_hex(registrar))
        try:
            player = ScenarioPlayer(api.settings.origin, first_registrar_key=registrar)
            for raw in SCENARIO["events"]:
                response = api.post(player.envelope(raw, api.lot))
                assert response.status_code == 201, response.text
            label = api.client.get(f"/v1/lots/{BAR}/label.png")
            results = zxingcpp.read_barcodes(Image.open(io.BytesIO(label.content)))
            assert len(results) == 1
            label_url = results[0].text
            # the refiner flags the bar after the label was printed: the lot moves on
            response = api.post(player.envelope(FLAG, api.lot))
            assert response.status_code == 201, response.text
            yield Journey(api, player, public_key_hex(registrar), label_url)
        finally:
            api.close()


def _path(url: str) -> str:
    assert url.startswith(PUBLIC_URL + "/")
    return url[len(PUBLIC_URL) :]


def _filename(response: httpx.Response) -> str:
    message = Message()
    message["content-disposition"] = response.headers["content-disposition"]
    name = message.get_param("filename", header="content-disposition")
    assert isinstance(name, str)
    return name


def _verify(args: list[str], journey: Journey) -> Any:
    hooks = Hooks(transport=journey.api.client._transport, kdf_limits=MIN_LIMITS)
    return run_main(args, hooks=hooks)


def test_the_label_holds_the_head_it_was_printed_for(journey: Journey) -> None:
    assert re.fullmatch(rf"{re.escape(PUBLIC_URL)}/l/{BAR}\?at=[0-9a-f]{{64}}", journey.label_url)
    assert journey.label_url != f"{PUBLIC_URL}/l/{BAR}?at={journey.api.lot(BAR)['head']}"


def test_the_page_and_the_bundle_travel_gzipped(journey: Journey) -> None:
    """A slow link: the page and the bundle are gzipped for a client that accepts it."""
    client = journey.api.client
    path = _path(journey.label_url)
    plain = client.get(path, headers={"accept-encoding": "identity"})
    zipped = client.get(path, headers={"accept-encoding": "gzip, deflate, br"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert zipped.text == plain.text  # httpx undid the gzip
    sent = int(zipped.headers["content-length"])
    assert sent < len(plain.content) / 3
    assert sent < 12 * 1024, sent  # the page as it crosses a slow link
    bundle = client.get(f"/v1/lots/{BAR}/bundle", headers={"accept-encoding": "gzip"})
    assert bundle.headers["content-encoding"] == "gzip"
    assert int(bundle.headers["content-length"]) < len(bundle.content) / 3
    raw = client.get(f"/v1/lots/{BAR}/bundle", headers={"accept-encoding": "identity"})
    assert raw.content == bundle.content and "content-encoding" not in raw.headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip", True),
        ("GZIP;q=0.5", True),
        ("br, gzip;q=0", False),
        ("x-gzip", True),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("deflate, *;q=0.1", True),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_following_the_page_verifies_the_bundle_offline(
    journey: Journey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Download the bundle by the page's link, then run the page's command as written."""
    api = journey.api
    page = api.client.get(_path(journey.label_url), headers={"accept-language": "fr"})
    assert page.status_code == 200
    text = visible(page.text)
    assert text.startswith("Vérifié par ce serveur")
    notice = visible(section(page.text, "label-notice"))
    assert "Cette étiquette a été imprimée à une étape antérieure" in notice
    assert "Alpine Precious Metals Refinery (demo)" in notice
    href = re.search(r'<a class="button" href="([^"]+)" download>', page.text)
    assert href is not None
    link = urljoin(journey.label_url, htmllib.unescape(href.group(1)))
    assert link == f"{PUBLIC_URL}/v1/lots/{BAR}/bundle?at={journey.label_url.split('=')[1]}"
    # relative, so it is right under a path prefix too
    prefixed = f"https://example.org/gold/l/{BAR}?at=x"
    assert urljoin(prefixed, htmllib.unescape(href.group(1))).startswith(
        f"https://example.org/gold/v1/lots/{BAR}/bundle?at="
    )
    download = api.client.get(_path(link))
    assert download.status_code == 200
    name = _filename(download)
    (tmp_path / name).write_bytes(download.content)
    verify = visible(section(page.text, "verify"))
    assert f"enregistré sous le nom {name}" in verify
    commands = re.findall(r"<pre><code>(.*?)</code></pre>", section(page.text, "verify"), re.S)
    assert len(commands) == 1
    args = shlex.split(htmllib.unescape(commands[0]))
    log = api.log()
    assert args == [
        "goldtrail",
        "verify",
        name,
        "--log-key",
        log["verifier_key"],
        "--registrar-key",
        journey.registrar_key,
    ]
    # the keys to compare with the programme's are both on the page
    assert log["verifier_key"] in verify and journey.registrar_key in verify
    assert "Clé du registraire" in verify

    monkeypatch.chdir(tmp_path)
    run = _verify(args[1:], journey)
    assert run.code == 0, run.stderr
    out = run.stdout
    assert out.startswith(f"VERIFIED: lot {BAR}")
    assert "the label (event" in out.splitlines()[1]  # said at once, detailed at the end
    tail = out[out.index("since the label was printed") :]
    assert (
        "lot.flagged by Alpine Precious Metals Refinery (demo): flag origin_misrepresentation"
        in tail
    )
    assert "now: active, risk high, held by Alpine Precious Metals Refinery (demo)" in tail
    assert FLAG["note"] not in out  # free text is not repeated

    # one changed byte in the downloaded file: a plain report and a non-zero exit
    tampered = download.content.replace(
        b"Kampala Assay Laboratory (demo)", b"Kampala Assay Laboratorx (demo)"
    )
    assert tampered != download.content
    (tmp_path / name).write_bytes(tampered)
    bad = _verify(args[1:], journey)
    assert bad.code == 1
    assert bad.stdout.startswith(f"NOT VERIFIED: lot {BAR}")
    assert "the inclusion proof does not match the checkpoint" in bad.stdout
    assert len(bad.error_lines) == 1 and bad.stderr.count("\n") == 1


def test_goldtrail_verify_given_the_old_label_url(journey: Journey) -> None:
    log = journey.api.log()
    keys = ["--log-key", log["verifier_key"], "--registrar-key", journey.registrar_key]
    run = _verify(["verify", journey.label_url, *keys], journey)
    assert run.code == 0, run.stderr
    tail = run.stdout[run.stdout.index("since the label was printed") :]
    assert "1 event(s) happened to this lot" in tail
    assert "flag origin_misrepresentation" in tail and "now: active, risk high" in tail
    # the current head's label: nothing happened since
    current = f"{PUBLIC_URL}/l/{BAR}?at={journey.api.lot(BAR)['head']}"
    run = _verify(["verify", current, *keys], journey)
    assert run.code == 0 and "nothing has happened to this lot since" in run.stdout
    # the wrong log key: non-zero, a plain report (one that is no key at all is a usage
    # error, exit 2, tests/clients/test_client_cli.py)
    other = LogSigner(log["origin"], bytes(32)).verifier_key
    wrong = _verify(["verify", journey.label_url, "--log-key", other], journey)
    assert wrong.code == 1 and "NOT VERIFIED" in wrong.stdout
    assert "not signed by the trusted key" in wrong.stdout


@pytest.mark.browser
def test_the_old_label_on_a_phone(journey: Journey, page: Any) -> None:
    """Chromium at 360 px opens the label's URL; the app answers every request it makes."""
    client = journey.api.client
    asked: list[str] = []

    def serve(route: Any) -> None:
        url = route.request.url
        asked.append(url)
        if not url.startswith(PUBLIC_URL + "/"):
            route.abort()
            return
        answer = client.get(_path(url), headers={"accept-language": "en-GB,en;q=0.8"})
        headers = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-encoding", "content-length")
        }
        route.fulfill(status=answer.status_code, headers=headers, body=answer.content)

    page.set_viewport_size({"width": 360, "height": 740})
    page.route("**/*", serve)
    page.goto(journey.label_url, wait_until="load")
    assert asked == [journey.label_url]  # no other request: no CDN, font or image
    assert page.locator("h1").first.inner_text().strip() == "Verified by this server"
    assert (
        page.locator("h1, h2").all_inner_texts()[1] == "This label was printed at an earlier step"
    )
    notice = page.locator("section.notice").inner_text()
    assert "Flag raised by Alpine Precious Metals Refinery (demo)" in notice
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    widest = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('body *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= 360, widest
    verify = page.locator("section[aria-labelledby=verify]").inner_text()
    assert "This verdict is this server's own check." in verify
    assert "--registrar-key" in verify and f"{BAR}.bundle.json" in verify
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lot-page-360-old-label.png"), full_page=True)


@pytest.mark.parametrize(
    ("query", "status", "lang"),
    [
        ("?at=" + "a" * 65, 404, "en"),  # a damaged label: one character too many
        ("?at=" + "A" * 64, 404, "en"),
        ("?at=%00", 404, "en"),
        ("?lang=zh-Hant-TW", 200, "en"),  # a language this page does not speak
        ("?lang=fr-x-" + "a" * 40, 200, "fr"),
        ("?lang=" + "x" * 200, 200, "en"),
    ],
)
def test_a_phone_always_gets_an_html_page(
    journey: Journey, query: str, status: int, lang: str
) -> None:
    """Whatever a damaged label or a browser puts in the URL, a person gets a page in HTML
    (never a JSON problem document)."""
    response = journey.api.client.get(f"/l/{BAR}{query}")
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f'<html lang="{lang}">' in response.text
    if status == 404:
        assert "Label not recognised" in visible(response.text)


@pytest.mark.parametrize(
    ("lang", "words"), [("en", "Its gold went into:"), ("fr", "Son or a été transformé en :")]
)
def test_a_consumed_lots_page_links_to_where_its_gold_went(
    journey: Journey, lang: str, words: str
) -> None:
    """An old doré label, scanned after the doré was refined: the page links to the bar."""
    client = journey.api.client
    dore = "KLA-2026-0101"
    first = client.get(f"/v1/lots/{dore}/events").json()["items"][0]["event_id"]
    page = client.get(f"/l/{dore}", params={"at": first, "lang": lang})
    assert page.status_code == 200
    identity = section(page.text, "lot")
    assert words in visible(identity)
    link = re.search(r'<a class="mono" href="([^"]+)">' + BAR + "</a>", identity)
    assert link is not None
    assert urljoin(f"{PUBLIC_URL}/l/{dore}?at={first}", link.group(1)) == f"{PUBLIC_URL}/l/{BAR}"
    followed = client.get(f"/l/{BAR}", params={"lang": lang})
    assert followed.status_code == 200 and f"{BAR}" in visible(section(followed.text, "lot"))
    # a lot that is not consumed has no such line
    assert words not in visible(section(followed.text, "lot"))
