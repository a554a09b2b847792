"""Benchmark 2: batch ingestion through the HTTP API, 1000-event batches.

A real ``goldtrail serve`` (uvicorn) on 127.0.0.1 over SQLite (WAL, synchronous=NORMAL)
and over PostgreSQL (default durability); one httpx client posts ``POST /v1/events/batch``
bodies serialised beforehand, one after another, and checks every answer is 201 with 1000
receipts. The rate counts only the timed batches (the header batch is sent first).

    .venv/bin/python bench/ingest_http.py [--quick] [--backend sqlite|postgresql|both] [--profile]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import httpx
from common import (
    Ceiling,
    Server,
    batch_bytes,
    goldtrail_server,
    header,
    lot_events,
    measure_ceiling,
    out,
    postgres_server,
    workdir,
)

BATCH = 1000


def ingest(server: Server, batches: list[bytes]) -> dict[str, float]:
    """Post the batches in order; return events/s and the server's CPU time per event."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=300, headers=headers) as client:
        cpu = server.cpu_seconds()
        started = time.perf_counter()
        for body in batches:
            r = client.post("/v1/events/batch", content=body)
            if r.status_code != 201 or len(r.json()["receipts"]) != BATCH:
                raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu
    events = len(batches) * BATCH
    return {"events_per_s": events / elapsed, "server_cpu_us": cpu / events * 1e6}


def run_backend(url: str, work: Path, n_batches: int) -> dict[str, float]:
    events = lot_events(0, n_batches * BATCH)
    bodies = [batch_bytes(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]
    with goldtrail_server(url, work) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            r = client.post("/v1/events/batch", content=batch_bytes(header()))
            if r.status_code != 201:
                raise RuntimeError(f"header refused: {r.status_code} {r.text[:300]}")
            # warm-up: one untimed batch
            r = client.post("/v1/events/batch", content=bodies[0])
            if r.status_code != 201:
                raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
        return ingest(server, bodies[1:])


def run(
    ceiling: Ceiling | None = None,
    quick: bool = False,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
) -> dict[str, Any]:
    ceiling = ceiling or measure_ceiling()
    n = 5 if quick else 20
    results: dict[str, Any] = {}
    out(f"== 2. batch ingestion over HTTP: {n} batches of {BATCH} lot registrations ==")
    for backend in backends:
        with workdir() as work:
            if backend == "sqlite":
                r = run_backend(f"sqlite:///{work}/ledger.db", work, n + 1)
            else:
                with postgres_server(work) as url:
                    r = run_backend(url, work, n + 1)
        results[backend] = r
        rate = r["events_per_s"]
        out(
            f"  {backend:10s} {rate:8,.0f} events/s = {ceiling.ratio(rate):.2f} of the ceiling "
            f"({1e6 / rate:.0f} us/event wall; server CPU {r['server_cpu_us']:.0f} us/event)"
        )
    return {"ingest": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    chosen = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    c = measure_ceiling()
    out(f"ceiling: {c.events_per_s:,.0f} events/s")
    run(c, args.quick, chosen)
