"""Conflicting writers through live HTTP servers, on SQLite and PostgreSQL.

Two apps (two engines, as two processes would have) serve one database, each through a
real uvicorn server on a free port in a thread. A dozen clients post at once, through
httpx, a dozen offers of one lot naming the same ``prev`` (to twelve different recipients):
the database's write lock serialises them, so exactly one is appended (201) and the eleven
others find the head moved: 409 ``stale_prev`` (section 6 puts ``stale_prev`` before
``offer_pending``). Independent events posted at once are all appended. Afterwards the log
is intact: seqs without gaps, every receipt's checkpoint includes its event, and
``ledger.audit.audit`` finds nothing wrong.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ledger import merkle
from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.protocol import canonical

from .conftest import Api, HttpWorld, check_problem

WRITERS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving an app in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class InFlight:
    """Wraps ``Runtime.append`` and ``Runtime.append_each`` (the group commit of single
    appends) of several apps to record how many run at the same time."""

    def __init__(self, apps: list[FastAPI]) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        for app in apps:
            runtime = app.state.runtime
            runtime.append = self._wrap(runtime.append)
            runtime.append_each = self._wrap(runtime.append_each)

    def _wrap(self, append: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                time.sleep(0.02)  # widen the window: the requests overlap for sure
                return append(*args, **kwargs)
            finally:
                with self.lock:
                    self.now -= 1

        return wrapped


@pytest.fixture
def two_servers(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> Iterator[tuple[Api, list[LiveServer], InFlight]]:
    first = make_api(database_url, folder=tmp_path / "keys")
    # a second app over the same database and log key, as a second process would be
    second = make_api(database_url, folder=tmp_path / "keys")
    assert second.log() == first.log()
    in_flight = InFlight([first.app, second.app])
    with LiveServer(first.app) as a, LiveServer(second.app) as b:
        yield first, [a, b], in_flight


def _post_all(servers: list[LiveServer], envelopes: list[dict[str, Any]]) -> list[httpx.Response]:
    """Post every envelope at the same moment, alternating between the servers."""
    barrier = threading.Barrier(len(envelopes))

    def post(index: int) -> httpx.Response:
        server = servers[index % len(servers)]
        with httpx.Client(base_url=server.url, timeout=120) as client:
            barrier.wait()
            return client.post("/v1/events", json=envelopes[index])

    with ThreadPoolExecutor(max_workers=len(envelopes)) as pool:
        return list(pool.map(post, range(len(envelopes))))


def _one_wins(
    w: HttpWorld, servers: list[LiveServer], envelopes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Exactly one 201; every other answer is 409 stale_prev. Returns the winner."""
    responses = _post_all(servers, envelopes)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(envelopes) - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            check_problem(response, 409, "stale_prev")
    winner = next(i for i, r in enumerate(responses) if r.status_code == 201)
    w.ledger.append(envelopes[winner])  # keep the mirror in step with the server
    return envelopes[winner]


def test_conflicting_offers_one_wins(
    two_servers: tuple[Api, list[LiveServer], InFlight],
) -> None:
    api, servers, in_flight = two_servers
    w = api.world().standard()
    recipients = [f"buyer-{i:02d}" for i in range(WRITERS)]
    with w.batching():
        for name in recipients:
            w.register_actor(name, ["trader"])
    lot = w.register_lot().body["lot"]

    # round 1: a dozen offers of the lot, same prev, different recipients
    offers = [w.offer(lot, to, post=False).envelope for to in recipients]
    assert len({o["body"]["prev"] for o in offers}) == 1
    won = _one_wins(w, servers, offers)
    assert api.lot(lot)["offer"]["to"] == won["body"]["to"]

    # round 2: the offer is cancelled; a dozen offers again on the new head, differing in mass
    w.cancel(lot)
    offers = [
        w.offer(lot, "trader", mass_mg=100_000 - i, post=False).envelope for i in range(WRITERS)
    ]
    _one_wins(w, servers, offers)

    # round 3: a dozen answers to the pending offer, each a different event (reject, accept
    # at various masses, cancel by the offerer): still only one wins
    answers = [w.reject(lot, post=False, reason=f"reason {i}").envelope for i in range(4)]
    answers += [w.accept(lot, mass_mg=99_000 - i, post=False).envelope for i in range(4)]
    answers += [w.cancel(lot, post=False, reason=f"changed mind {i}").envelope for i in range(4)]
    _one_wins(w, servers, answers)
    assert api.lot(lot)["status"] == "active"

    # independent events at once: all appended, each with its own seq
    with w.collecting() as lots:
        for _ in range(WRITERS):
            w.register_lot()
    size = api.log()["size"]
    responses = _post_all(servers, lots)
    assert [r.status_code for r in responses] == [201] * WRITERS, [r.text for r in responses]
    seqs = sorted(r.json()["seq"] for r in responses)
    assert seqs == list(range(size, size + WRITERS))

    assert in_flight.peak >= 2, "the appends never overlapped: no real concurrency"
    _check_log_intact(api, lots, [r.json() for r in responses])


def _check_log_intact(
    api: Api, envelopes: list[dict[str, Any]], receipts: list[dict[str, Any]]
) -> None:
    log = api.log()
    entries = api.client.get("/v1/log/entries", params={"limit": 1000}).json()
    assert entries["next"] is None
    assert [e["seq"] for e in entries["items"]] == list(range(log["size"]))
    # every receipt's checkpoint opens and includes its event
    for envelope, receipt in zip(envelopes, receipts, strict=True):
        cp = open_checkpoint(receipt["checkpoint"], log["verifier_key"])
        proof = api.client.get(
            "/v1/log/proof/inclusion", params={"index": receipt["seq"], "size": cp.size}
        ).json()["proof"]
        merkle.verify_inclusion(
            merkle.leaf_hash(canonical(envelope)),
            receipt["seq"],
            cp.size,
            [bytes.fromhex(h) for h in proof],
            cp.root,
        )
    report = audit(
        api.app.state.runtime.store.engine,
        origin=api.settings.origin,
        verifier_key=log["verifier_key"],
        registrar_key=log["registrar_key"],
    )
    assert report.ok, report.summary()
    assert report.size == log["size"]
