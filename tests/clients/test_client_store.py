"""The CLI against the real SQL store (SQLite and PostgreSQL), served without HTTP.

This is the end-to-end path minus the HTTP layer: the whole demo scenario played one CLI
command per event, then the bar's bundle (real checkpoint, real proofs) verified offline by
``goldtrail verify``, from a file and from the label's URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.keys import read_public
from clients.scenario import load_scenario

BASE = "http://store.test"


def _ok(result: Any) -> Any:
    assert result.code == 0, f"{result.code}\n{result.stdout}\n{result.stderr}"
    return result


def test_scenario_through_the_cli_then_verify(
    store_server_factory: Callable[..., Any],
    scenario_commands: Callable[[Path], Any],
    runner: Callable[..., Any],
    tmp_path: Path,
) -> None:
    scenario = load_scenario()
    keys, commands = scenario_commands(tmp_path)
    registrar = scenario["events"][0]["actor"]
    server = store_server_factory(read_public(keys[registrar])[1])
    transport = server.transport
    base = ["--server", BASE, "--outbox", str(tmp_path / "o.db"), "--yes"]
    for key, args in commands:
        _ok(runner([*base, "--key", str(key), *args], transport=transport))

    expected = scenario["expected"]
    bar = expected["bar_lot"]
    view = json.loads(
        _ok(runner([*base, "lot", "show", bar, "--json"], transport=transport)).stdout
    )
    assert view["origins"] == sorted(expected["origins"])
    assert sorted(f["code"] for f in view["flags"] if f["status"] == "open") == sorted(
        expected["open_flags_on_bar"]
    )
    assert view["risk"] == expected["bar_risk"] and view["gender"] == expected["bar_gender"]
    info = server.ledger.log_info()
    assert info["size"] == len(scenario["events"])

    bundle = tmp_path / "bar.json"
    _ok(runner([*base, "lot", "bundle", bar, "--out", str(bundle)], transport=transport))
    verify = ["--log-key", info["verifier_key"], "--registrar-key", info["registrar_key"]]
    report = json.loads(_ok(runner(["verify", str(bundle), *verify, "--json"])).stdout)
    assert report["ok"] and report["state"]["gender"] == expected["bar_gender"]
    human = _ok(runner(["verify", str(bundle), *verify]))
    assert human.stdout.startswith(f"VERIFIED: lot {bar}")

    # the registrar's key as hex in capitals is the same key; anything not 64 hex digits is
    # a usage error in one line, not "this bundle does not verify"
    upper = ["--log-key", info["verifier_key"], "--registrar-key", info["registrar_key"].upper()]
    assert json.loads(_ok(runner(["verify", str(bundle), *upper, "--json"])).stdout)["ok"]
    typo = runner(
        ["verify", str(bundle), "--log-key", info["verifier_key"], "--registrar-key", "3d40"]
    )
    assert typo.code == 2
    assert typo.stderr.strip().splitlines() == [
        "error: --registrar-key: a public key is 64 hexadecimal characters (0-9, a-f), "
        "not '3d40' (usage)"
    ], typo.stderr

    wrong = runner(
        ["verify", str(bundle), "--log-key", info["verifier_key"], "--registrar-key", "00" * 32]
    )
    assert wrong.code == 1
    assert [line for line in wrong.stderr.splitlines() if line.startswith("error:")] == [
        line for line in wrong.stderr.splitlines() if line.strip()
    ]
    assert "does not verify" in wrong.stderr and "(not_verified)" in wrong.stderr

    label = f"{BASE}/l/{bar}?at={view['head']}"
    first = _ok(runner(["verify", label, *verify], transport=transport))
    assert "nothing has happened to this lot since its label was printed" in first.stdout
    _ok(
        runner(
            [
                *base,
                "--key",
                str(keys["auditor-great-lakes"]),
                "lot",
                "flag",
                "--lot",
                bar,
                "--code",
                "origin_misrepresentation",
                "--note",
                "Bar serial differs from the refinery record",
            ],
            transport=transport,
        )
    )
    later = json.loads(
        _ok(runner(["verify", label, *verify, "--json"], transport=transport)).stdout
    )
    assert later["ok"] and [t["type"] for t in later["after_label"]] == ["lot.flagged"]
    bundle_url = f"{BASE}/v1/lots/{bar}/bundle"
    assert json.loads(
        _ok(runner(["verify", bundle_url, *verify, "--json"], transport=transport)).stdout
    )["ok"]


def test_offline_week_against_the_store(
    store_server_factory: Callable[..., Any],
    runner: Callable[..., Any],
    tmp_path: Path,
    lot_args: Any,
) -> None:
    """Forty events signed offline, then synced in batches of 7; the store has each once."""
    from clients.keys import MIN_LIMITS, create_key_file

    keys = {}
    for actor in ("registrar-e2e", "coop-mambasa", "trader-bunia"):
        keys[actor] = tmp_path / f"{actor}.json"
        create_key_file(keys[actor], actor, "correct horse battery staple", limits=MIN_LIMITS)
    server = store_server_factory(read_public(keys["registrar-e2e"])[1])
    t = server.transport
    base = ["--server", BASE, "--outbox", str(tmp_path / "o.db"), "--yes"]
    reg = [*base, "--key", str(keys["registrar-e2e"])]
    _ok(
        runner(
            [
                *reg,
                "actor",
                "register",
                "--subject",
                "registrar-e2e",
                "--name",
                "Registry",
                "--role",
                "registrar",
                "--country",
                "CD",
            ],
            transport=t,
        )
    )
    for actor, role, prefix in (
        ("coop-mambasa", "cooperative", "MAK-"),
        ("trader-bunia", "trader", "BUN-"),
    ):
        _ok(
            runner(
                [
                    *reg,
                    "actor",
                    "register",
                    "--subject",
                    actor,
                    "--name",
                    actor,
                    "--role",
                    role,
                    "--country",
                    "CD",
                    "--lot-prefix",
                    prefix,
                    "--public-key",
                    read_public(keys[actor])[1],
                ],
                transport=t,
            )
        )
    _ok(
        runner(
            [
                *reg,
                "site",
                "register",
                "--site",
                "site-makala",
                "--name",
                "Makala",
                "--operator",
                "coop-mambasa",
                "--country",
                "CD",
                "--region",
                "Ituri",
                "--lat",
                "1.36110",
                "--lon",
                "29.04020",
            ],
            transport=t,
        )
    )
    coop = [*base, "--key", str(keys["coop-mambasa"]), "--offline"]
    for n in range(10):
        lot = f"MAK-2026-{n:04d}"
        offer = ["lot", "offer", "--lot", lot, "--to", "trader-bunia", "--mass-mg", "38200"]
        _ok(runner([*coop, *lot_args(lot)], transport=t))
        _ok(runner([*coop, *offer], transport=t))
        _ok(runner([*coop, "lot", "cancel", "--lot", lot, "--reason", "Road closed"], transport=t))
        _ok(runner([*coop, *offer], transport=t))
    assert server.ledger.log_info()["size"] == 4
    server.down = True
    down = runner([*base, "sync"], transport=t)
    assert down.code == 1 and "(unreachable)" in down.stderr
    server.down = False
    synced = _ok(runner([*base, "sync", "--batch-size", "7"], transport=t))
    assert "sent 40 event(s) in 6 request(s)" in synced.stdout
    assert server.ledger.log_info()["size"] == 44
    lot = server.ledger.lot("MAK-2026-0009")
    assert lot.status == "offered" and lot.offer is not None
    # the trader accepts in one command
    _ok(
        runner(
            [
                *base,
                "--key",
                str(keys["trader-bunia"]),
                "lot",
                "accept",
                "--lot",
                "MAK-2026-0009",
                "--mass-mg",
                "38190",
            ],
            transport=t,
        )
    )
    assert server.ledger.lot("MAK-2026-0009").custodian == "trader-bunia"


def test_demo_player_on_a_fresh_log(store_server_factory: Callable[..., Any]) -> None:
    """What ``goldtrail demo`` does once its embedded server is up: play, then check."""
    import nacl.signing

    from clients.cli import _check_expected, _play_scenario
    from clients.sdk import Client
    from ledger.protocol import public_key_hex

    registrar = nacl.signing.SigningKey.generate()
    server = store_server_factory(public_key_hex(registrar))
    with Client(BASE, transport=server.transport) as client:
        origin = client.log()["origin"]
        scenario, rename = _play_scenario(client, origin, registrar)
        bar, view = _check_expected(client, scenario, rename)
    assert bar == scenario["expected"]["bar_lot"] and view["risk"] == "medium"
    assert server.ledger.log_info()["size"] == len(scenario["events"])
