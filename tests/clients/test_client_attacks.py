"""The field clients attacked as reality would: captive portals, gateways, broken pipes,
odd passphrases, wrong clocks, mistyped lot ids and output that is not a terminal.

Each test pins one defect that was found and fixed: the exact exit code, the one line the
user reads, what the outbox holds and what the server's log holds. The server is the fake
of conftest.py (the real rules engine behind ``httpx.MockTransport``); a wrapper lets a
test put a captive portal or a gateway in front of it.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from clients.cli import Hooks
from clients.keys import MIN_LIMITS, KeyFileError, create_key_file, load_key_file, write_key_file
from clients.outbox import Outbox
from ledger.protocol import public_key_hex, sign_body
from tests.clients.conftest import PASSPHRASE, Run, World, now_z, run_main

OFFER = ["lot", "offer", "--lot", "MAK-2026-0001", "--to", "trader-bunia", "--mass-mg", "38200"]

PORTAL_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Wi-Fi login</title></head>"
    "<body>Buy 1 hour of internet</body></html>"
)
GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@pytest.fixture
def cli(world: World) -> Callable[..., Run]:
    """``cli(args, key="coop"|"trader", offline=False, transport=None, **run_main options)``:
    goldtrail against the fake server, or against ``transport`` when given."""

    def run(
        args: list[str],
        key: str = "coop",
        offline: bool = False,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> Run:
        key_path = world.coop_key if key == "coop" else world.trader_key
        front = ["--server", "http://fake.test", "--key", str(key_path)]
        front += ["--outbox", str(world.outbox)] + (["--offline"] if offline else [])
        return run_main(front + args, transport=transport or world.fake.transport, **kwargs)

    return run


def _one_error(run: Run, code: str) -> str:
    """The single ``error:`` line of a run (no traceback), checked to end with ``(code)``."""
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert errors[0].endswith(f"({code})"), errors[0]
    return errors[0]


def _in_front(
    world: World, answer: Callable[[httpx.Request], httpx.Response | None]
) -> httpx.MockTransport:
    """The fake server behind something that may answer first (``answer`` returns None to
    let the request through)."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = answer(request)
        if response is not None:
            world.fake.requests.append(request)
            return response
        return world.fake.handle(request)

    return httpx.MockTransport(handle)


def _portal(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=PORTAL_PAGE, headers={"content-type": "text/html"})


def _posts_to_portal(request: httpx.Request) -> httpx.Response | None:
    return _portal(request) if request.method == "POST" else None


def _maintenance(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, text="maintenance until 14:00")


def _gateway_on_posts(request: httpx.Request) -> httpx.Response | None:
    if request.method != "POST":
        return None
    return httpx.Response(502, text=GATEWAY_PAGE, headers={"content-type": "text/html"})


def _outbox_rows(world: World) -> list[tuple[int, str, str, list[str]]]:
    with Outbox(world.outbox) as box:
        return [(e.id, e.status, e.type, e.lots) for e in box.events()]


# ---------------------------------------------------------------------------
# Answers that are not the server's


def test_captive_portal_answering_the_post_keeps_the_event_and_says_so(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """A hotel or shop Wi-Fi answers every POST with its login page (HTTP 200, HTML).

    Before: ``error: The server answered POST /v1/events/batch with something that is not
    JSON. (bad_response)``, exit 1, while the signed event silently stayed in the outbox: a
    treasurer told "error" signs it again, and both reach the log. Now the event is saved
    offline like for any other outage, and the next sync sends it, once."""
    assert cli(["sync"]).code == 0  # the origin is known
    size = len(world.fake.log)
    portal = _in_front(world, _posts_to_portal)
    run = cli(lot_args("MAK-2026-0001"), transport=portal)
    assert run.code == 0, run.stderr
    assert run.stdout == (
        "lot.registered MAK-2026-0001: saved offline; run goldtrail sync when you are "
        "connected (outbox #1) (The server answered POST /v1/events/batch with something "
        "that is not JSON.)\n"
    )
    assert "error" not in run.stderr
    assert _outbox_rows(world) == [(1, "pending", "lot.registered", ["MAK-2026-0001"])]
    assert len(world.fake.log) == size
    # `goldtrail sync` behind the portal: one line, non-zero, still pending
    synced = cli(["sync"], transport=portal)
    assert synced.code == 1
    assert _one_error(synced, "bad_response") == (
        "error: The server answered POST /v1/events/batch with something that is not JSON. "
        "1 event(s) still pending: run goldtrail sync again (bad_response)"
    )
    assert _outbox_rows(world) == [(1, "pending", "lot.registered", ["MAK-2026-0001"])]
    # out of the portal: sent once
    assert cli(["sync"]).code == 0
    with Outbox(world.outbox) as box:
        [event] = box.events()
    assert event.status == "sent" and event.seq == size
    assert world.fake.event_ids()[size:] == [event.event_id]


def test_captive_portal_on_every_request_works_offline(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """Behind a portal even ``GET /v1/log`` is a login page.

    Before: ``error: The server answered GET /v1/log with something that is not JSON.
    (bad_response)``, exit 1: nothing could be signed at all, although the origin and the
    lot's head were known on this machine. Now the command works offline."""
    assert cli(lot_args("MAK-2026-0001")).code == 0  # online: origin and head cached
    size = len(world.fake.log)
    portal = _in_front(world, _portal)
    run = cli(OFFER, transport=portal)
    assert run.code == 0, run.stderr
    assert run.stderr == (
        "note: cannot reach http://fake.test; working offline (The server answered GET "
        "/v1/log with something that is not JSON.)\n"
    )
    assert run.stdout.startswith(
        "lot.transfer_offered MAK-2026-0001: saved offline; run goldtrail sync when you are "
        "connected (outbox #2, event "
    )
    assert _outbox_rows(world) == [
        (1, "sent", "lot.registered", ["MAK-2026-0001"]),
        (2, "pending", "lot.transfer_offered", ["MAK-2026-0001"]),
    ]
    assert len(world.fake.log) == size
    assert cli(["sync"]).code == 0
    assert world.fake.ledger.state.lots["MAK-2026-0001"].status == "offered"
    assert len(world.fake.log) == size + 1


def test_server_in_maintenance_works_offline(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """The server (or its proxy) answers 503 to everything during maintenance.

    Before: ``error: The server answered HTTP 503 Service Unavailable: maintenance until
    14:00 (http_503)``, exit 1: the treasurer could not record the lot she had in hand.
    Now it is signed and saved offline, as when the server cannot be reached."""
    assert cli(lot_args("MAK-2026-0001")).code == 0
    size = len(world.fake.log)
    down = _in_front(world, _maintenance)
    run = cli(OFFER, transport=down)
    assert run.code == 0, run.stderr
    assert run.stderr == (
        "note: cannot reach http://fake.test; working offline (The server answered HTTP 503 "
        "Service Unavailable: maintenance until 14:00)\n"
    )
    assert "saved offline; run goldtrail sync when you are connected (outbox #2" in run.stdout
    assert _outbox_rows(world)[-1] == (2, "pending", "lot.transfer_offered", ["MAK-2026-0001"])
    assert len(world.fake.log) == size
    assert cli(["sync"]).code == 0
    assert len(world.fake.log) == size + 1


def test_gateway_error_page_is_not_pasted_into_the_message(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """A reverse proxy answers 502 with its HTML page.

    Before: ``error: The server answered HTTP 502 Bad Gateway: <html> 1 event(s) still
    pending: run goldtrail sync again (http_502)``. Now the line carries no markup."""
    assert cli(["sync"]).code == 0
    assert cli(lot_args("MAK-2026-0001"), offline=True).code == 0
    run = cli(["sync"], transport=_in_front(world, _gateway_on_posts))
    assert run.code == 1
    assert _one_error(run, "http_502") == (
        "error: The server answered HTTP 502 Bad Gateway. 1 event(s) still pending: run "
        "goldtrail sync again (http_502)"
    )
    assert _outbox_rows(world) == [(1, "pending", "lot.registered", ["MAK-2026-0001"])]


def test_receipts_that_are_not_a_list_stop_the_sync_without_a_traceback(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """A broken server or proxy answers the batch with JSON of the wrong shape.

    Before: a TypeError traceback (``object of type 'NoneType' has no len()``). Now one line;
    nothing is marked sent, the event stays pending."""
    assert cli(["sync"]).code == 0
    assert cli(lot_args("MAK-2026-0001"), offline=True).code == 0

    def odd(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST":
            return httpx.Response(201, json={"receipts": None, "checkpoint": "x"})
        return None

    run = cli(["sync"], transport=_in_front(world, odd))
    assert run.code == 1
    assert _one_error(run, "bad_response") == (
        "error: The server's receipts do not match the events sent; nothing was marked. "
        "1 event(s) still pending: run goldtrail sync again (bad_response)"
    )
    assert _outbox_rows(world) == [(1, "pending", "lot.registered", ["MAK-2026-0001"])]


def test_sync_output_in_a_pipe_has_no_progress_bar(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """``goldtrail sync 2>>sync.log`` from a script or a scheduled task.

    Before: stderr got ``sending ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 2/2``. Now, when
    stderr is not a terminal, only the plain lines are written."""
    assert cli(["sync"]).code == 0
    assert cli(lot_args("MAK-2026-0001"), offline=True).code == 0
    assert cli(lot_args("MAK-2026-0002"), offline=True).code == 0
    run = cli(["sync"])
    assert run.code == 0
    assert run.stdout == "sent 2 event(s) in 1 request(s)\n"
    assert run.stderr == ""
    with Outbox(world.outbox) as box:
        assert box.counts() == {"pending": 0, "sent": 2, "failed": 0}
        assert [e.event_id for e in box.events()] == world.fake.event_ids()[-2:]


# ---------------------------------------------------------------------------
# Passphrases


def test_passphrase_from_a_non_utf8_environment_opens_without_a_traceback(
    runner: Callable[..., Run], tmp_path: Path
) -> None:
    """GOLDTRAIL_PASSPHRASE set in a shell whose locale is Latin-1: Python hands the 'é' over
    as an undecodable byte.

    Before: a UnicodeEncodeError traceback ('surrogates not allowed') from ``keys new`` and
    from every command that opens the key. Now the passphrase is taken as the bytes the
    system gave: the file is created and opens again with the same passphrase; another one
    is one plain line."""
    path = tmp_path / "coop.json"
    latin1 = {"GOLDTRAIL_PASSPHRASE": "caf\udce9 au lait, 2 sucres"}
    made = runner(["--key", str(path), "keys", "new", "--actor", "coop-abc"], env=latin1)
    assert made.code == 0, made.stderr
    assert "Traceback" not in made.stderr
    check = runner(["--key", str(path), "keys", "show", "--check"], env=latin1)
    assert check.code == 0, check.stderr
    assert check.stdout.endswith("passphrase: correct\n")
    other = runner(
        ["--key", str(path), "keys", "show", "--check"],
        env={"GOLDTRAIL_PASSPHRASE": "cafe au lait, 2 sucres"},
    )
    assert other.code == 1
    assert (
        _one_error(other, "key_file") == f"error: wrong passphrase for key file {path} (key_file)"
    )


def test_passphrase_with_accents_opens_whichever_way_the_keyboard_composes_them(
    runner: Callable[..., Run], tmp_path: Path
) -> None:
    """'é' can be typed as one character (NFC) or as 'e' plus a combining accent (NFD),
    depending on the keyboard, the input method or a copy-paste.

    Before: a key file made with one form refused the other: 'error: wrong passphrase for
    key file …' although the treasurer typed her passphrase exactly. Now both open it, and
    a file made before this change (with the accents as they were typed) still opens."""
    decomposed = "Mine d'or de Mambasa, cafe\u0301 sucre\u0301"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    path = tmp_path / "coop.json"
    made = runner(
        ["--key", str(path), "keys", "new", "--actor", "coop-abc"],
        env={"GOLDTRAIL_PASSPHRASE": decomposed},
    )
    assert made.code == 0, made.stderr
    for typed in (composed, decomposed):
        check = runner(
            ["--key", str(path), "keys", "show", "--check"], env={"GOLDTRAIL_PASSPHRASE": typed}
        )
        assert check.code == 0, check.stderr
        assert check.stdout.endswith("passphrase: correct\n")
    # a file written with the passphrase exactly as typed (decomposed), as before
    old = tmp_path / "old.json"
    signing = nacl.signing.SigningKey.generate()
    write_key_file(old, "coop-abc", signing, decomposed, limits=MIN_LIMITS)
    for typed in (composed, decomposed):
        assert load_key_file(old, typed).public_key == public_key_hex(signing)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key_file(old, composed.replace("Mambasa", "Bunia"))


def test_no_passphrase_at_hand_says_how_to_give_one(
    runner: Callable[..., Run], tmp_path: Path
) -> None:
    """A script runs a command that signs, with GOLDTRAIL_PASSPHRASE empty and nothing on
    its input.

    Before: 'error: aborted (aborted)', which says nothing about the passphrase. Now the
    line says which key file needs it and how to give it."""
    path = tmp_path / "coop.json"
    create_key_file(path, "coop-abc", PASSPHRASE, limits=MIN_LIMITS)
    run = runner(
        ["--key", str(path), "keys", "show", "--check"],
        env={"GOLDTRAIL_PASSPHRASE": ""},
        input="",
    )
    assert run.code == 1
    assert _one_error(run, "key_file") == (
        f"error: no passphrase was given for the key file {path}: type it when asked, or set "
        "GOLDTRAIL_PASSPHRASE (key_file)"
    )


# ---------------------------------------------------------------------------
# Options typed wrong


def test_lot_id_typed_in_lowercase_says_to_write_it_in_capitals(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """The lot MAK-2026-0001 exists; the trader types its id from the bag in lowercase.

    Before: online 'error: lot mak-2026-0001 is not in the log (unknown_lot)', offline 'the
    head of lot mak-2026-0001 is not known on this machine: run `goldtrail lot show
    mak-2026-0001` once while online', and ``lot show`` 'There is no such lot.': each sends
    the user looking for a lot that exists. Now a usage error says what to write."""
    assert cli(lot_args("MAK-2026-0001")).code == 0
    size = len(world.fake.log)
    capitals = "lot ids are written in capital letters: MAK-2026-0001, not mak-2026-0001 (usage)"
    offer = [
        "lot",
        "offer",
        "--lot",
        "mak-2026-0001",
        "--to",
        "trader-bunia",
        "--mass-mg",
        "38200",
    ]
    for args, offline in (
        (offer, False),
        (offer, True),
        (
            [
                "lot",
                "process",
                "--input",
                "mak-2026-0001",
                "--output",
                "MAK-2026-0002:38000:gold:870000",
                "--process",
                "smelting",
            ],
            False,
        ),
    ):
        run = cli(args, offline=offline)
        assert run.code == 2, run.stderr
        option = "--input" if "process" in args else "--lot"
        assert _one_error(run, "usage") == f"error: {option}: {capitals}"
    for command in ("show", "history", "qr", "bundle"):
        run = cli(["lot", command, "mak-2026-0001"])
        assert run.code == 2, run.stderr
        assert _one_error(run, "usage") == f"error: LOT: {capitals}"
    other = cli(["lot", "show", "MAK 2026/1"])
    assert other.code == 2
    assert _one_error(other, "usage") == (
        "error: LOT: 'MAK 2026/1' is not a lot id: 4 to 48 capital letters, digits or "
        "hyphens, like MAK-2026-0001 (usage)"
    )
    assert len(world.fake.log) == size
    assert _outbox_rows(world) == [(1, "sent", "lot.registered", ["MAK-2026-0001"])]


# ---------------------------------------------------------------------------
# Clocks


def test_clock_reset_to_the_past_is_caught_before_signing_offline(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """A cheap phone's battery ran flat and its clock came back at 2000-01-01; the
    treasurer, offline, offers a lot registered yesterday.

    Before: the offer was signed with time 2000-01-01T00:00:00Z and saved ('saved offline
    …', exit 0); at the next sync the server refused it (time_order), and it and every event
    queued after it on the lot had to be dropped and signed again. Now nothing is signed:
    one line says the clock is behind the lot's last event and to set it."""
    assert cli(lot_args("MAK-2026-0001")).code == 0
    with Outbox(world.outbox) as box:
        [registered] = box.events()
    reset = Hooks(
        transport=world.fake.transport,
        kdf_limits=MIN_LIMITS,
        now=lambda: dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    run = cli(OFFER, offline=True, hooks=reset)
    assert run.code == 1
    assert _one_error(run, "clock") == (
        "error: this device's clock says 2000-01-01T00:00:00Z, before the last event on lot "
        f"MAK-2026-0001 ({registered.body['time']}): set the date and time, then try again "
        "(clock)"
    )
    assert run.stdout == ""
    assert _outbox_rows(world) == [(1, "sent", "lot.registered", ["MAK-2026-0001"])]
    # with the clock set, the same command is signed and queued
    run = cli(OFFER, offline=True)
    assert run.code == 0, run.stderr
    assert _outbox_rows(world)[-1] == (2, "pending", "lot.transfer_offered", ["MAK-2026-0001"])


# ---------------------------------------------------------------------------
# Refused events and what builds on them


def test_new_event_on_a_lot_held_back_by_a_refused_event_is_refused_not_saved(
    cli: Callable[..., Run], lot_args: Any, world: World
) -> None:
    """Offline, the treasurer offered lot A, then smelted A and B together; meanwhile an
    auditor flagged A, so the offer is refused at sync (stale_prev) and the smelting, which
    builds on it, is held back. Back online, she assays lot B.

    Before: the assay was signed on top of the held-back smelting, held back in turn, and
    the command said 'saved offline; run goldtrail sync when you are connected', exit 0,
    while connected: a lie, and one more event to drop. Now, as for a lot the refused event
    names itself, nothing is signed and one line says which refused event to deal with."""
    assert cli(lot_args("MAK-2026-0001")).code == 0
    assert cli(lot_args("MAK-2026-0002")).code == 0
    assert cli(OFFER, offline=True).code == 0  # outbox #3
    cancel = ["lot", "cancel", "--lot", "MAK-2026-0001", "--reason", "Buyer did not come"]
    assert cli(cancel, offline=True, input="y\n").code == 0  # outbox #4
    smelt = [
        "lot",
        "process",
        "--input",
        "MAK-2026-0001",
        "--input",
        "MAK-2026-0002",
        "--output",
        "MAK-2026-0003:70000:dore:870000",
        "--process",
        "smelting",
    ]
    assert cli(smelt, offline=True).code == 0  # outbox #5
    head = world.fake.ledger.state.lots["MAK-2026-0001"].head
    flag = {
        "v": 1,
        "type": "lot.flagged",
        "actor": "registrar-test",
        "time": now_z(),
        "lot": "MAK-2026-0001",
        "prev": head,
        "code": "origin_misrepresentation",
        "note": "Seal number does not match the register",
    }
    world.fake.append(sign_body(flag, world.registrar, world.fake.origin))
    size = len(world.fake.log)
    assay = ["lot", "assay", "--lot", "MAK-2026-0002", "--fineness-ppm", "860000"]
    run = cli([*assay, "--method", "acid"])
    assert run.code == 1
    assert "refused: outbox #3 lot.transfer_offered MAK-2026-0001:" in run.stderr
    assert _one_error(run, "outbox_blocked") == (
        "error: outbox event #3 (lot.transfer_offered) on lot MAK-2026-0001 was refused "
        "(stale_prev), and pending events on lot MAK-2026-0002 build on it; retry or drop it "
        "first (goldtrail outbox list) (outbox_blocked)"
    )
    assert "saved offline" not in run.stdout
    assert len(world.fake.log) == size
    assert _outbox_rows(world) == [
        (1, "sent", "lot.registered", ["MAK-2026-0001"]),
        (2, "sent", "lot.registered", ["MAK-2026-0002"]),
        (3, "failed", "lot.transfer_offered", ["MAK-2026-0001"]),
        (4, "pending", "lot.transfer_cancelled", ["MAK-2026-0001"]),
        (5, "pending", "lot.processed", ["MAK-2026-0001", "MAK-2026-0002", "MAK-2026-0003"]),
    ]
