"""Benchmark 3: single-event appends through HTTP with 8 concurrent clients.

A real ``goldtrail serve`` on 127.0.0.1 (SQLite by default, PostgreSQL too with
``--backend both``); 8 clients (asyncio tasks, one httpx.AsyncClient connection each) each
post their own ``lot.registered`` events to ``POST /v1/events`` one at a time, as fast as
the answers come. Every append is its own transaction with its own signed checkpoint.
Reports events/s over the timed window, and the p50 and p99 of the request latencies the
clients saw.

    .venv/bin/python bench/single_http.py [--quick] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from common import (
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


async def _client(base: str, bodies: list[bytes], latencies: list[float]) -> None:
    limits = httpx.Limits(max_connections=1)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, headers=headers) as c:
        for body in bodies:
            started = time.perf_counter()
            r = await c.post("/v1/events", content=body)
            latencies.append(time.perf_counter() - started)
            if r.status_code != 201:
                raise RuntimeError(f"append refused: {r.status_code} {r.text[:300]}")


async def _drive(base: str, per_client: list[list[bytes]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_client(base, bodies, latencies) for bodies in per_client))
    return time.perf_counter() - started, latencies


def run_backend(url: str, work: Path, per_client: int) -> dict[str, float]:
    total = CLIENTS * per_client
    warm = lot_events(0, 200)
    events = lot_events(200, total)
    bodies = [event_bytes(e) for e in events]
    split = [bodies[i::CLIENTS] for i in range(CLIENTS)]
    with goldtrail_server(url, work) as server:
        base = server.url
        with httpx.Client(base_url=base, timeout=60) as client:
            for batch in (header(), warm[:100]):
                r = client.post("/v1/events/batch", content=batch_bytes(batch))
                if r.status_code != 201:
                    raise RuntimeError(f"setup refused: {r.status_code} {r.text[:300]}")
        # warm-up: a few single appends through the same path, untimed
        asyncio.run(_drive(base, [[event_bytes(e)] for e in warm[100 : 100 + CLIENTS]]))
        cpu, client_cpu = server.cpu_seconds(), time.process_time()
        elapsed, latencies = asyncio.run(_drive(base, split))
        cpu, client_cpu = server.cpu_seconds() - cpu, time.process_time() - client_cpu
    return {
        "events_per_s": total / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": total,
        "server_cpu_us": cpu / total * 1e6,
        "client_cpu_us": client_cpu / total * 1e6,
    }


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
        results[backend] = r
        out(
            f"  {backend:10s} {r['events_per_s']:8,.0f} events/s = "
            f"{ceiling.ratio(r['events_per_s']):.3f} of the ceiling; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
            f"(CPU per request: server {r['server_cpu_us']:.0f} us, "
            f"client {r['client_cpu_us']:.0f} us)"
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
