"""Benchmark 3: single-event appends through HTTP with 8 concurrent clients.

A real ``goldtrail serve`` on 127.0.0.1 (SQLite by default, PostgreSQL too with
``--backend both``); 8 clients each post their own ``lot.registered`` events to
``POST /v1/events`` one at a time, as fast as the answers come. The server groups the
requests that arrive together into one transaction under one checkpoint (group commit),
each with its own answer. Reports events/s over the timed window, the p50 and p99 of the
request latencies the clients saw, the ratio to the one-core ceiling measured in the same
run, and the CPU per request of the server and of the clients.

The clients are a lean load generator, as wrk would be: asyncio streams on uvloop, one
HTTP/1.1 keep-alive connection per client, every request (head and body) serialised before
the clock starts; each answer is read by its status line and Content-Length, and must be
201. So the client, which shares the 2 cores with the server, costs little CPU.

    .venv/bin/python bench/single_http.py [--quick] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from common import (
    TREE,
    Ceiling,
    batch_bytes,
    event_bytes,
    goldtrail_server,
    header,
    lot_events,
    measure_ceiling,
    out,
    percentile,
    postgres_server,
    workdir,
)

CLIENTS = 8


def request_bytes(host: str, body: bytes) -> bytes:
    """A whole ``POST /v1/events`` request, head and body (HTTP/1.1, keep-alive)."""
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(host: str, port: int, requests: list[bytes], latencies: list[float]) -> None:
    """Send the requests one after the other on one connection; every answer must be 201."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"an answer without Content-Length: {head[:300]!r}")
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if head[9:12] != b"201":
                raise RuntimeError(f"append refused: {head[:12]!r} {body[:300]!r}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _drive(base: str, per_client: list[list[bytes]]) -> tuple[float, list[float]]:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [[request_bytes(url.netloc, body) for body in bodies] for bodies in per_client]
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_client(host, port, r, latencies) for r in requests))
    return time.perf_counter() - started, latencies


def _run(coroutine: Coroutine[Any, Any, tuple[float, list[float]]]) -> tuple[float, list[float]]:
    """Run on uvloop when it is installed (uvicorn uses it too), else plain asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


@contextlib.contextmanager
def _server_imports_this_tree() -> Iterator[None]:
    """Make the server import ``ledger`` and ``api`` from the tree being measured (the
    virtualenv's editable install may point at another checkout)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TREE), saved) if p)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def run_backend(url: str, work: Path, per_client: int) -> dict[str, float]:
    total = CLIENTS * per_client
    warm = lot_events(0, 200)
    events = lot_events(200, total)
    bodies = [event_bytes(e) for e in events]
    split = [bodies[i::CLIENTS] for i in range(CLIENTS)]
    with _server_imports_this_tree(), goldtrail_server(url, work) as server:
        base = server.url
        with httpx.Client(base_url=base, timeout=60) as client:
            for batch in (header(), warm[:100]):
                r = client.post("/v1/events/batch", content=batch_bytes(batch))
                if r.status_code != 201:
                    raise RuntimeError(f"setup refused: {r.status_code} {r.text[:300]}")
        # warm-up: single appends through the same path, untimed
        warm_bodies = [event_bytes(e) for e in warm[100:]]
        _run(_drive(base, [warm_bodies[c::CLIENTS] for c in range(CLIENTS)]))
        groups = _group_totals(base)
        loop_cpu = _main_thread_cpu(server.pid)
        cpu, client_cpu = server.cpu_seconds(), time.process_time()
        elapsed, latencies = _run(_drive(base, split))
        cpu, client_cpu = server.cpu_seconds() - cpu, time.process_time() - client_cpu
        loop_cpu = _main_thread_cpu(server.pid) - loop_cpu
        groups = [after - before for before, after in zip(groups, _group_totals(base), strict=True)]
    return {
        "events_per_s": total / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": total,
        "server_cpu_us": cpu / total * 1e6,
        "client_cpu_us": client_cpu / total * 1e6,
        # the server's CPU split: its event loop (HTTP, parsing, responses, logs) and its
        # worker threads (the ledger's appends)
        "server_loop_cpu_us": loop_cpu / total * 1e6,
        "server_workers_cpu_us": (cpu - loop_cpu) / total * 1e6,
        # requests per transaction, from the server's metrics (nan if it has no group commit)
        "mean_group": groups[0] / groups[1] if groups[1] else float("nan"),
    }


def _main_thread_cpu(pid: int) -> float:
    """CPU seconds used so far by the server's main thread (its event loop)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_totals(base: str) -> list[float]:
    """(requests, transactions) so far of the server's group commit, from /metrics."""
    text = httpx.get(base + "/metrics", timeout=30).text
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for kind in totals:
            if name == f"goldtrail_append_group_size_{kind}":
                totals[kind] = float(value)
    return [totals["sum"], totals["count"]]


def run(
    ceiling: Ceiling | None = None, quick: bool = False, backends: tuple[str, ...] = ("sqlite",)
) -> dict[str, Any]:
    ceiling = ceiling or measure_ceiling()
    per_client = 100 if quick else 500
    results: dict[str, Any] = {}
    out(f"== 3. single-event appends over HTTP: {CLIENTS} clients x {per_client} events ==")
    for backend in backends:
        with workdir() as work:
            if backend == "sqlite":
                r = run_backend(f"sqlite:///{work}/ledger.db", work, per_client)
            else:
                with postgres_server(work) as url:
                    r = run_backend(url, work, per_client)
        r["ratio"] = ceiling.ratio(r["events_per_s"])
        results[backend] = r
        out(
            f"  {backend:10s} {r['events_per_s']:8,.0f} events/s = "
            f"{r['ratio']:.3f} of the ceiling; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
            f"(CPU per request: server {r['server_cpu_us']:.0f} us = event loop "
            f"{r['server_loop_cpu_us']:.0f} + workers {r['server_workers_cpu_us']:.0f}, "
            f"client {r['client_cpu_us']:.0f} us; {r['mean_group']:.1f} requests per "
            "transaction)"
        )
    return {"single": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = parser.parse_args()
    chosen = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    c = measure_ceiling()
    out(f"ceiling: {c.events_per_s:,.0f} events/s")
    run(c, args.quick, chosen)
