"""Fixtures for the client tests.

- every test runs with ``HOME`` in a temporary folder and no ``GOLDTRAIL_*`` variables, so
  nothing touches the real ``~/.goldtrail``;
- ``fake``: a goldtrail API served through ``httpx.MockTransport`` by the real rules engine
  (``ledger.replay.MemoryLedger``), with switches to drop the connection;
- ``world``: a fake log with a registrar, a cooperative (with a site) and a trader, and
  key files for the cooperative and the trader (fast KDF limits);
- ``cli``: run ``goldtrail`` in-process through ``clients.cli.main``, like a user would.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import nacl.signing
import pytest
from typer.testing import CliRunner

from clients.cli import Hooks, main
from clients.keys import MIN_LIMITS, write_key_file
from ledger.errors import LedgerError
from ledger.merkle import leaf_hash
from ledger.protocol import event_id, parse_strict, public_key_hex, sign_body
from ledger.replay import MemoryLedger
from ledger.views import actor_view, lot_view

ORIGIN = "test.goldtrail.example/log"
PASSPHRASE = "correct horse battery staple"

STATUS = {
    "malformed": 400,
    "signature": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "schema": 422,
    "rule": 422,
}


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(__import__("os").environ):
        if name.startswith("GOLDTRAIL_"):
            monkeypatch.delenv(name)
    return home


def now_z(offset_seconds: int = 0) -> str:
    """Now (UTC, whole seconds, Z), shifted."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def problem(status: int, code: str, detail: str, index: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "type": f"urn:goldtrail:problem:{code}",
        "title": "refused",
        "status": status,
        "detail": detail,
        "code": code,
    }
    if index is not None:
        body["index"] = index
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@dataclass
class FakeServer:
    """An in-memory goldtrail API over the real rules engine, for httpx.MockTransport."""

    origin: str = ORIGIN
    ledger: MemoryLedger = field(init=False)
    log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    #: raise ConnectError for every request while True
    down: bool = False
    #: after this many more successful batch posts, apply the next batch then drop the answer
    drop_answer_after: int | None = None
    #: after this many more batch posts, refuse to connect
    down_after_batches: int | None = None
    batch_posts: int = 0
    #: refuse batches holding more events than this with 413 (no index)
    max_batch: int | None = None

    def __post_init__(self) -> None:
        self.ledger = MemoryLedger(self.origin, None)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- direct use

    def append(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Append one envelope directly (test setup); returns its receipt."""
        return self._admit([envelope])[0]

    def _admit(self, envelopes: list[Any]) -> list[dict[str, Any]]:
        results = self.ledger.append_batch(envelopes, now=dt.datetime.now(dt.UTC))
        receipts = []
        for result in results:
            if result.existing is not None:
                seq = result.existing.seq
            else:
                seq = len(self.log)
                self.log.append(
                    {
                        "seq": seq,
                        "event_id": result.event_id,
                        "envelope": result.envelope,
                        "leaf_hash": leaf_hash(result.leaf_data).hex(),
                    }
                )
            receipts.append(
                {
                    "event_id": result.event_id,
                    "seq": seq,
                    "leaf_hash": self.log[seq]["leaf_hash"],
                    "checkpoint": f"{self.origin}\n{len(self.log)}\nfake\n",
                }
            )
        return receipts

    def event_ids(self) -> list[str]:
        return [e["event_id"] for e in self.log]

    # -- HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        try:
            if request.method == "POST" and path == "/v1/events":
                return self._post_one(request)
            if request.method == "POST" and path == "/v1/events/batch":
                return self._post_batch(request)
            if path == "/v1/log":
                seq0 = self.log[0]["envelope"]["signature"]["key"] if self.log else None
                return httpx.Response(
                    200,
                    json={
                        "origin": self.origin,
                        "verifier_key": f"{self.origin}+00000000+AAAA",
                        "registrar_key": seq0,
                        "size": len(self.log),
                        "root": "00" * 32,
                    },
                )
            match = re.fullmatch(r"/v1/lots/([^/]+)", path)
            if match:
                lot = self.ledger.state.lots.get(unquote(match.group(1)))
                if lot is None:
                    return problem(404, "unknown_lot", "There is no such lot.")
                return httpx.Response(200, json=lot_view(self.ledger.state, lot))
            match = re.fullmatch(r"/v1/lots/([^/]+)/events", path)
            if match:
                lot_id = unquote(match.group(1))
                items = [e for e in self.log if lot_id in _lots(e["envelope"]["body"])]
                return httpx.Response(200, json={"items": items, "next": None})
            match = re.fullmatch(r"/v1/actors/([^/]+)", path)
            if match:
                actor = self.ledger.state.actors.get(unquote(match.group(1)))
                if actor is None:
                    return problem(404, "unknown_actor", "There is no such actor.")
                return httpx.Response(200, json=actor_view(actor))
            if path == "/v1/actors":
                items = [actor_view(a) for a in self.ledger.state.actors.values()]
                return httpx.Response(200, json={"items": items, "next": None})
        except LedgerError as e:
            return problem(STATUS.get(e.fault, 500), e.code, e.detail, e.index)
        return problem(404, "not_found", f"There is nothing at {path}.")

    def _post_one(self, request: httpx.Request) -> httpx.Response:
        envelope = parse_strict(request.content)
        before = len(self.log)
        receipt = self._admit([envelope])[0]
        return httpx.Response(201 if len(self.log) > before else 200, json=receipt)

    def _post_batch(self, request: httpx.Request) -> httpx.Response:
        if self.down_after_batches is not None:
            if self.down_after_batches <= 0:
                raise httpx.ConnectError("connection refused", request=request)
            self.down_after_batches -= 1
        self.batch_posts += 1
        data = parse_strict(request.content)
        events = data["events"]
        if self.max_batch is not None and len(events) > self.max_batch:
            return problem(413, "too_large", f"Send at most {self.max_batch} events.")
        if not events:
            return problem(422, "schema", "The batch is empty: send at least one event.")
        before = len(self.log)
        receipts = self._admit(events)
        if self.drop_answer_after is not None:
            if self.drop_answer_after <= 0:
                self.drop_answer_after = None
                raise httpx.ReadTimeout("the answer was lost", request=request)
            self.drop_answer_after -= 1
        return httpx.Response(
            201 if len(self.log) > before else 200,
            json={"receipts": receipts, "checkpoint": receipts[-1]["checkpoint"]},
        )


def _lots(body: dict[str, Any]) -> list[str]:
    lots = [body["lot"]] if "lot" in body else []
    return lots + [i["lot"] for i in body.get("inputs", []) + body.get("outputs", [])]


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


# ---------------------------------------------------------------------------
# A small world: registrar, cooperative with a site, trader


@dataclass
class World:
    fake: FakeServer
    registrar: nacl.signing.SigningKey
    coop_key: Path
    trader_key: Path
    coop_signing: nacl.signing.SigningKey
    trader_signing: nacl.signing.SigningKey
    outbox: Path
    site: str = "site-makala"
    coop: str = "coop-mambasa"
    trader: str = "trader-bunia"

    def registrar_event(self, body: dict[str, Any]) -> dict[str, Any]:
        full = {"v": 1, "actor": "registrar-test", "time": now_z(-3600), **body}
        return self.fake.append(sign_body(full, self.registrar, self.fake.origin))

    def lot_body(self, lot: str, **extra: Any) -> dict[str, Any]:
        body = {
            "v": 1,
            "type": "lot.registered",
            "actor": self.coop,
            "time": now_z(-60),
            "lot": lot,
            "site": self.site,
            "mass_mg": 38250,
            "form": "gold",
            "fineness_ppm": 870000,
            "extracted": {"from": now_z(-86400 * 5)[:10], "to": now_z(-86400)[:10]},
            "producers": {"women": 6, "men": 3},
            "recovery": "gravity",
            "declarations": {
                "child_labour": "none",
                "forced_labour": False,
                "armed_groups": "none",
                "security_forces": "none",
            },
        }
        body.update(extra)
        return body


def register_lot_args(lot: str, site: str = "site-makala") -> list[str]:
    """The options of ``goldtrail lot register`` for a plausible lot."""
    return [
        "lot",
        "register",
        "--lot",
        lot,
        "--site",
        site,
        "--mass-mg",
        "38250",
        "--form",
        "gold",
        "--fineness-ppm",
        "870000",
        "--extracted",
        f"{now_z(-86400 * 5)[:10]}:{now_z(-86400)[:10]}",
        "--women",
        "6",
        "--men",
        "3",
        "--recovery",
        "gravity",
        "--child-labour",
        "none",
        "--forced-labour",
        "no",
        "--armed-groups",
        "none",
        "--security-forces",
        "none",
        "--payment",
        "CDF:198000000:132000000",
    ]


def make_world(fake: FakeServer, tmp_path: Path) -> World:
    registrar = nacl.signing.SigningKey.generate()
    coop = nacl.signing.SigningKey.generate()
    trader = nacl.signing.SigningKey.generate()
    coop_key = tmp_path / "coop.key.json"
    trader_key = tmp_path / "trader.key.json"
    write_key_file(coop_key, "coop-mambasa", coop, PASSPHRASE, limits=MIN_LIMITS)
    write_key_file(trader_key, "trader-bunia", trader, PASSPHRASE, limits=MIN_LIMITS)
    world = World(fake, registrar, coop_key, trader_key, coop, trader, tmp_path / "outbox.db")
    world.registrar_event(
        {
            "type": "actor.registered",
            "subject": "registrar-test",
            "name": "Test Registry",
            "roles": ["registrar", "auditor"],
            "key": public_key_hex(registrar),
            "country": "CD",
        }
    )
    world.registrar_event(
        {
            "type": "actor.registered",
            "subject": "coop-mambasa",
            "name": "Coop Mambasa (test)",
            "roles": ["cooperative"],
            "key": public_key_hex(coop),
            "country": "CD",
            "lot_prefix": "MAK-",
        }
    )
    world.registrar_event(
        {
            "type": "actor.registered",
            "subject": "trader-bunia",
            "name": "Bunia Traders (test)",
            "roles": ["trader"],
            "key": public_key_hex(trader),
            "country": "CD",
            "lot_prefix": "BUN-",
        }
    )
    world.registrar_event(
        {
            "type": "site.registered",
            "site": "site-makala",
            "name": "Makala (test)",
            "operator": "coop-mambasa",
            "country": "CD",
            "region": "Ituri",
            "location": {"lat": "1.36110", "lon": "29.04020"},
        }
    )
    return world


@pytest.fixture
def world(fake: FakeServer, tmp_path: Path) -> World:
    return make_world(fake, tmp_path)


# ---------------------------------------------------------------------------
# Running the CLI in-process


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_main(
    args: list[str],
    *,
    transport: httpx.BaseTransport | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    hooks: Hooks | None = None,
) -> Run:
    """Run ``goldtrail ARGS`` in-process; returns the exit code and both streams."""
    runner = CliRunner()
    hooks = hooks or Hooks(transport=transport, kdf_limits=MIN_LIMITS)
    base_env = {"GOLDTRAIL_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}
    with runner.isolation(input=input, env={**base_env, **(env or {})}) as (out, err, _):
        try:
            main(args, hooks)
            code = 0
        except SystemExit as e:
            code = int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        stdout = out.getvalue().decode()
        stderr = err.getvalue().decode()
    return Run(code, stdout, stderr)


@pytest.fixture
def cli(world: World) -> Callable[..., Run]:
    """``cli(args, key="coop"|"trader", offline=False)``: goldtrail against the fake server."""

    def run(args: list[str], key: str = "coop", offline: bool = False, **kwargs: Any) -> Run:
        key_path = world.coop_key if key == "coop" else world.trader_key
        front = [
            "--server",
            "http://fake.test",
            "--key",
            str(key_path),
            "--outbox",
            str(world.outbox),
        ]
        if offline:
            front.append("--offline")
        return run_main(front + args, transport=world.fake.transport, **kwargs)

    return run


@pytest.fixture
def lot_args() -> Callable[..., list[str]]:
    """``lot_args(lot, site=...)``: the options of ``goldtrail lot register``."""
    return register_lot_args


@pytest.fixture
def runner() -> Callable[..., Run]:
    """``runner(args, transport=..., env=..., input=...)``: goldtrail in-process."""
    return run_main


@pytest.fixture
def clock() -> Callable[[int], str]:
    """``clock(offset_seconds)``: now as the protocol writes times."""
    return now_z


@pytest.fixture
def world_factory(tmp_path: Path) -> Callable[[FakeServer], World]:
    """Build another world on a fake server (in its own folder)."""
    count = iter(range(1000))

    def build(server: FakeServer) -> World:
        folder = tmp_path / f"world{next(count)}"
        folder.mkdir()
        return make_world(server, folder)

    return build


def event_id_of(envelope: dict[str, Any]) -> str:
    """The event id of an envelope."""
    return event_id(envelope["body"])


# ---------------------------------------------------------------------------
# A server over the real SQL store (ledger.store), still without HTTP: checkpoints, proofs
# and bundles are the real ones.


@dataclass
class StoreServer:
    """``ledger.store.Ledger`` behind httpx.MockTransport (the routes the CLI uses)."""

    ledger: Any
    down: bool = False

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        params = request.url.params
        try:
            return self._route(request, path, params)
        except LedgerError as e:
            return problem(STATUS.get(e.fault, 500), e.code, e.detail, e.index)

    def _route(self, request: httpx.Request, path: str, params: Any) -> httpx.Response:
        ledger = self.ledger
        if request.method == "POST" and path == "/v1/events":
            result = ledger.append([parse_strict(request.content)], batch=False)
            return httpx.Response(201 if result.created else 200, json=result.receipts[0])
        if request.method == "POST" and path == "/v1/events/batch":
            result = ledger.append(parse_strict(request.content)["events"])
            return httpx.Response(
                201 if result.created else 200,
                json={"receipts": result.receipts, "checkpoint": result.checkpoint},
            )
        if path == "/v1/log":
            return httpx.Response(200, json=ledger.log_info())
        if path == "/v1/actors":
            items, nxt = ledger.actors(params.get("cursor"), None)
            return httpx.Response(200, json={"items": [actor_view(a) for a in items], "next": nxt})
        match = re.fullmatch(r"/v1/actors/([^/]+)", path)
        if match:
            actor = ledger.actor(unquote(match.group(1)))
            if actor is None:
                return problem(404, "unknown_actor", "There is no such actor.")
            return httpx.Response(200, json=actor_view(actor))
        match = re.fullmatch(r"/v1/lots/([^/]+)(/events|/bundle)?", path)
        if match:
            lot_id = unquote(match.group(1))
            if match.group(2) == "/events":
                items, nxt = ledger.lot_events(lot_id, params.get("cursor"), None)
                return httpx.Response(200, json={"items": items, "next": nxt})
            if match.group(2) == "/bundle":
                bundle = ledger.bundle(lot_id, params.get("at"))
                if bundle is None:
                    return problem(404, "unknown_lot", "There is no such lot.")
                return httpx.Response(
                    200,
                    content=json.dumps(bundle).encode(),
                    headers={"content-type": "application/json"},
                )
            with ledger.reader() as state:
                lot = state.lot(lot_id)
                if lot is None:
                    return problem(404, "unknown_lot", "There is no such lot.")
                return httpx.Response(200, json=lot_view(state, lot))
        return problem(404, "not_found", f"There is nothing at {path}.")


@pytest.fixture
def store_server_factory(database_url: str, tmp_path: Path) -> Any:
    """``make(registrar_key_hex)``: a StoreServer on a fresh database (SQLite, PostgreSQL)."""
    from ledger.store import open_ledger

    opened: list[Any] = []

    def make(registrar_key: str | None) -> StoreServer:
        ledger = open_ledger(
            database_url,
            origin=ORIGIN,
            registrar_key=registrar_key,
            log_key_file=tmp_path / f"log{len(opened)}.key",
        )
        opened.append(ledger)
        return StoreServer(ledger)

    yield make
    for ledger in opened:
        ledger.engine.dispose()


# ---------------------------------------------------------------------------
# The scenario, one CLI command per event

SCENARIO_COMMAND = {
    "actor.registered": ["actor", "register"],
    "site.registered": ["site", "register"],
    "site.assessed": ["site", "assess"],
    "lot.registered": ["lot", "register"],
    "lot.transfer_offered": ["lot", "offer"],
    "lot.transfer_accepted": ["lot", "accept"],
    "lot.processed": ["lot", "process"],
    "lot.assayed": ["lot", "assay"],
    "lot.exported": ["lot", "export"],
}


def scenario_cli_commands(folder: Path) -> tuple[dict[str, Path], list[tuple[Path, list[str]]]]:
    """Key files for every scenario actor, and the CLI command of every scenario event."""
    import copy

    from clients.keys import create_key_file, read_public
    from clients.scenario import load_scenario

    events = load_scenario()["events"]
    actors = sorted({e["subject"] for e in events if e["type"] == "actor.registered"})
    keys: dict[str, Path] = {}
    for actor in actors:
        keys[actor] = folder / "keys" / f"{actor}.json"
        create_key_file(keys[actor], actor, PASSPHRASE, limits=MIN_LIMITS)
    commands: list[tuple[Path, list[str]]] = []
    for n, event in enumerate(events):
        body = copy.deepcopy(event)
        actor = body.pop("actor")
        kind = body["type"]
        if kind == "lot.flag_resolved":
            code = re.fullmatch(r"<id of ([a-z_]+)>", body["flag"])
            assert code is not None
            commands.append(
                (
                    keys[actor],
                    [
                        "lot",
                        "resolve",
                        "--lot",
                        body["lot"],
                        "--code",
                        code.group(1),
                        "--outcome",
                        body["outcome"],
                        "--resolution",
                        body["resolution"],
                        "--time",
                        body["time"],
                    ],
                )
            )
            continue
        extra: list[str] = []
        if kind == "actor.registered":
            del body["key"]
            if body["subject"] != actor:
                extra = ["--public-key", read_public(keys[body["subject"]])[1]]
        path = folder / f"body-{n:02d}.json"
        path.write_text(json.dumps(body, ensure_ascii=False))
        commands.append((keys[actor], [*SCENARIO_COMMAND[kind], "--json-body", str(path), *extra]))
    return keys, commands


@pytest.fixture
def scenario_commands() -> Callable[[Path], Any]:
    """``scenario_commands(folder)``: key files and one CLI command per scenario event."""
    return scenario_cli_commands
