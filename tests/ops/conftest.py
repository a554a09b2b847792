"""Fixtures for the operations tests: a real ``goldtrail serve`` subprocess, a second empty
database beside ``database_url``, a world log built once, and writing behind the store's
back (as the schema owner, bypassing the append-only triggers) to damage a log on purpose."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from ledger.protocol import public_key_hex
from ledger.store import Ledger, open_ledger
from tests import factories

REPO = Path(__file__).resolve().parents[2]
GOLDTRAIL = REPO / ".venv" / "bin" / "goldtrail"
APPEND_ONLY_MESSAGE = "the log is append-only"
#: the clock of the ledgers these tests open (after every event of the world's log)
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


@cache
def build_world() -> Any:
    """A log with lots, transfers, a split, a merge, a flag and an offer (built once)."""
    w = factories.World.standard()
    a = w.register_lot(mass_mg=200_000).body["lot"]
    b = w.register_lot(site="site-b", mass_mg=150_000).body["lot"]
    c = w.register_lot(declarations={"child_labour": "non_wfcl"}).body["lot"]
    w.transfer(a, "trader")
    w.split(a, [100_000, 100_000])
    w.flag(c, "bribery")
    w.transfer(b, "trader")
    parts = [lot for lot in w.ledger.state.lots if lot.startswith("TRD-")]
    w.merge([parts[0], b])
    w.offer(parts[1], "exporter")
    return w


def open_world_ledger(url: str, key_file: Path) -> Ledger:
    """A ledger on ``url`` for the world's log (its origin and registrar key), at ``NOW``."""
    w = build_world()
    return open_ledger(
        url,
        origin=w.origin,
        log_key_file=key_file,
        registrar_key=public_key_hex(w.registrar_key),
        clock=lambda: NOW,
    )


@pytest.fixture
def logged(database_url: str, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger holding the world's log, appended in batches of 7."""
    led = open_world_ledger(database_url, tmp_path / "log.key")
    try:
        envelopes = build_world().envelopes()
        for at in range(0, len(envelopes), 7):
            led.append(envelopes[at : at + 7], check_time=False)
        yield led
    finally:
        led.engine.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------------------
# Databases


def _pg_admin(url: str) -> Any:
    import psycopg

    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username or "postgres",
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture
def another_database(database_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make more empty databases of ``database_url``'s kind (on the same PostgreSQL server)."""
    made: list[str] = []

    def make() -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path}/other-{uuid.uuid4().hex[:8]}.db"
        name = f"t_{uuid.uuid4().hex[:20]}"
        with _pg_admin(database_url) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return make_url(database_url).set(database=name).render_as_string(hide_password=False)

    yield make
    if made:
        with _pg_admin(database_url) as conn:
            for name in made:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def behind_the_stores_back(engine: Engine, table: str) -> Iterator[Connection]:
    """A transaction, as the schema's owner, in which ``table``'s append-only triggers do
    not fire (SQLite: dropped and created again; PostgreSQL: DISABLE TRIGGER USER)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for action in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        else:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        yield conn
        if engine.dialect.name == "sqlite":
            for action in ("UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
                    )
                )
        else:
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def flip_a_digit(data: bytes) -> bytes:
    """The envelope with one digit of its first mass changed: still canonical JSON, so only
    the hashes and the signature can tell."""
    at = data.index(b'"mass_mg":') + len(b'"mass_mg":')
    return data[:at] + (b"2" if data[at : at + 1] != b"2" else b"3") + data[at + 1 :]


# ---------------------------------------------------------------------------
# A real server


class Server:
    """``goldtrail serve`` in a subprocess (its own session), stderr kept in a file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        """Start and wait until /readyz answers 200 (fails the test with the log if not)."""
        assert self.process is None
        if not GOLDTRAIL.exists():
            pytest.fail(f"{GOLDTRAIL} is missing: run make venv", pytrace=False)
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GOLDTRAIL), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the server was not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, wherever it is."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it lingers."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Server]]:
    """``server_factory(env)`` gives a Server (not started) with that GOLDTRAIL_* env; every
    server is killed at the end of the test."""
    servers: list[Server] = []

    def make(env: dict[str, str]) -> Server:
        workdir = tmp_path / f"server-{len(servers)}"
        workdir.mkdir()
        server = Server(env, workdir)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()
