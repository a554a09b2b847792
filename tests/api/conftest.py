"""Fixtures for the HTTP API tests: real apps over fresh databases, driven through HTTP.

- ``make_api(url=None, registrar_key=None, ...)``: an ``Api`` (a FastAPI app from
  ``api.app.create_app`` over a fresh database, its ``TestClient``, the settings, a clock
  the test can move, and the generated registrar key read back from its key file). No
  environment variable is read: the ``Settings`` are built explicitly.
- ``api``: one such app over ``database_url`` (SQLite and PostgreSQL); ``sqlite_api`` the
  same on SQLite only, for tests whose subject is not the database.
- ``HttpWorld``: ``tests/factories.py``'s ``World`` whose appends go through
  ``POST /v1/events`` (and into its in-memory mirror, which builds the next valid event).
- ``refusal(api, send, status, code, index=...)``: send a request that must be refused and
  check the RFC 9457 problem and that the log did not change.
- ``fresh_database(kind, folder, postgres_url)``: a throwaway database URL, for fixtures
  of a wider scope than ``database_url``.

The app's clock starts at ``START`` (so the generated seq 0 comes before the factories'
times, which begin at ``factories.T0``) and moves to ``NOW`` once the app is open: the
future-time rule then accepts every factory time and refuses anything after ``NOW`` + 5 min.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import registrar_key_path
from api.settings import Settings
from ledger.protocol import public_key_hex, signing_key_from_seed
from ledger.replay import MemoryLedger
from ledger.store import read_seed_file
from tests import factories

ORIGIN: str = factories.ORIGIN
PUBLIC_URL = "https://gold.example.test"
START = factories.T0 - dt.timedelta(hours=1)
NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
#: ``index=NO_INDEX`` (the default of ``refusal``) asserts the problem has no ``index``
NO_INDEX: Any = object()


class Clock:
    """A clock the test sets (``clock.now = ...``)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# ---------------------------------------------------------------------------
# Databases


def _pg_admin(port: int) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    )


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path, postgres_url: str | None = None) -> Iterator[str]:
    """A new empty database: a SQLite file in ``folder``, or a database on the test server."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/ledger-{uuid.uuid4().hex[:8]}.db"
        return
    from sqlalchemy.engine import make_url

    assert postgres_url is not None
    server = make_url(postgres_url)
    assert server.port is not None
    name = f"t_{uuid.uuid4().hex[:20]}"
    with _pg_admin(server.port) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with _pg_admin(server.port) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# ---------------------------------------------------------------------------
# Apps


@dataclass
class Api:
    """One app over one database, and the means to talk to it."""

    app: FastAPI
    client: TestClient
    settings: Settings
    clock: Clock
    folder: Path
    #: the generated registrar's signing key (None when GOLDTRAIL_REGISTRAR_KEY was set)
    registrar: nacl.signing.SigningKey | None
    worlds: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.settings.database_url

    def post(self, envelope: Any) -> httpx.Response:
        """``POST /v1/events`` with an envelope (an ``Event`` or plain JSON)."""
        return self.client.post("/v1/events", json=_plain(envelope))

    def batch(self, envelopes: list[Any]) -> httpx.Response:
        """``POST /v1/events/batch``."""
        return self.client.post("/v1/events/batch", json={"events": [_plain(e) for e in envelopes]})

    def log(self) -> dict[str, Any]:
        """``GET /v1/log``."""
        response = self.client.get("/v1/log")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def lot(self, lot_id: str) -> dict[str, Any]:
        """``GET /v1/lots/{lot}``."""
        response = self.client.get(f"/v1/lots/{lot_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def world(self) -> HttpWorld:
        """A ``World`` over this app's log (the generated registrar at seq 0)."""
        return HttpWorld(self)

    def close(self) -> None:
        self.client.close()
        self.app.state.runtime.store.engine.dispose()


def _plain(envelope: Any) -> Any:
    return envelope.envelope if isinstance(envelope, factories.Event) else envelope


def open_api(
    url: str,
    folder: Path,
    *,
    registrar_key: str | None = None,
    origin: str = ORIGIN,
    clock: Clock | None = None,
) -> Api:
    """Open an app over ``url`` with its keys in ``folder``; the clock ends at ``NOW``."""
    folder.mkdir(parents=True, exist_ok=True)
    # env-free: no GOLDTRAIL_* variable fills a setting not given here
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GOLDTRAIL_")}
    try:
        settings = Settings(
            database_url=url,
            log_key_file=str(folder / "log.key"),
            origin=origin,
            public_url=PUBLIC_URL,
            registrar_key=registrar_key,
        )
    finally:
        os.environ.update(hidden)
    clock = clock or Clock(START)
    app = create_app(settings, clock=clock)
    clock.now = max(clock.now, NOW)
    seed = read_seed_file(registrar_key_path(settings), "registrar key")
    registrar = (
        None if registrar_key is not None or seed is None else (signing_key_from_seed(seed.hex()))
    )
    return Api(app, TestClient(app), settings, clock, folder, registrar)


@pytest.fixture(autouse=True)
def _no_goldtrail_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings are given explicitly: no ``GOLDTRAIL_*`` variable may leak into them."""
    for name in list(os.environ):
        if name.startswith("GOLDTRAIL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """``make_api(url=None, **open_api options)``: apps closed at the end of the test.

    Without ``url`` the app gets a new SQLite database in its own folder.
    """
    opened: list[Api] = []

    def make(url: str | None = None, *, folder: Path | None = None, **options: Any) -> Api:
        folder = folder or tmp_path / f"app{len(opened)}"
        folder.mkdir(parents=True, exist_ok=True)
        api = open_api(url or f"sqlite:///{folder}/ledger.db", folder, **options)
        opened.append(api)
        return api

    yield make
    for api in opened:
        api.close()


@pytest.fixture
def api(database_url: str, make_api: Callable[..., Api]) -> Api:
    """An app over a fresh database (SQLite and PostgreSQL), seq 0 generated."""
    return make_api(database_url)


@pytest.fixture
def sqlite_api(make_api: Callable[..., Api]) -> Api:
    """An app over a fresh SQLite database, seq 0 generated."""
    return make_api()


# ---------------------------------------------------------------------------
# A World over HTTP


class HttpWorld(factories.World):  # type: ignore[misc]
    """The factories' ``World`` around the log of an ``Api``: every append is a POST.

    The in-memory ledger mirrors the server's log (it starts from the server's seq 0, signed
    by the generated registrar key) so the builders can fill ``prev``, offers and flags.
    ``batching()`` collects appends and sends them as one ``POST /v1/events/batch``.
    """

    def __init__(self, api: Api) -> None:
        assert api.registrar is not None, "HttpWorld needs the generated registrar"
        super().__init__(origin=api.settings.origin, registrar=None)
        self.api = api
        self.registrar_key = api.registrar
        self.keys["registrar"] = api.registrar
        self.ledger = MemoryLedger(api.settings.origin, public_key_hex(api.registrar))
        entries = api.client.get("/v1/log/entries").json()["items"]
        for entry in entries:
            self.ledger.append(entry["envelope"])
        self.at(entries[-1]["envelope"]["body"]["time"])
        self._pending: list[dict[str, Any]] | None = None
        self.receipts: list[dict[str, Any]] = []

    def append(self, ev: Any, *, now: dt.datetime | None = None) -> Any:
        env = _plain(ev)
        admitted = self.ledger.append(env)
        if self._pending is not None:
            self._pending.append(env)
        else:
            response = self.api.post(env)
            assert response.status_code == 201, response.text
            self.receipts.append(response.json())
        return admitted

    @contextlib.contextmanager
    def batching(self) -> Iterator[None]:
        """Send the appends made inside the block as one batch (201 expected)."""
        self._pending = []
        try:
            yield
            pending = self._pending
        finally:
            self._pending = None
        if pending:
            response = self.api.batch(pending)
            assert response.status_code == 201, response.text
            self.receipts.extend(response.json()["receipts"])

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[dict[str, Any]]]:
        """Admit the appends made inside the block into the mirror only, and give them back
        (for the test to send as it likes: the server has not seen them)."""
        self._pending = collected = []
        try:
            yield collected
        finally:
            self._pending = None

    def standard(self) -> HttpWorld:  # type: ignore[override]
        """The usual cast of ``World.standard()`` (the registrar is the generated one)."""
        with self.batching():
            self.register_actor("auditor", ["auditor"], country="UG")
            self.register_actor("coop", ["cooperative"], lot_prefix="COOP-")
            self.register_actor("coop2", ["cooperative", "processor"], lot_prefix="CPB-")
            self.register_actor("processor", ["processor"], lot_prefix="PRC-")
            self.register_actor("trader", ["trader"], lot_prefix="TRD-")
            self.register_actor("trader2", ["trader"], lot_prefix="TRB-")
            self.register_actor("exporter", ["exporter", "trader"], country="UG", lot_prefix="EXP-")
            self.register_actor("refiner", ["refiner"], country="CH", lot_prefix="REF-")
            self.register_actor("assayer", ["assayer"], country="UG")
            self.register_site("site-a", "coop")
            self.assess_site("site-a", "green")
            self.register_site("site-b", "coop2")
            self.assess_site("site-b", "green")
        return self


# ---------------------------------------------------------------------------
# Refusals


def check_problem(
    response: httpx.Response, status: int, code: str, index: Any = NO_INDEX
) -> dict[str, Any]:
    """Assert an RFC 9457 problem of this status and code (and batch index, or none)."""
    assert response.status_code == status, (status, code, response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert set(problem) >= PROBLEM_KEYS, problem
    assert problem["status"] == status
    assert problem["code"] == code, problem
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and len(problem["detail"]) > 10
    assert problem["type"].endswith(code)
    if index is NO_INDEX:
        assert "index" not in problem, problem
    else:
        assert problem.get("index") == index, problem
    return problem


def refusal(
    api: Api,
    send: Callable[[], httpx.Response],
    status: int,
    code: str,
    index: Any = NO_INDEX,
) -> dict[str, Any]:
    """Send a request that must be refused; check the problem and that the log is unchanged."""
    before = api.log()
    problem = check_problem(send(), status, code, index)
    after = api.log()
    assert (after["size"], after["root"]) == (before["size"], before["root"]), (
        "a refused request changed the log"
    )
    return problem
