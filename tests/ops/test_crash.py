"""Crash safety: a client streams 20-event batches to a real ``goldtrail serve`` while the
test kills the server with SIGKILL at random moments and starts it again. After every
restart: every acknowledged event is there, no batch is half-applied, seq has no gap and
the audit is green. On SQLite (WAL) and PostgreSQL.

5 kills by default, 20 with GOLDTRAIL_LONG=1; GOLDTRAIL_CRASH_SEED replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from ledger.audit import audit
from ledger.protocol import event_id, public_key_hex
from ledger.store import make_engine
from tests import factories
from tests.ops.conftest import Server

KILLS = 20 if os.environ.get("GOLDTRAIL_LONG") == "1" else 5
BATCH = 20
#: a kill lands this long (uniformly, in seconds) after the server is ready again
KILL_AFTER = (0.05, 0.7)
#: acknowledged events checked one by one with GET /v1/events/{id} after each restart
SPOT_CHECKS = 60


class Stream:
    """The client's side: lot registrations in batches of 20, and what was acknowledged."""

    def __init__(self) -> None:
        self.world = factories.World.standard()
        self.time = self.world.tick()  # every lot at the same time, after the cast
        self.acked: set[str] = set()
        self.batches: list[list[str]] = []  # event ids of every batch sent
        self.in_doubt: list[list[dict[str, Any]]] = []  # sent, never answered
        self.fresh: list[str] = []  # acknowledged since the last check

    @property
    def setup(self) -> list[dict[str, Any]]:
        envelopes: list[dict[str, Any]] = self.world.envelopes()
        return envelopes

    def next_batch(self) -> list[dict[str, Any]]:
        return [self.world.register_lot(post=False, time=self.time).envelope for _ in range(BATCH)]

    def send(self, client: httpx.Client, envelopes: list[dict[str, Any]]) -> bool:
        """Post a batch; True if acknowledged, False if the server died under it."""
        ids = [event_id(e["body"]) for e in envelopes]
        self.batches.append(ids)
        try:
            response = client.post("/v1/events/batch", json={"events": envelopes})
        except httpx.TransportError:
            self.in_doubt.append(envelopes)
            return False
        assert response.status_code in (200, 201), response.text
        assert [r["event_id"] for r in response.json()["receipts"]] == ids
        self.acked.update(ids)
        self.fresh.extend(ids)
        return True


def check_after_restart(
    stream: Stream, client: httpx.Client, engine: Engine, rng: random.Random, where: str
) -> int:
    """Every invariant; returns the log's size."""
    seqs: list[int] = []
    ids: list[str] = []
    start: int | None = 0
    while start is not None:
        page = client.get("/v1/log/entries", params={"start": start, "limit": 1000})
        assert page.status_code == 200, page.text
        body = page.json()
        seqs += [item["seq"] for item in body["items"]]
        ids += [item["event_id"] for item in body["items"]]
        start = body["next"]
    assert seqs == list(range(len(seqs))), f"{where}: seq has a gap"
    info = client.get("/v1/log").json()
    assert info["size"] == len(ids), where
    present = set(ids)
    assert len(present) == len(ids), f"{where}: an event is logged twice"

    lost = stream.acked - present
    assert not lost, f"{where}: {len(lost)} acknowledged events are missing"
    for batch in stream.batches:
        there = sum(1 for i in batch if i in present)
        assert there in (0, len(batch)), f"{where}: a batch is half-applied ({there}/{len(batch)})"

    older = sorted(stream.acked - set(stream.fresh))
    sample = stream.fresh[-SPOT_CHECKS:] + rng.sample(older, min(len(older), 20))
    for eid in sample:
        got = client.get(f"/v1/events/{eid}")
        assert got.status_code == 200, f"{where}: acknowledged event {eid} is missing"
        assert ids[got.json()["seq"]] == eid
    stream.fresh.clear()

    report = audit(
        engine,
        origin=info["origin"],
        verifier_key=info["verifier_key"],
        registrar_key=info["registrar_key"],
    )
    assert report.ok, f"{where}: {report.summary()}"
    return len(ids)


def test_acknowledged_events_survive_sigkill(
    database_url: str, server_factory: Callable[[dict[str, str]], Server], tmp_path: Path
) -> None:
    seed = int(os.environ.get("GOLDTRAIL_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    stream = Stream()
    server = server_factory(
        {
            "GOLDTRAIL_DATABASE_URL": database_url,
            "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
            "GOLDTRAIL_ORIGIN": stream.world.origin,
            "GOLDTRAIL_REGISTRAR_KEY": public_key_hex(stream.world.registrar_key),
            "GOLDTRAIL_LOG_KEY_FILE": str(tmp_path / "keys" / "log.key"),
            "GOLDTRAIL_PUBLIC_URL": "http://127.0.0.1:8000",
        }
    )
    engine = make_engine(database_url)
    sizes: list[int] = []
    try:
        server.start()
        with httpx.Client(base_url=server.base, timeout=30) as client:
            assert stream.send(client, stream.setup)
            for kill in range(KILLS):
                assert server.process is not None
                killer = threading.Timer(
                    rng.uniform(*KILL_AFTER), os.kill, (server.process.pid, signal.SIGKILL)
                )
                killer.start()
                while stream.send(client, stream.next_batch()):
                    pass
                killer.join()
                server.kill()  # reap it
                server.start()
                where = f"after kill {kill + 1} of {KILLS} (GOLDTRAIL_CRASH_SEED={seed})"
                sizes.append(check_after_restart(stream, client, engine, rng, where))
                # the client sends again what it never heard back about: all or nothing
                for envelopes in stream.in_doubt:
                    assert stream.send(client, envelopes), where
                stream.in_doubt.clear()
            sizes.append(
                check_after_restart(stream, client, engine, rng, f"at the end (seed {seed})")
            )
    finally:
        server.kill()
        engine.dispose()
    assert server.starts == KILLS + 1
    assert sizes[-1] == len(stream.acked) >= len(stream.setup) + KILLS * BATCH
