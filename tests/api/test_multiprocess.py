"""Several ``goldtrail serve`` processes writing to one database at once, on SQLite and
PostgreSQL, as a deployment with more than one server process (or container) would.

Three real servers (subprocesses running this tree's code) share one database, one log key
file and one registrar key. Clients register actors, sites and lots through different
servers, then, in rounds, race conflicting moves through different servers at the same
moment (single posts and batches):

- two offers of the same lot;
- an acceptance racing a cancellation of the same offer;
- a key rotation racing events signed with the old key;
- a revocation racing events by the revoked actor and an offer to it;
- a merge racing an offer of one of its inputs;
- one envelope (and one batch) posted through several servers at once, and every accepted
  envelope posted again through another server (idempotency: 200, the same receipt).

Then: every 200/201 receipt's event is in the log exactly once at its seq, and nothing else
is; seqs are dense; the log replays without a refusal (so no event signed with a key that was
not valid at its seq is in it); every refusal is what a sequential order of the accepted
events gives at some point of its phase (same code, same batch index); in each race exactly
one side wins (or, for a rotation or a revocation, an event signed with the old key or by the
revoked actor is in the log only before it); every checkpoint a server returned opens with the
log's key and commits to a prefix of the final tree; all servers agree on the head; the audit
is green; no server logged an error.

``ROUNDS`` race rounds (more with GOLDTRAIL_LONG=1); GOLDTRAIL_MP_SEED replays a run's choices
of servers and of single posts or batches (the interleavings are the machine's).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from ledger import merkle
from ledger.admin import rebuild_projections
from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError
from ledger.protocol import event_id, public_key_hex
from ledger.replay import MemoryLedger
from ledger.rules import admit_all
from ledger.state import StagedState
from ledger.store import make_engine
from tests import factories

REPO = Path(__file__).resolve().parents[2]
LONG = os.environ.get("GOLDTRAIL_LONG") == "1"
ROUNDS = int(os.environ.get("GOLDTRAIL_MP_ROUNDS") or (200 if LONG else 40))
#: the projections are rebuilt (``goldtrail admin rebuild-projections``) during every
#: REBUILD_EVERY-th round's races
REBUILD_EVERY = 5
SERVERS = 3
#: event times: a month before the tests' usual start, far in the past of any clock
START = factories.T0 - dt.timedelta(days=30)

#: what a refusal may be, per race (the oracle decides the exact code)
CONFLICT = 409


# ---------------------------------------------------------------------------
# Servers


class Serve:
    """``goldtrail serve`` in a subprocess that imports this tree's code (not whatever the
    virtualenv's editable install points at)."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        from tests.ops.conftest import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log_path = workdir / f"{name}.log"
        path = os.environ.get("PYTHONPATH", "")
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), path) if p),
            "GOLDTRAIL_PUBLIC_URL": self.base,
        }
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = "import sys; from clients.cli import main; sys.argv[0] = 'goldtrail'; main()"
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, "serve", *listen],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} was not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=15)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[tuple[list[Serve], factories.World]]:
    """Three servers over one fresh database, one log key file, one registrar key; and the
    World whose registrar key they pin."""
    world = factories.World(start=START)
    keys = tmp_path / "keys"
    keys.mkdir()
    key_file = keys / "log.key"
    key_file.write_text(os.urandom(32).hex() + "\n")
    key_file.chmod(0o600)
    env = {
        "GOLDTRAIL_DATABASE_URL": database_url,
        "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
        "GOLDTRAIL_ORIGIN": world.origin,
        "GOLDTRAIL_REGISTRAR_KEY": public_key_hex(world.registrar_key),
        "GOLDTRAIL_LOG_KEY_FILE": str(key_file),
    }
    made = [Serve(env, tmp_path, f"server-{n}") for n in range(SERVERS)]
    try:
        for server in made:  # started together: they migrate and bind the log at once
            server.start()
        for server in made:
            server.wait_ready()
        yield made, world
    finally:
        for server in made:
            server.stop()


# ---------------------------------------------------------------------------
# Clients and what they were told


@dataclass
class Outcome:
    """One request: what was sent where, and the answer."""

    server: int
    envelopes: list[dict[str, Any]]
    batch: bool
    status: int
    answer: dict[str, Any]
    phase: int

    @property
    def ids(self) -> list[str]:
        return [event_id(e["body"]) for e in self.envelopes]

    @property
    def receipts(self) -> list[dict[str, Any]]:
        if self.status not in (200, 201):
            return []
        return list(self.answer["receipts"]) if self.batch else [self.answer]

    @property
    def accepted(self) -> bool:
        return self.status in (200, 201)

    def receipt_of(self, ev: factories.Event) -> dict[str, Any] | None:
        for eid, receipt in zip(self.ids, self.receipts, strict=False):
            if eid == ev.id:
                return receipt
        return None


@dataclass
class Run:
    """The servers, the clients' record of every answer, and the phase boundaries."""

    servers: list[Serve]
    rng: random.Random
    outcomes: list[Outcome] = field(default_factory=list)
    #: the log's size when each phase began (phase n's window is [sizes[n], sizes[n + 1]])
    sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(32))

    def client(self, n: int) -> httpx.Client:
        clients: dict[int, httpx.Client] | None = getattr(self.local, "clients", None)
        if clients is None:
            clients = self.local.clients = {}
        if n not in clients:
            clients[n] = httpx.Client(base_url=self.servers[n].base, timeout=120)
        return clients[n]

    def post(self, server: int, envelopes: list[dict[str, Any]], batch: bool) -> Outcome:
        client = self.client(server)
        if batch:
            response = client.post("/v1/events/batch", json={"events": envelopes})
        else:
            assert len(envelopes) == 1
            response = client.post("/v1/events", json=envelopes[0])
        assert response.status_code in (200, 201, 401, 403, 404, 409, 422), (
            f"{self.servers[server].name} answered {response.status_code}: {response.text}"
        )
        outcome = Outcome(
            server, envelopes, batch, response.status_code, response.json(), len(self.sizes) - 1
        )
        with self.lock:
            self.outcomes.append(outcome)
        return outcome

    def log_size(self) -> int:
        response = self.client(0).get("/v1/log")
        assert response.status_code == 200, response.text
        return int(response.json()["size"])

    def phase(
        self,
        posts: list[tuple[int, list[dict[str, Any]], bool]],
        also: Callable[[], object] | None = None,
    ) -> list[Outcome]:
        """Post everything at once (released together by a barrier, with ``also`` if
        given); wait for every answer. Returns the outcomes in the order of ``posts``."""
        self.sizes.append(self.log_size())
        barrier = threading.Barrier(len(posts) + (also is not None))

        def one(item: tuple[int, list[dict[str, Any]], bool]) -> Outcome:
            barrier.wait(timeout=60)
            return self.post(*item)

        def other() -> None:
            barrier.wait(timeout=60)
            assert also is not None
            also()

        assert len(posts) < 32
        futures = [self.pool.submit(one, item) for item in posts]
        extra = self.pool.submit(other) if also is not None else None
        outcomes = [f.result(timeout=300) for f in futures]
        if extra is not None:
            extra.result(timeout=300)
        return outcomes

    def others(self, count: int) -> list[int]:
        """``count`` different servers, in a random order."""
        return self.rng.sample(range(len(self.servers)), count)


def entries(run: Run) -> list[dict[str, Any]]:
    """The whole log, from a random server."""
    client = run.client(run.rng.randrange(len(run.servers)))
    items: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = client.get("/v1/log/entries", params={"start": start, "limit": 1000})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        start = page.json()["next"]
    return items


# ---------------------------------------------------------------------------
# The oracle


def refusal_at(
    model: MemoryLedger, envelopes: list[dict[str, Any]], batch: bool
) -> tuple[str, int | None] | None:
    """What appending ``envelopes`` to ``model`` would give, without changing it: None if
    accepted, else the refusal's (code, index)."""
    staged = StagedState(model.state)
    try:
        admit_all(
            staged,
            copy.deepcopy(envelopes),
            origin=model.origin,
            registrar_key=model.registrar_key,
            now=None,
            batch=batch,
        )
    except LedgerError as e:
        return e.code, e.index
    return None


def check_refusals(run: Run, log: list[dict[str, Any]], registrar_key: str, origin: str) -> None:
    """Replay the log; every refusal must be what the log's prefix gives at some size
    within its phase's window (the same code and batch index)."""
    model = MemoryLedger(origin, registrar_key)
    sizes = [*run.sizes, len(log)]
    refused: dict[int, list[Outcome]] = {}
    for outcome in run.outcomes:
        if not outcome.accepted:
            refused.setdefault(outcome.phase, []).append(outcome)
    explained: set[int] = set()
    for seq in range(len(log) + 1):
        for phase, outcomes in refused.items():
            if not sizes[phase] <= seq <= sizes[phase + 1]:
                continue
            for outcome in outcomes:
                if id(outcome) in explained:
                    continue
                got = refusal_at(model, outcome.envelopes, outcome.batch)
                told = (outcome.answer["code"], outcome.answer.get("index"))
                if got == told:
                    explained.add(id(outcome))
        if seq < len(log):
            entry = log[seq]
            try:
                model.append(entry["envelope"])
            except LedgerError as e:  # pragma: no cover - the failure we look for
                pytest.fail(f"seq {seq} does not replay: {e!r} ({entry['envelope']['body']})")
    unexplained = [
        (o.phase, o.status, o.answer.get("code"), o.answer.get("index"), o.ids)
        for outcomes in refused.values()
        for o in outcomes
        if id(o) not in explained
    ]
    assert not unexplained, (
        f"refusals no sequential order of the log gives within their phase: {unexplained}"
    )


# ---------------------------------------------------------------------------
# The scenario


class Scenario:
    """Builds the events with a World kept in step with the log, and checks each race."""

    def __init__(self, run: Run, world: factories.World, database_url: str) -> None:
        self.run = run
        self.database_url = database_url
        #: the log sizes ``ledger.admin.rebuild_projections`` replayed
        self.rebuilt: list[int] = []
        self.w = world
        self.synced = 0
        #: the rotated actor's keys, oldest first, and where each rotation landed
        self.rot_keys: list[nacl.signing.SigningKey] = []
        #: (race, side, status) -> how often (printed: which interleavings the run saw)
        self.tally: Counter[tuple[str, int, int]] = Counter()

    def sync(self) -> list[dict[str, Any]]:
        """Bring the World's ledger up to the log (its own order may differ for independent
        events: those already in it are re-posts to it)."""
        log = entries(self.run)
        for entry in log[self.synced :]:
            self.w.ledger.append(entry["envelope"])
        self.synced = len(log)
        return log

    def pick(self) -> bool:
        return self.run.rng.random() < 0.5

    def spread(
        self, groups: list[list[dict[str, Any]]], chained: bool
    ) -> list[tuple[int, Any, bool]]:
        """Independent groups of events through servers in turn, each as one batch or (if
        its events do not build on one another) as single posts."""
        posts: list[tuple[int, Any, bool]] = []
        at = self.run.rng.randrange(SERVERS)
        for group in groups:
            if len(group) > 1 and (chained or self.pick()):
                posts.append((at % SERVERS, group, True))
                at += 1
            else:
                for env in group:
                    posts.append((at % SERVERS, [env], False))
                    at += 1
        return posts

    def independent(self, groups: list[list[dict[str, Any]]], chained: bool = False) -> None:
        outcomes = self.run.phase(self.spread(groups, chained))
        for outcome in outcomes:
            assert outcome.status == 201, (outcome.status, outcome.answer)
        self.sync()

    # -- the cast ----------------------------------------------------------------------

    def setup(self) -> None:
        w = self.w
        seq0 = factories.Event(w.envelopes()[0])
        outcome = self.run.phase([(0, [seq0.envelope], False)])[0]
        assert outcome.status == 201, outcome.answer
        self.synced = 1
        cast = [
            w.register_actor("auditor", ["auditor"]).envelope,
            w.register_actor("coop", ["cooperative"], lot_prefix="COOP-").envelope,
            w.register_actor("coop2", ["cooperative", "processor"], lot_prefix="CPB-").envelope,
            w.register_actor("rot", ["cooperative"], lot_prefix="ROT-").envelope,
            w.register_actor("trader", ["trader"], lot_prefix="TRD-").envelope,
            w.register_actor("trader2", ["trader"], lot_prefix="TRB-").envelope,
        ]
        self.independent([[e] for e in cast])
        self.rot_keys.append(w.keys["rot"])
        sites = [
            [w.register_site(s, op).envelope, w.assess_site(s, "green").envelope]
            for s, op in (("site-a", "coop"), ("site-b", "coop2"), ("site-r", "rot"))
        ]
        self.independent(sites, chained=True)

    # -- one round ---------------------------------------------------------------------

    def round(self, r: int) -> None:
        w, run = self.w, self.run
        # phase A: a fresh actor with its own site, lots through every server
        rv = f"rv{r}"
        fresh = [
            w.register_actor(rv, ["cooperative"], lot_prefix=f"RV{r}-").envelope,
            w.register_site(f"site-rv{r}", rv).envelope,
            w.assess_site(f"site-rv{r}", "green").envelope,
        ]
        lots_a = [w.register_lot(site="site-a") for _ in range(4)]
        lots_b = [w.register_lot(site="site-b") for _ in range(3)]
        lots = [[e.envelope for e in lots_a[:2]], [lots_a[2].envelope], [lots_a[3].envelope]]
        self.independent([fresh], chained=True)
        self.independent([*lots, [e.envelope for e in lots_b]])
        l1, l2, l3, l4 = (e.body["lot"] for e in lots_a)
        m1, m2, t1 = (e.body["lot"] for e in lots_b)
        # phase B: an offer to answer, and a lot for the rotated actor
        offer = w.offer(l1, "trader")
        self.independent([[offer.envelope], [w.offer(t1, "trader2").envelope]])

        # phase C: the races, all at once
        races: list[tuple[str, list[tuple[int, list[factories.Event], bool]]]] = []

        def race(name: str, *sides: list[factories.Event]) -> None:
            servers = self.run.others(len(sides)) if len(sides) <= SERVERS else None
            posts = []
            for n, side in enumerate(sides):
                server = servers[n] if servers else n % SERVERS
                posts.append((server, side, len(side) > 1 or self.pick()))
            races.append((name, posts))

        # two offers of one lot
        race(
            "offers",
            [w.offer(l2, "trader", post=False)],
            [w.offer(l2, "trader2", post=False)],
        )
        # an acceptance racing a cancellation
        race("accept/cancel", [w.accept(l1, post=False)], [w.cancel(l1, post=False)])
        # a merge racing an offer of one of its inputs
        race(
            "merge/offer",
            [w.merge([m1, m2], post=False)],
            [w.offer(m1, "trader", post=False)],
        )
        # a rotation racing events signed with the old key
        new_key = nacl.signing.SigningKey.generate()
        rotation = w.rotate_key("rot", new_key=new_key, post=False, signer=self.rot_signer(r))
        old_single = w.register_lot(site="site-r", post=False)
        old_batch = [w.register_lot(site="site-r", post=False) for _ in range(2)]
        race("rotation", [rotation], [old_single], old_batch)
        # a revocation racing events by the revoked actor and an offer to it
        revocation = w.revoke(rv, post=False)
        by_rv = w.register_lot(site=f"site-rv{r}", post=False)
        by_rv_batch = [w.register_lot(site=f"site-rv{r}", post=False) for _ in range(2)]
        to_rv = w.offer(l3, rv, post=False)
        race("revocation", [revocation], [by_rv], by_rv_batch, [to_rv])
        # one envelope through every server at once, one batch through two
        twice = w.register_lot(site="site-a", post=False)
        pair = [w.register_lot(site="site-b", post=False) for _ in range(2)]
        race("same envelope", [twice], [twice], [twice])
        race("same batch", pair, pair)
        # and an independent lot moving on meanwhile
        race("independent", [w.offer(l4, "trader2", post=False)])

        flat = [(name, post) for name, posts in races for post in posts]
        # every few rounds an operator rebuilds the projections meanwhile, from yet another
        # process (it moves their mark: no server may reuse rows it read before)
        also = self.rebuild if r % REBUILD_EVERY == REBUILD_EVERY - 1 else None
        outcomes = run.phase([(s, [e.envelope for e in side], b) for _, (s, side, b) in flat], also)
        by_race: dict[str, list[Outcome]] = {}
        for (name, _), outcome in zip(flat, outcomes, strict=True):
            by_race.setdefault(name, []).append(outcome)
            self.tally[(name, len(by_race[name]) - 1, outcome.status)] += 1
        log = self.sync()
        seq_of = {entry["event_id"]: entry["seq"] for entry in log}

        def one_winner(name: str) -> None:
            statuses = sorted(o.status for o in by_race[name])
            assert statuses == [201, CONFLICT], (name, [o.answer for o in by_race[name]])

        one_winner("offers")
        one_winner("accept/cancel")
        one_winner("merge/offer")
        # rotation: always taken; an old-key event is in the log only before it
        rot_out, *old_outs = by_race["rotation"]
        assert rot_out.status == 201, rot_out.answer
        for outcome in old_outs:
            after = [eid for eid in outcome.ids if seq_of.get(eid, -1) > seq_of[rotation.id]]
            assert not after, f"signed with a rotated key, yet at a later seq: {after}"
            if not outcome.accepted:
                assert outcome.status == 401, outcome.answer
                assert not any(eid in seq_of for eid in outcome.ids)
        w.keys["rot"] = new_key
        self.rot_keys.append(new_key)
        # revocation: always taken; the revoked actor's events (and the offer to it) only before
        rev_out, *rv_outs = by_race["revocation"]
        assert rev_out.status == 201, rev_out.answer
        for outcome in rv_outs:
            for eid in outcome.ids:
                assert seq_of.get(eid, -1) < seq_of[revocation.id], "an event after revocation"
            if not outcome.accepted:
                assert outcome.status in (401, 403), outcome.answer
        # the same envelope: one 201, the others 200, one receipt
        same = by_race["same envelope"]
        assert sorted(o.status for o in same) == [200, 200, 201], [o.answer for o in same]
        assert all(o.receipts == same[0].receipts for o in same), [o.answer for o in same]
        batch_twice = by_race["same batch"]
        assert sorted(o.status for o in batch_twice) == [200, 201]
        assert batch_twice[0].receipts == batch_twice[1].receipts
        assert by_race["independent"][0].status == 201

        # phase D: every envelope accepted this round again, through another server
        accepted = [
            (o, env, receipt)
            for o in outcomes
            if o.accepted
            for env, receipt in zip(o.envelopes, o.receipts, strict=True)
        ]
        reposts = []
        for o, env, receipt in accepted:
            other = (o.server + 1 + run.rng.randrange(SERVERS - 1)) % SERVERS
            reposts.append((other, [env], False, receipt))
        run.rng.shuffle(reposts)
        reposts = reposts[:14]
        again = run.phase([(s, e, b) for s, e, b, _ in reposts])
        for (_, _, _, receipt), outcome in zip(reposts, again, strict=True):
            assert outcome.status == 200, outcome.answer
            assert outcome.answer == receipt
        self.sync()

    def rebuild(self) -> None:
        engine = make_engine(self.database_url)
        try:
            self.rebuilt.append(
                rebuild_projections(engine, self.w.origin, public_key_hex(self.w.registrar_key))
            )
        finally:
            engine.dispose()

    def rot_signer(self, r: int) -> str | None:
        """Rotations alternate between the actor itself and the registrar."""
        return None if r % 2 else self.w.registrar


# ---------------------------------------------------------------------------
# The test


def test_several_server_processes_write_one_log(
    servers: tuple[list[Serve], factories.World], database_url: str
) -> None:
    made, world = servers
    seed = int(os.environ.get("GOLDTRAIL_MP_SEED", random.randrange(2**32)))
    run = Run(made, random.Random(seed))
    scenario = Scenario(run, world, database_url)
    try:
        scenario.setup()
        for r in range(ROUNDS):
            scenario.round(r)
        log = entries(run)
        print(f"{len(log)} entries; projections rebuilt at sizes {scenario.rebuilt}")
        print("(race, side, status): count")
        for key, count in sorted(scenario.tally.items()):
            print(f"  {key}: {count}")
        check_log(run, log, world, database_url)
    except BaseException:
        print(f"GOLDTRAIL_MP_SEED={seed}")
        for server in made:
            print(f"--- {server.name}\n{server.log()[-4000:]}")
        raise
    finally:
        run.pool.shutdown(wait=False)
    for server in made:
        assert server.process is not None and server.process.poll() is None, server.log()
        lines = server.log().splitlines()
        errors = [line for line in lines if '"level":"error"' in line.replace(" ", "")]
        assert not errors, errors[:5]


def check_log(
    run: Run, log: list[dict[str, Any]], world: factories.World, database_url: str
) -> None:
    registrar_key = public_key_hex(world.registrar_key)
    # dense seqs, each event once
    assert [e["seq"] for e in log] == list(range(len(log)))
    ids = [e["event_id"] for e in log]
    assert len(set(ids)) == len(ids), "an event is in the log twice"
    seq_of = {eid: seq for seq, eid in enumerate(ids)}
    # every receipt's event at its seq; every logged event acknowledged; no refused batch
    # left anything behind
    acknowledged: set[str] = set()
    for outcome in run.outcomes:
        if outcome.accepted:
            for eid, receipt in zip(outcome.ids, outcome.receipts, strict=True):
                assert receipt["event_id"] == eid
                assert seq_of.get(eid) == receipt["seq"], (eid, receipt)
                assert log[receipt["seq"]]["leaf_hash"] == receipt["leaf_hash"]
                acknowledged.add(eid)
    assert set(ids) == acknowledged, "the log holds events no server acknowledged"
    refused_only = {
        eid for o in run.outcomes if not o.accepted for eid in o.ids if eid not in acknowledged
    }
    assert not refused_only & set(ids)
    # the log replays: every event was valid at its seq (keys included); refusals are
    # what a sequential order gives
    check_refusals(run, log, registrar_key, world.origin)
    replayed = MemoryLedger(world.origin, registrar_key)
    for entry in log:
        replayed.append(entry["envelope"])
    leaves = [merkle.leaf_hash(leaf) for leaf in replayed.leaves]
    assert [bytes.fromhex(e["leaf_hash"]) for e in log] == leaves
    # checkpoints: signed by the log key, each a prefix of the final tree
    head = [run.client(n).get("/v1/log").json() for n in range(SERVERS)]
    for h in head:  # each server names itself
        del h["public_url"]
    assert all(h == head[0] for h in head), json.dumps(head, indent=1)
    assert head[0]["size"] == len(log)
    vkey = head[0]["verifier_key"]
    notes: dict[str, int] = {}
    for outcome in run.outcomes:
        for receipt in outcome.receipts:
            notes.setdefault(receipt["checkpoint"], receipt["seq"])
            checkpoint = open_checkpoint(receipt["checkpoint"], vkey)
            assert receipt["seq"] < checkpoint.size, receipt
        if outcome.batch and outcome.accepted:
            notes.setdefault(outcome.answer["checkpoint"], 0)
    roots: dict[int, bytes] = {}
    for note in notes:
        checkpoint = open_checkpoint(note, vkey)
        assert checkpoint.size <= len(log)
        if checkpoint.size not in roots:
            roots[checkpoint.size] = merkle.root_from_leaves(leaves[: checkpoint.size])
        assert checkpoint.root == roots[checkpoint.size], f"checkpoint {checkpoint.size}"
    assert bytes.fromhex(head[0]["root"]) == merkle.root_from_leaves(leaves)
    # the rotated actor's old keys sign nothing after their rotation
    for seq, entry in enumerate(log):
        body = entry["envelope"]["body"]
        if body["type"] == "actor.key_rotated" and body["subject"] == "rot":
            retired = {
                e["envelope"]["body"]["key"]
                for e in log[:seq]
                if e["envelope"]["body"].get("subject") == "rot" and "key" in e["envelope"]["body"]
            }
            later = {
                e["envelope"]["signature"]["key"]
                for e in log[seq + 1 :]
                if e["envelope"]["body"]["actor"] == "rot"
            }
            assert not (later & retired), f"a key of rot retired at seq {seq} signed later"
    # the audit replays the database and compares every table
    engine = make_engine(database_url)
    try:
        report = audit(engine, origin=world.origin, verifier_key=vkey, registrar_key=registrar_key)
    finally:
        engine.dispose()
    assert report.ok, [(p.kind, p.seq, p.detail) for p in report.problems]
    assert report.size == len(log)
