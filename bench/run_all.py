"""Run every benchmark and print the results table, with ratios to the ceiling measured in
the same run (``make bench``).

    .venv/bin/python bench/run_all.py [--quick] [--skip-growth] [--budget MINUTES] [--json FILE]

``--quick`` is the CI smoke: small sizes everywhere and the growth at 10^3 / 10^4. The
ceiling is measured first and again at the end (the machine may be shared: the table shows
both, and every ratio uses the first). Results also go to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from typing import Any

import audit_rate
import bundle_verify
import ceiling
import growth
import ingest_http
import single_http
from common import measure_ceiling, out

TARGETS = {
    "ingest_sqlite": 0.35,
    "single_ratio": 0.08,
    "single_p99_ms": 25.0,
    "growth_ratio": 1.3,
    "bundle_ratio": 2.0,
    "audit_ratio": 1.0,
}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: small sizes")
    parser.add_argument("--skip-growth", action="store_true", help="leave out benchmark 4")
    parser.add_argument("--budget", type=float, default=25.0, help="minutes for the growth fill")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    quick = args.quick
    started = time.perf_counter()
    out(
        f"goldtrail benchmarks, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load {_load()}"
        + (" (quick)" if quick else "")
    )
    res: dict[str, Any] = {}
    loads: dict[str, str] = {}
    c = ceiling.run(quick)["ceiling"]
    res["ceiling"] = vars(c)
    for name, step in (
        ("ingest", lambda: ingest_http.run(c, quick)),
        ("single", lambda: single_http.run(c, quick)),
        ("growth", lambda: growth.run(quick, args.budget) if not args.skip_growth else {}),
        ("bundle", lambda: bundle_verify.run(quick)),
        ("audit", lambda: audit_rate.run(c, quick)),
    ):
        loads[name] = _load()
        res.update(step())
    end = measure_ceiling(min_seconds=0.5 if quick else 1.5)
    res["ceiling_end"] = vars(end)
    res["loads"] = loads
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=str)
    _table(c.events_per_s, end.events_per_s, res, loads)
    out(f"(total {time.perf_counter() - started:.0f} s)")
    return 0


def _table(ceil: float, ceil_end: float, res: dict[str, Any], loads: dict[str, str]) -> None:
    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    rows: list[tuple[str, str, str, str]] = []
    rows.append(
        (
            "1. ceiling (canonical + SHA-256 + Ed25519 verify, 1 core)",
            f"{ceil:,.0f} events/s (end of run: {ceil_end:,.0f})",
            "1.00",
            "",
        )
    )
    ingest = res.get("ingest", {})
    for backend in ("sqlite", "postgresql"):
        if backend in ingest:
            rate = ingest[backend]["events_per_s"]
            target = TARGETS["ingest_sqlite"] if backend == "sqlite" else None
            verdict = f"≥ {target}: {ok(rate / ceil >= target)}" if target else "(no target)"
            rows.append(
                (
                    f"2. batch ingestion HTTP, {backend}",
                    f"{rate:,.0f} events/s",
                    f"{rate / ceil:.2f}",
                    verdict,
                )
            )
    for backend, r in res.get("single", {}).items():
        ratio = r["events_per_s"] / ceil
        met = ratio >= TARGETS["single_ratio"] and r["p99_ms"] < TARGETS["single_p99_ms"]
        rows.append(
            (
                f"3. single appends HTTP, 8 clients, {backend}",
                f"{r['events_per_s']:,.0f} events/s, "
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                f"{ratio:.3f}",
                f"≥ 0.08 and p99 < 25 ms: {ok(met)}",
            )
        )
    g = res.get("growth")
    if g:
        first, last = g["points"][0], g["points"][-1]
        rows.append(
            (
                f"4. append cost at {first['size']:,} -> {last['size']:,} events (Ledger, SQLite)",
                f"batch {first['batch_us']:.0f} -> {last['batch_us']:.0f} us/event; "
                f"single {first['single_us']:.0f} -> {last['single_us']:.0f} us",
                f"x{g['ratios']['batch']:.2f} / x{g['ratios']['single']:.2f}",
                f"≤ 1.3: {ok(max(g['ratios'].values()) <= TARGETS['growth_ratio'])}",
            )
        )
    b = res["bundle"]
    rows.append(
        (
            f"5. bundle verification, {b['entries']} entries",
            f"{b['verify_ms']:.1f} ms vs {b['raw_ms']:.1f} ms of Ed25519 verifies "
            f"({b['sigcheck_ms']:.1f} ms with canonical + SHA-256)",
            f"x{b['ratio']:.2f} (x{b['sigcheck_ratio']:.2f})",
            f"≤ 2: {ok(b['ratio'] <= TARGETS['bundle_ratio'])}",
        )
    )
    a = res["audit"]
    rows.append(
        (
            f"6. full audit, {a['size']:,} entries",
            f"{a['events_per_s']:,.0f} events/s; CPU per entry {a['cpu_us']:.0f} µs here "
            f"({a['end_phase_us']:.0f} after the last entry) + {a['worker_cpu_us']:.0f} µs "
            f"in the worker; best split over two cores {a['best_ratio']:.2f}",
            f"{a['events_per_s'] / ceil:.2f}",
            f"≥ 1.0: {ok(a['events_per_s'] / ceil >= TARGETS['audit_ratio'])}",
        )
    )
    out()
    out("| benchmark | result | ratio | target |")
    out("| --- | --- | --- | --- |")
    for row in rows:
        out("| " + " | ".join(row) + " |")
    out(f"(load average 1/5 min before each: {loads})")


if __name__ == "__main__":
    raise SystemExit(main())
