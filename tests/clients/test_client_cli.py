"""The goldtrail command line: help with examples, one-line errors, online and offline work.

Commands run in-process (``clients.cli.main``) against the fake server of conftest.py.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from clients.cli import app
from clients.outbox import Outbox
from ledger.protocol import canonical, parse_strict

ORIGIN = "test.goldtrail.example/log"


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        else:
            paths.append(path)

    walk(root, [])
    return paths


COMMANDS = _command_paths()


def test_every_required_command_exists() -> None:
    names = {" ".join(p) for p in COMMANDS}
    required = [
        "keys new",
        "keys show",
        "keys export-public",
        "actor register",
        "actor update",
        "actor rotate-key",
        "actor revoke",
        "site register",
        "site assess",
        "lot register",
        "lot offer",
        "lot accept",
        "lot reject",
        "lot cancel",
        "lot process",
        "lot assay",
        "lot export",
        "lot flag",
        "lot resolve",
        "lot show",
        "lot history",
        "lot qr",
        "lot bundle",
        "sync",
        "outbox list",
        "outbox drop",
        "verify",
        "demo",
        "serve",
    ]
    assert set(required) <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_shows_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    example = result.output.split("Example:", 1)[1]
    assert f"goldtrail {path[0]}" in example or "goldtrail --" in example


def test_root_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    for option in ("--server", "--key", "--origin", "--offline", "--outbox"):
        assert option in result.output


# ---------------------------------------------------------------------------
# One-line errors


def _one_error(run: Any, code: str | None = None) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert "Traceback" not in run.stderr
    if code is not None:
        assert errors[0].endswith(f"({code})"), errors[0]
    return errors[0]


def test_usage_error_is_one_line_exit_2(cli: Callable[..., Any]) -> None:
    run = cli(["lot", "offer", "--lot", "MAK-2026-0001", "--mass-mg", "not-a-number"])
    assert run.code == 2
    line = _one_error(run)
    assert "(usage" in line and run.stderr.count("\n") == 1
    missing = cli(["lot", "register", "--lot", "MAK-2026-0001"])
    assert missing.code == 2 and "--site" in _one_error(missing, "usage")
    bad_payment = cli(["lot", "register", "--lot", "MAK-1", "--payment", "CDF-12"])
    assert bad_payment.code == 2 and "--payment" in _one_error(bad_payment, "usage")
    unknown = cli(["lot", "frobnicate"])
    assert unknown.code == 2 and "frobnicate" in _one_error(unknown)


def test_api_error_is_one_line(cli: Callable[..., Any]) -> None:
    run = cli(["lot", "show", "MAK-2026-0999"])
    assert run.code == 1
    assert _one_error(run, "unknown_lot") == "error: There is no such lot. (unknown_lot)"
    assert run.stdout == ""


def test_schema_error_before_signing(cli: Callable[..., Any], lot_args: Any, world: Any) -> None:
    args = lot_args("MAK-2026-0001")
    args[args.index("--mass-mg") + 1] = "0"
    run = cli(args)
    assert run.code == 1
    assert "mass_mg" in _one_error(run, "schema")
    with Outbox(world.outbox) as box:
        assert box.counts()["pending"] == 0


def test_text_typed_with_separate_accents_is_signed_in_nfc(
    cli: Callable[..., Any], lot_args: Any, world: Any
) -> None:
    """PROTOCOL.md section 1: a server refuses a string not already in NFC (never
    normalising what was signed). Some keyboards send an accent as a separate mark: the CLI
    signs the same text composed, so the event is one every server takes."""
    assert cli(lot_args("MAK-2026-0001")).code == 0
    offer = ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"]
    assert cli(offer).code == 0
    decomposed = "Acheteur absent, cafe\u0301 ferme\u0301"  # e + combining acute: not NFC
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    run = cli(["lot", "cancel", "--lot", "MAK-2026-0001", "--reason", decomposed], offline=True)
    assert run.code == 0, run.stderr
    with Outbox(world.outbox) as box:
        [queued] = box.pending()
    assert queued.envelope["body"]["reason"] == composed
    parse_strict(canonical(queued.envelope["body"]))  # what a server reads first


def test_missing_key_file(cli: Callable[..., Any], runner: Any, world: Any, lot_args: Any) -> None:
    run = runner(
        [
            "--server",
            "http://fake.test",
            "--key",
            "/nonexistent/key.json",
            *lot_args("MAK-2026-0001"),
        ],
        transport=world.fake.transport,
    )
    assert run.code == 1
    assert "no key file at /nonexistent/key.json" in _one_error(run, "key_file")


def test_unreachable_without_cache_is_one_line(runner: Any, world: Any) -> None:
    world.fake.down = True
    run = runner(
        ["--server", "http://fake.test", "--outbox", str(world.outbox), "sync"],
        transport=world.fake.transport,
    )
    assert run.code == 1
    assert "Cannot reach the server" in _one_error(run, "unreachable")


def test_verify_garbage_is_one_line(runner: Any, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text("{not json")
    from ledger.checkpoint import LogSigner

    key = LogSigner("x.example/log", bytes(32)).verifier_key
    run = runner(["verify", str(path), "--log-key", key])
    assert run.code == 1
    assert "does not verify" in _one_error(run, "not_verified")
    missing = runner(["verify", str(tmp_path / "nope.json"), "--log-key", key])
    assert missing.code == 1 and _one_error(missing, "not_found")


# ---------------------------------------------------------------------------
# Online work


def test_register_offer_accept_online(cli: Callable[..., Any], lot_args: Any, world: Any) -> None:
    run = cli(lot_args("MAK-2026-0001"))
    assert run.code == 0, run.stderr
    assert "lot.registered MAK-2026-0001: logged as event" in run.stdout
    offer = cli(
        [
            "lot",
            "offer",
            "--lot",
            "MAK-2026-0001",
            "--to",
            "trader-bunia",
            "--mass-mg",
            "38200",
            "--price",
            "USD:410000",
        ]
    )
    assert offer.code == 0, offer.stderr
    accept = cli(["lot", "accept", "--lot", "MAK-2026-0001", "--mass-mg", "38190"], key="trader")
    assert accept.code == 0, accept.stderr
    lot = world.fake.ledger.state.lots["MAK-2026-0001"]
    assert lot.custodian == "trader-bunia" and lot.mass_mg == 38190
    bodies = [e["envelope"]["body"] for e in world.fake.log[-3:]]
    assert bodies[1]["prev"] == world.fake.log[-3]["event_id"]
    assert bodies[2]["offer"] == world.fake.log[-2]["event_id"]
    assert bodies[1]["price"] == {"amount_minor": 410000, "currency": "USD"}
    assert bodies[0]["payment"]["to_women"] == {"amount_minor": 132000000, "currency": "CDF"}
    assert bodies[0]["declarations"]["forced_labour"] is False
    for body in bodies:
        assert body["time"].endswith("Z") and len(body["time"]) == 20
    show = cli(["lot", "show", "MAK-2026-0001"])
    assert show.code == 0 and "trader-bunia" in show.stdout
    history = cli(["lot", "history", "MAK-2026-0001", "--json"])
    assert [i["envelope"]["body"]["type"] for i in json.loads(history.stdout)] == [
        "lot.registered",
        "lot.transfer_offered",
        "lot.transfer_accepted",
    ]


def test_accept_refused_locally_when_offer_is_to_someone_else(
    cli: Callable[..., Any], lot_args: Any
) -> None:
    assert cli(lot_args("MAK-2026-0001")).code == 0
    no_offer = cli(["lot", "accept", "--lot", "MAK-2026-0001", "--mass-mg", "1"], key="trader")
    assert no_offer.code == 1 and _one_error(no_offer, "no_pending_offer")


def test_refused_online_event_is_not_kept(
    cli: Callable[..., Any], lot_args: Any, world: Any
) -> None:
    run = cli(lot_args("XYZ-2026-0001"))
    assert run.code == 1
    _one_error(run, "wrong_prefix")
    with Outbox(world.outbox) as box:
        assert box.events() == []


def test_free_text_warning_before_signing(cli: Callable[..., Any], lot_args: Any) -> None:
    assert cli(lot_args("MAK-2026-0001")).code == 0
    assert (
        cli(
            ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"]
        ).code
        == 0
    )
    run = cli(["lot", "cancel", "--lot", "MAK-2026-0001", "--reason", "Buyer did not come"])
    assert run.code == 0, run.stderr
    assert "public and permanent" in run.stderr and "must not name a person" in run.stderr
    assert "reason: Buyer did not come" in run.stderr


def test_process_and_resolve_by_code(cli: Callable[..., Any], lot_args: Any, world: Any) -> None:
    world.registrar_event(
        {"type": "actor.updated", "subject": "coop-mambasa", "roles": ["cooperative", "processor"]}
    )
    assert cli(lot_args("MAK-2026-0001")).code == 0
    assert cli(lot_args("MAK-2026-0002")).code == 0
    run = cli(
        [
            "lot",
            "process",
            "--input",
            "MAK-2026-0001",
            "--input",
            "MAK-2026-0002",
            "--output",
            "MAK-2026-0003:70000:dore:860000",
            "--process",
            "smelting",
            "--workers",
            "2:1",
        ]
    )
    assert run.code == 0, run.stderr
    merged = world.fake.ledger.state.lots["MAK-2026-0003"]
    assert merged.mass_mg == 70000
    assert {f.code for f in merged.flags} == {"site_unassessed"}
    resolve = cli(
        [
            "lot",
            "resolve",
            "--lot",
            "MAK-2026-0003",
            "--code",
            "site_unassessed",
            "--outcome",
            "remediated",
            "--resolution",
            "Site visited by the auditor",
        ],
        key="coop",
    )
    # the cooperative is no auditor: the server refuses, in one line
    assert resolve.code == 1 and _one_error(resolve, "forbidden_role")


def test_json_body_and_options_merge(cli: Callable[..., Any], world: Any, tmp_path: Path) -> None:
    body = world.lot_body("MAK-2026-0001")
    for key in ("v", "actor", "time"):
        del body[key]
    body["mass_mg"] = 1000
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    run = cli(["lot", "register", "--json-body", str(path), "--mass-mg", "2000"])
    assert run.code == 0, run.stderr
    assert world.fake.ledger.state.lots["MAK-2026-0001"].mass_mg == 2000
    wrong = world.lot_body("MAK-2026-0002")
    path.write_text(json.dumps(wrong | {"actor": "trader-bunia"}))
    run = cli(["lot", "register", "--json-body", str(path)])
    assert run.code == 1 and _one_error(run, "wrong_actor")


def test_origin_mismatch(cli: Callable[..., Any], lot_args: Any) -> None:
    run = cli(["--origin", "another.example/log", *lot_args("MAK-2026-0001")])
    assert run.code == 1 and _one_error(run, "wrong_origin")


# ---------------------------------------------------------------------------
# Offline work


def test_offline_week_then_sync(cli: Callable[..., Any], lot_args: Any, world: Any) -> None:
    # one look at the server while online: the origin is cached
    assert cli(["sync"]).code == 0
    size = len(world.fake.log)
    run = cli([*lot_args("MAK-2026-0001"), "--offline"])
    assert run.code == 0, run.stderr
    assert "saved offline; run goldtrail sync when you are connected" in run.stdout
    offer = cli(
        ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"],
        offline=True,
    )
    assert offer.code == 0, offer.stderr
    cancel = cli(
        ["lot", "cancel", "--lot", "MAK-2026-0001", "--reason", "Road closed"], offline=True
    )
    assert cancel.code == 0, cancel.stderr
    assert len(world.fake.log) == size and world.fake.requests[-1].url.path == "/v1/log"
    listing = cli(["outbox", "list"])
    assert listing.code == 0 and "3 pending" in listing.stdout
    synced = cli(["sync"])
    assert synced.code == 0, synced.stderr
    assert "sent 3 event(s)" in synced.stdout
    lot = world.fake.ledger.state.lots["MAK-2026-0001"]
    assert lot.head == world.fake.log[-1]["event_id"] and lot.offer is None
    assert len(world.fake.log) == size + 3


def test_unreachable_server_saves_offline(
    cli: Callable[..., Any], lot_args: Any, world: Any
) -> None:
    assert cli(["sync"]).code == 0  # the origin is now known
    world.fake.down = True
    run = cli(lot_args("MAK-2026-0001"))
    assert run.code == 0, run.stderr
    assert "saved offline; run goldtrail sync when you are connected" in run.stdout
    assert "cannot reach" in run.stderr
    world.fake.down = False
    # the next online command sends the older event first, then its own
    run = cli(
        ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"]
    )
    assert run.code == 0, run.stderr
    assert "sent 1 earlier event(s) from the outbox first" in run.stdout
    assert world.fake.ledger.state.lots["MAK-2026-0001"].status == "offered"


def test_offline_head_unknown_and_cached(
    cli: Callable[..., Any], lot_args: Any, world: Any
) -> None:
    assert cli(lot_args("MAK-2026-0001"), key="coop").code == 0
    assert (
        cli(
            ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"]
        ).code
        == 0
    )
    # the trader's machine has never seen the lot
    trader_outbox = ["--outbox", str(world.outbox.with_name("trader.db"))]
    run = cli(
        [
            *trader_outbox,
            "--origin",
            ORIGIN,
            "lot",
            "accept",
            "--lot",
            "MAK-2026-0001",
            "--mass-mg",
            "38190",
        ],
        key="trader",
        offline=True,
    )
    assert run.code == 1
    assert "goldtrail lot show MAK-2026-0001" in _one_error(run, "head_unknown")
    # one look while online, then the acceptance can be signed offline
    assert cli([*trader_outbox, "lot", "show", "MAK-2026-0001"], key="trader").code == 0
    run = cli(
        [*trader_outbox, "lot", "accept", "--lot", "MAK-2026-0001", "--mass-mg", "38190"],
        key="trader",
        offline=True,
    )
    assert run.code == 0, run.stderr
    assert cli([*trader_outbox, "sync"], key="trader").code == 0
    assert world.fake.ledger.state.lots["MAK-2026-0001"].custodian == "trader-bunia"


def test_refused_sync_then_drop(cli: Callable[..., Any], lot_args: Any, world: Any) -> None:
    assert cli(["sync"]).code == 0
    assert cli(lot_args("XYZ-2026-0001"), offline=True).code == 0
    assert (
        cli(
            [
                "lot",
                "offer",
                "--lot",
                "XYZ-2026-0001",
                "--to",
                "trader-bunia",
                "--mass-mg",
                "38200",
            ],
            offline=True,
        ).code
        == 0
    )
    assert cli(lot_args("MAK-2026-0002"), offline=True).code == 0
    run = cli(["sync"])
    assert run.code == 1
    assert "refused: outbox #1 lot.registered XYZ-2026-0001" in run.stderr
    assert "held back: 1" in run.stderr
    _one_error(run, "refused")
    listing = cli(["outbox", "list", "--json"])
    rows = {row["id"]: row for row in json.loads(listing.stdout)}
    assert rows[1]["status"] == "failed" and rows[1]["error_code"] == "wrong_prefix"
    assert rows[2]["status"] == "pending" and rows[2]["blocked"]
    assert 3 not in rows  # sent
    blocked = cli(["lot", "cancel", "--lot", "XYZ-2026-0001", "--reason", "x" * 5], offline=True)
    assert blocked.code == 1 and _one_error(blocked, "outbox_blocked")
    needs_yes = cli(["outbox", "drop", "1"])
    assert needs_yes.code == 1 and _one_error(needs_yes, "confirm")
    assert cli(["--yes", "outbox", "drop", "1"]).code == 0
    assert cli(["outbox", "drop", "2", "--yes"]).code == 0  # global option after the command
    assert cli(["sync"]).code == 0
    sent = cli(["outbox", "drop", "3", "--yes"])
    assert sent.code == 1 and _one_error(sent, "already_sent")


def test_rotate_key_refuses_with_pending_events(
    cli: Callable[..., Any], lot_args: Any, world: Any, runner: Any, tmp_path: Path
) -> None:
    assert cli(["sync"]).code == 0
    assert cli(lot_args("MAK-2026-0001"), offline=True).code == 0
    new_key = tmp_path / "new.json"
    assert runner(["--key", str(new_key), "keys", "new", "--actor", "coop-mambasa"]).code == 0
    run = cli(["actor", "rotate-key", "--new-key", str(new_key)])
    assert run.code == 1 and _one_error(run, "outbox_pending")
    assert cli(["sync"]).code == 0
    run = cli(["actor", "rotate-key", "--new-key", str(new_key)])
    assert run.code == 0, run.stderr
    assert f"from now on sign with --key {new_key}" in run.stdout
    after = runner(
        [
            "--server",
            "http://fake.test",
            "--key",
            str(new_key),
            "--outbox",
            str(world.outbox),
            *lot_args("MAK-2026-0002"),
        ],
        transport=world.fake.transport,
    )
    assert after.code == 0, after.stderr


def test_registrar_commands(runner: Any, fake: Any, tmp_path: Path, clock: Any) -> None:
    """A registrar starts a log (seq 0), registers an actor and a site, assesses it."""
    from clients.keys import MIN_LIMITS, create_key_file, read_public

    registrar = tmp_path / "registrar.json"
    create_key_file(registrar, "registrar-ituri", "correct horse battery staple", limits=MIN_LIMITS)
    coop = tmp_path / "coop.json"
    create_key_file(coop, "coop-new", "correct horse battery staple", limits=MIN_LIMITS)
    base = [
        "--server",
        "http://fake.test",
        "--key",
        str(registrar),
        "--outbox",
        str(tmp_path / "o.db"),
        "--yes",
    ]

    def run(*args: str) -> Any:
        result = runner([*base, *args], transport=fake.transport)
        assert result.code == 0, result.stderr
        return result

    run(
        "actor",
        "register",
        "--subject",
        "registrar-ituri",
        "--name",
        "Ituri Registry",
        "--role",
        "registrar",
        "--role",
        "auditor",
        "--country",
        "CD",
    )
    run(
        "actor",
        "register",
        "--subject",
        "coop-new",
        "--name",
        "New Coop",
        "--role",
        "cooperative",
        "--country",
        "cd",
        "--lot-prefix",
        "NEW-",
        "--public-key",
        read_public(coop)[1],
        "--members",
        "41:58",
        "--leaders",
        "5:7",
        "--women-led",
        "--licence-number",
        "CD-1",
        "--licence-issuer",
        "SAEMAPE",
        "--licence-valid-until",
        "2030-01-01",
    )
    run(
        "site",
        "register",
        "--site",
        "site-new",
        "--name",
        "New site",
        "--operator",
        "coop-new",
        "--country",
        "CD",
        "--region",
        "Ituri",
        "--lat",
        "1.2",
        "--lon",
        "29.1",
        "--deposit",
        "alluvial",
    )
    run(
        "site",
        "assess",
        "--site",
        "site-new",
        "--status",
        "green",
        "--assessed-on",
        clock(-86400)[:10],
        "--valid-until",
        "2030-01-01",
        "--cahra",
        "--workforce",
        "4:6",
        "--leadership",
        "2:5",
        "--daily-income-women",
        "USD:450",
        "--daily-income-men",
        "USD:600",
        "--scheme",
        "craft_engaged",
        "--finding",
        "child_labour",
    )
    run("actor", "update", "--subject", "coop-new", "--leaders", "3:5")
    state = fake.ledger.state
    assert state.actors["coop-new"].profile == {
        "women_led": True,
        "members": {"women": 41, "total": 58},
        "leaders": {"women": 3, "total": 5},
    }
    assert state.actors["coop-new"].lot_prefix == "NEW-"
    assert state.sites["site-new"].assessment.status == "green"
    revoke = runner(
        [*base, "actor", "revoke", "--subject", "coop-new", "--reason", "Licence withdrawn"],
        transport=fake.transport,
    )
    assert revoke.code == 0 and "public and permanent" in revoke.stderr
    assert state.actors["coop-new"].status == "revoked"


# ---------------------------------------------------------------------------
# The demo against an existing log (here the fake one, which runs the real rules)


def test_demo_twice_against_an_existing_log(
    cli: Callable[..., Any], world: Any, tmp_path: Path
) -> None:
    from clients.scenario import load_scenario

    raw = tmp_path / "registrar.key"
    raw.write_text(bytes(world.registrar).hex() + "\n")
    sizes = []
    for _ in range(2):
        run = cli(["demo", "--registrar-key", str(raw)])
        assert run.code == 0, run.stderr
        assert "goldtrail verify 'http://fake.test/l/ALP" in run.stdout
        assert "has the expected origins, flags, risk (medium)" in run.stdout
        sizes.append(len(world.fake.log))
    assert sizes[1] - sizes[0] == len(load_scenario()["events"]) - 1
    bars = [lot for lot in world.fake.ledger.state.lots if lot.startswith("ALP")]
    assert len(bars) == 2 and all(re.fullmatch(r"ALP[0-9A-F]{4}-2026-118842", b) for b in bars)


def test_existing_log_events_keep_their_relations(clock: Any) -> None:
    from clients.cli import _existing_log_events
    from clients.scenario import load_scenario

    events = load_scenario()["events"]
    now = "2027-03-05T10:00:00Z"
    shifted = _existing_log_events(events, events[0]["actor"], "2027-03-01T00:00:00Z", now)
    assert len(shifted) == len(events) - 1
    times = [e["time"] for e in shifted]
    assert times == sorted(times) and times[0] >= "2027-03-01T00:00:00Z" and times[-1] <= now
    for event in shifted:
        day = event["time"][:10]
        if event["type"] == "lot.registered":
            assert event["extracted"]["to"] <= day
        if event["type"] == "site.assessed":
            assert event["valid_until"] >= "2027-03-05"  # still valid when the lots come
        if "licence" in event:
            assert event["licence"]["valid_until"] >= day
    assert events[1]["time"] == "2026-10-29T08:10:00Z"  # the scenario itself is untouched


def test_terminal_qr_code_decodes_to_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    """The QR code printed in a terminal (light modules drawn) scans to the label URL."""
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    from clients.cli import _print_qr

    url = "http://127.0.0.1:8000/l/ALP-2026-118842?at=" + "2f" * 32
    _print_qr(url)
    rows = [line for line in capsys.readouterr().out.splitlines() if line]
    # each character is two pixels, top and bottom; dark modules are left blank
    dark = {"█": (0, 0), "▄": (1, 0), "▀": (0, 1), "\xa0": (1, 1), " ": (1, 1)}
    width = max(len(r) for r in rows)
    scale, margin = 8, 4
    image = Image.new(
        "L", ((width + 2 * margin) * scale, (2 * len(rows) + 2 * margin) * scale), 255
    )
    for y, row in enumerate(rows):
        for x, char in enumerate(row):
            for half, is_dark in enumerate(dark[char]):
                if is_dark:
                    top = (2 * y + half + margin) * scale
                    left = (x + margin) * scale
                    image.paste(0, (left, top, left + scale, top + scale))
    found = zxingcpp.read_barcodes(image)
    assert [code.text for code in found] == [url]


def test_verify_label_url_refuses_a_bundle_for_another_lot_or_label(runner: Any) -> None:
    """``goldtrail verify URL`` checks that the served bundle is the one the label asks for
    (PROTOCOL.md section 7: ``label_at`` echoes ``?at=``): a genuine bundle of another lot,
    or of the same lot without the label's event, would show the buyer the wrong story."""
    import httpx

    from ledger.checkpoint import LogSigner
    from tests import factories

    w = factories.World.standard()
    label = w.register_lot("COOP-1", "site-a").id
    w.register_lot("COOP-2", "site-a")
    w.transfer("COOP-1", "trader")
    signer = LogSigner(w.origin, b"\x3c" * 32)

    def served(lot: str, label_at: str | None) -> httpx.MockTransport:
        bundle = factories.signed_bundle(w.ledger, signer, lot, label_at=label_at)
        return httpx.MockTransport(lambda request: httpx.Response(200, content=canonical(bundle)))

    url = f"http://fake.test/l/COOP-1?at={label}"
    args = ["verify", url, "--log-key", signer.verifier_key]
    honest = runner(args, transport=served("COOP-1", label))
    assert honest.code == 0, honest.stderr
    assert "2 event(s) happened to this lot" in honest.stdout

    other = runner(args, transport=served("COOP-2", None))
    assert other.code == 1 and other.stdout.startswith("NOT VERIFIED: lot COOP-2")
    assert "the bundle is for lot 'COOP-2', not the label's 'COOP-1'" in _one_error(
        other, "not_verified"
    )
    unlabelled = runner(args, transport=served("COOP-1", None))
    assert unlabelled.code == 1
    assert f"the bundle's label_at is null, not the label's event {label[:12]}…" in _one_error(
        unlabelled, "not_verified"
    )
    # ?at= twice: the last, as the server reads it for the page the URL opens
    twice = f"http://fake.test/l/COOP-1?at={'0' * 64}&at={label}"
    repeated = runner(
        ["verify", twice, "--log-key", signer.verifier_key], transport=served("COOP-1", label)
    )
    assert repeated.code == 0, repeated.stderr


def test_verify_log_key_typo_is_a_usage_error(runner: Any, tmp_path: Path) -> None:
    """A --log-key that is no note verifier key is a mistake in the command, as a
    --registrar-key typo is (exit 2, one line), not "this bundle does not verify"; the key
    pasted with surrounding blanks (a newline from a file) is the same key."""
    from ledger.checkpoint import LogSigner
    from tests import factories

    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    signer = LogSigner(w.origin, b"\x3d" * 32)
    bundle = factories.signed_bundle(w.ledger, signer, "COOP-1")
    path = tmp_path / "coop-1.bundle.json"
    path.write_bytes(canonical(bundle))

    padded = runner(["verify", str(path), "--log-key", f" {signer.verifier_key}\n"])
    assert padded.code == 0, padded.stderr
    assert padded.stdout.startswith("VERIFIED: lot COOP-1")

    for typo in ("junk", signer.verifier_key[:-4], signer.verifier_key.replace("+", " ", 1)):
        run = runner(["verify", str(path), "--log-key", typo])
        assert run.code == 2, (typo, run.stdout, run.stderr)
        assert _one_error(run, "usage").startswith("error: --log-key: "), run.stderr
    env = runner(["verify", str(path)], env={"GOLDTRAIL_LOG_VERIFIER_KEY": "junk"})
    assert env.code == 2 and _one_error(env, "usage").startswith("error: --log-key: ")


def test_verify_refuses_a_bundle_over_max_bytes_unread(runner: Any, tmp_path: Path) -> None:
    """A bundle larger than --max-bytes (64 MiB unless told) is refused in one line, exit 1,
    before it is verified or, from a URL, downloaded whole: a hostile or mistaken one must
    not fill a phone's memory. Counted decompressed, so a small gzip bomb is caught too."""
    import gzip

    import httpx

    from ledger.checkpoint import LogSigner
    from tests import factories

    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    signer = LogSigner(w.origin, b"\x3e" * 32)
    data = canonical(factories.signed_bundle(w.ledger, signer, "COOP-1"))
    path = tmp_path / "coop-1.bundle.json"
    path.write_bytes(data)
    key = ["--log-key", signer.verifier_key]

    exact = runner(["verify", str(path), *key, "--max-bytes", str(len(data))])
    assert exact.code == 0, exact.stderr
    over = runner(["verify", str(path), *key, "--max-bytes", str(len(data) - 1)])
    assert over.code == 1 and over.stdout == ""
    assert _one_error(over, "too_large").startswith(
        f"error: the file {path} is larger than --max-bytes ({len(data) - 1:,} bytes)"
    )

    sent: list[int] = []

    def served(body: bytes, gzipped: bool) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            def chunks() -> Any:  # the server's body in pieces, counting what is taken
                payload = gzip.compress(body) if gzipped else body
                for at in range(0, len(payload), 4096):
                    sent.append(at)
                    yield payload[at : at + 4096]

            headers = {"content-encoding": "gzip"} if gzipped else {}
            return httpx.Response(200, headers=headers, content=chunks())

        return httpx.MockTransport(answer)

    url = "http://fake.test/v1/lots/COOP-1/bundle"
    fine = runner(["verify", url, *key], transport=served(data, gzipped=True))
    assert fine.code == 0, fine.stderr
    assert fine.stdout.startswith("VERIFIED: lot COOP-1")

    sent.clear()
    huge = data + b" " * (8 * 1024 * 1024)  # 8 MiB more: over a 1 MiB limit, mostly unread
    big = runner(
        ["verify", url, *key, "--max-bytes", str(1024 * 1024)], transport=served(huge, False)
    )
    assert big.code == 1
    assert _one_error(big, "too_large").startswith(
        f"error: the bundle at {url} is larger than --max-bytes (1,048,576 bytes)"
    )
    assert len(sent) < len(huge) // 4096 // 2  # it stopped reading early
    bomb = runner(
        ["verify", url, *key, "--max-bytes", str(1024 * 1024)], transport=served(huge, True)
    )
    assert bomb.code == 1 and "too_large" in _one_error(bomb)
    typo = runner(["verify", str(path), *key, "--max-bytes", "0"])
    assert typo.code == 2
