"""End to end: the goldtrail CLI against a real server process, on SQLite and PostgreSQL.

- the whole demo scenario played command by command through the CLI, then the bar's bundle
  verified offline, from a file and from its label URL;
- ``goldtrail demo`` (embedded server) and ``goldtrail demo --registrar-key`` twice against
  a live log;
- 200 events signed offline, then synced;
- a sync interrupted by killing the server midway resumes: nothing lost, nothing duplicated.

The server runs as ``goldtrail serve --port P`` in a subprocess with its settings in the
environment (PROTOCOL.md section 8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from clients.keys import MIN_LIMITS, create_key_file, read_public, write_key_file
from clients.scenario import load_scenario
from clients.sdk import Client

PASS = "correct horse battery staple"
ORIGIN = "e2e.goldtrail.test/log"
REPO = Path(__file__).resolve().parents[2]


def _api_ready() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("api.app", "api.server"))


pytestmark = pytest.mark.skipif(
    not _api_ready(), reason="the API (api/app.py, api/server.py) is not there yet"
)


def _goldtrail() -> list[str]:
    script = Path(sys.executable).parent / "goldtrail"
    return [str(script)] if script.exists() else [sys.executable, "-m", "clients"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A ``goldtrail serve`` subprocess; ``start`` again after ``kill`` on the same data."""

    folder: Path
    database_url: str
    registrar_key: str | None
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / f"server-{self.starts}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDTRAIL_")}
        env.update(
            {
                "GOLDTRAIL_DATABASE_URL": self.database_url,
                "GOLDTRAIL_LOG_KEY_FILE": str(self.folder / "log.key"),
                "GOLDTRAIL_ORIGIN": ORIGIN,
                "GOLDTRAIL_PUBLIC_URL": self.url,
            }
        )
        if self.registrar_key is not None:
            env["GOLDTRAIL_REGISTRAR_KEY"] = self.registrar_key
        return env

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*_goldtrail(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"goldtrail serve exited ({self.process.returncode}):\n"
                    f"{self.log_path.read_text()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.url}/v1/log", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"goldtrail serve did not answer:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@pytest.fixture
def server_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(registrar_key: str | None) -> Server:
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir()
        server = Server(folder, database_url, registrar_key)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def _key(folder: Path, actor: str) -> Path:
    path = folder / "keys" / f"{actor}.json"
    create_key_file(path, actor, PASS, limits=MIN_LIMITS)
    return path


def _ok(result: Any) -> Any:
    assert result.code == 0, (
        f"exit {result.code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


# ---------------------------------------------------------------------------
# The whole scenario, one CLI command per event


def test_whole_scenario_through_the_cli(
    server_factory: Callable[..., Server],
    tmp_path: Path,
    runner: Callable[..., Any],
    scenario_commands: Callable[[Path], Any],
) -> None:
    scenario = load_scenario()
    keys, commands = scenario_commands(tmp_path)
    registrar = scenario["events"][0]["actor"]
    server = server_factory(read_public(keys[registrar])[1])
    outbox = tmp_path / "outbox.db"
    base = ["--server", server.url, "--outbox", str(outbox), "--yes"]
    for key, args in commands:
        _ok(runner([*base, "--key", str(key), *args]))

    expected = scenario["expected"]
    bar = expected["bar_lot"]
    view = json.loads(_ok(runner([*base, "lot", "show", bar, "--json"])).stdout)
    assert view["origins"] == sorted(expected["origins"])
    assert sorted(f["code"] for f in view["flags"] if f["status"] == "open") == sorted(
        expected["open_flags_on_bar"]
    )
    assert view["risk"] == expected["bar_risk"]
    assert view["gender"] == expected["bar_gender"]
    with Client(server.url) as client:
        info = client.log()
        assert info["size"] == len(scenario["events"])

    # the bundle, verified offline, pinned to the registrar
    bundle = tmp_path / "bar.bundle.json"
    _ok(runner([*base, "lot", "bundle", bar, "--out", str(bundle)]))
    verify = ["--log-key", info["verifier_key"], "--registrar-key", info["registrar_key"]]
    report = json.loads(_ok(runner(["verify", str(bundle), *verify, "--json"])).stdout)
    assert report["ok"] and report["state"]["gender"] == expected["bar_gender"]
    # a wrong registrar key fails, in one line
    wrong = runner(
        ["verify", str(bundle), "--log-key", info["verifier_key"], "--registrar-key", "00" * 32]
    )
    assert wrong.code == 1 and wrong.stderr.startswith("error: the bundle does not verify")

    # from the label's URL; then the lot moves on and the old label says so
    label = f"{server.url}/l/{bar}?at={view['head']}"
    human = _ok(runner(["verify", label, *verify]))
    assert "VERIFIED" in human.stdout and "nothing has happened" in human.stdout
    _ok(
        runner(
            [
                *base,
                "--key",
                str(keys["refiner-alpine"]),
                "lot",
                "flag",
                "--lot",
                bar,
                "--code",
                "origin_misrepresentation",
                "--note",
                "Serial number on the bar differs from the refinery record",
            ]
        )
    )
    after = json.loads(_ok(runner(["verify", label, *verify, "--json"])).stdout)
    assert after["ok"] and [t["type"] for t in after["after_label"]] == ["lot.flagged"]
    human = _ok(runner(["verify", label, *verify]))
    assert "since the label was printed" in human.stdout

    # the QR code and the history commands work against the real server
    qr = _ok(runner([*base, "lot", "qr", bar]))
    assert f"{server.url}/l/{bar}?at=" in qr.stdout
    png = tmp_path / "bar.png"
    _ok(runner([*base, "lot", "qr", bar, "--png", str(png)]))
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "lot.processed" in _ok(runner([*base, "lot", "history", bar])).stdout


def test_demo_embedded_server() -> None:
    done = subprocess.run(
        [*_goldtrail(), "demo", "--no-wait"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "goldtrail verify 'http://127.0.0.1:" in done.stdout
    assert "/l/ALP-2026-118842?at=" in done.stdout
    assert "█" in done.stdout or "▀" in done.stdout or "▄" in done.stdout  # the QR code


def test_demo_twice_against_an_existing_log(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(None)  # the server makes its own registrar key
    written = [
        p
        for p in server.folder.iterdir()
        if p.name != "log.key"
        and p.suffix not in (".log", ".db")
        and re.fullmatch(r"\s*[0-9a-f]{64}\s*", p.read_text(errors="replace"))
    ]
    assert len(written) == 1, sorted(p.name for p in server.folder.iterdir())
    raw_key = written[0]
    encrypted = tmp_path / "registrar.json"
    seed = nacl.signing.SigningKey(bytes.fromhex(raw_key.read_text().strip()))
    write_key_file(encrypted, "registrar-x", seed, PASS, limits=MIN_LIMITS)
    env = {**os.environ, "GOLDTRAIL_PASSPHRASE": PASS, "HOME": str(tmp_path)}
    sizes = []
    for key in (raw_key, encrypted):
        done = subprocess.run(
            [*_goldtrail(), "--server", server.url, "demo", "--registrar-key", str(key)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert "goldtrail verify" in done.stdout
        with Client(server.url) as client:
            sizes.append(client.log()["size"])
    scenario = load_scenario()
    assert sizes[1] - sizes[0] == len(scenario["events"]) - 1  # seq 0 is not played again


# ---------------------------------------------------------------------------
# A week offline: 200 events, then sync


@dataclass
class Coop:
    base: list[str]
    coop_key: Path
    outbox: Path
    lots: list[str]


def _setup_offline_world(
    server: Server, tmp_path: Path, runner: Callable[..., Any], registrar_key: Path
) -> Coop:
    coop_key = _key(tmp_path, "coop-mambasa")
    trader_key = _key(tmp_path, "trader-bunia")
    outbox = tmp_path / "outbox.db"
    base = ["--server", server.url, "--outbox", str(outbox), "--yes"]
    reg = [*base, "--key", str(registrar_key)]
    _ok(
        runner(
            [
                *reg,
                "actor",
                "register",
                "--subject",
                "registrar-e2e",
                "--name",
                "E2E Registry",
                "--role",
                "registrar",
                "--country",
                "CD",
            ]
        )
    )
    _ok(
        runner(
            [
                *reg,
                "actor",
                "register",
                "--subject",
                "coop-mambasa",
                "--name",
                "Coop Mambasa",
                "--role",
                "cooperative",
                "--country",
                "CD",
                "--lot-prefix",
                "MAK-",
                "--public-key",
                read_public(coop_key)[1],
            ]
        )
    )
    _ok(
        runner(
            [
                *reg,
                "actor",
                "register",
                "--subject",
                "trader-bunia",
                "--name",
                "Bunia Traders",
                "--role",
                "trader",
                "--country",
                "CD",
                "--lot-prefix",
                "BUN-",
                "--public-key",
                read_public(trader_key)[1],
            ]
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
            ]
        )
    )
    return Coop(base, coop_key, outbox, [])


def _queue_week(coop: Coop, runner: Callable[..., Any], lot_args: Any, lots: int) -> None:
    """Four offline events per lot: register, offer, cancel, offer again."""
    args = [*coop.base, "--key", str(coop.coop_key), "--offline"]
    for n in range(lots):
        lot = f"MAK-2026-{n:04d}"
        coop.lots.append(lot)
        _ok(runner([*args, *lot_args(lot)]))
        offer = ["lot", "offer", "--lot", lot, "--to", "trader-bunia", "--mass-mg", "38200"]
        _ok(runner([*args, *offer]))
        _ok(runner([*args, "lot", "cancel", "--lot", lot, "--reason", "Road closed by rain"]))
        _ok(runner([*args, *offer]))


def _outbox_rows(path: Path) -> list[tuple[str, str, int | None]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT event_id, status, seq FROM events ORDER BY id").fetchall()


def _check_all_logged_once(server: Server, rows: list[tuple[str, str, int | None]]) -> None:
    with Client(server.url) as client:
        entries = list(client.iter_entries(0, limit=1000))
        ids = [e["event_id"] for e in entries]
        assert len(ids) == len(set(ids)) == client.log()["size"]
        position = {event: n for n, event in enumerate(ids)}
        for event_id, status, seq in rows:
            assert status == "sent"
            assert position[event_id] == seq


def test_two_hundred_events_offline_then_sync(
    server_factory: Callable[..., Server], tmp_path: Path, runner: Callable[..., Any], lot_args: Any
) -> None:
    registrar = _key(tmp_path, "registrar-e2e")
    server = server_factory(read_public(registrar)[1])
    coop = _setup_offline_world(server, tmp_path, runner, registrar)
    with Client(server.url) as client:
        size = client.log()["size"]
    _queue_week(coop, runner, lot_args, 50)
    rows = _outbox_rows(coop.outbox)
    assert [r[1] for r in rows[-200:]] == ["pending"] * 200
    with Client(server.url) as client:
        assert client.log()["size"] == size  # nothing went out
    synced = _ok(runner([*coop.base, "sync"]))
    assert "sent 200 event(s) in 2 request(s)" in synced.stdout
    _check_all_logged_once(server, _outbox_rows(coop.outbox))
    with Client(server.url) as client:
        assert client.log()["size"] == size + 200
        for lot in coop.lots[:3] + coop.lots[-3:]:
            state = client.lot(lot)
            assert state["status"] == "offered" and state["offer"]["id"] == state["head"]


def test_sync_killed_server_midway_resumes(
    server_factory: Callable[..., Server], tmp_path: Path, runner: Callable[..., Any], lot_args: Any
) -> None:
    registrar = _key(tmp_path, "registrar-e2e")
    server = server_factory(read_public(registrar)[1])
    coop = _setup_offline_world(server, tmp_path, runner, registrar)
    _queue_week(coop, runner, lot_args, 50)
    env = {**os.environ, "GOLDTRAIL_PASSPHRASE": PASS, "HOME": str(tmp_path)}
    sync = subprocess.Popen(
        [*_goldtrail(), *coop.base, "sync", "--batch-size", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    deadline = time.monotonic() + 120
    sent = 0
    while time.monotonic() < deadline and sync.poll() is None:
        sent = sum(1 for r in _outbox_rows(coop.outbox) if r[1] == "sent")
        if sent >= 4 + 20:  # setup events, then some of the week
            break
        time.sleep(0.01)
    server.kill()
    _out, err = sync.communicate(timeout=120)
    pending = sum(1 for r in _outbox_rows(coop.outbox) if r[1] == "pending")
    # killed midway: some sent, some still pending, and the sync said so in one line
    assert sent >= 24 and pending > 0, (sent, pending, err)
    assert sync.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("error: "), err
    assert "still pending" in err and err.strip().endswith("(unreachable)"), err
    server.start()
    _ok(runner([*coop.base, "sync"]))
    rows = _outbox_rows(coop.outbox)
    assert len(rows) == 204
    _check_all_logged_once(server, rows)
    with Client(server.url) as client:
        assert client.log()["size"] == 204
