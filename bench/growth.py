"""Benchmark 4: append cost as the log grows, through ``ledger.store.Ledger`` directly.

One SQLite log (``make_engine``: WAL, synchronous=FULL) is filled with lot registrations
in 1000-event batches; at each measuring size it times 33 more 1000-event batches (one merge
of the event-id index, every 32,768 entries, falls in any 33) and 300
single-event appends (each its own transaction and checkpoint), and reports the time per
event. Without HTTP, so the figure is the store's own cost. The sizes are 10^4 and 10^6
(10^5 when the disk has under 10 GB free); ``--quick`` measures at 10^3 and 10^4 for a CI
smoke. The fill to the largest size is time-boxed (``--budget`` minutes, 25 by default):
when the box runs out, the last measurement is taken at the size reached, and says so.

    .venv/bin/python bench/growth.py [--quick] [--budget MINUTES] [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path
from typing import Any

from common import (
    free_disk_gb,
    header,
    lot_event_chunks,
    lot_events,
    open_bench_ledger,
    out,
    workdir,
)

import ledger.store

BATCH = 1000
#: how often the event-id index merges (a tree from before it has none: 30 batches)
MERGE_EVERY = getattr(ledger.store, "MERGE_EVERY", 30 * BATCH)


def _wal_position(db: Path) -> tuple[int, int]:
    """Where the WAL of ``db`` ends: (the WAL header's checkpoint sequence number, which
    changes when the WAL restarts from its beginning; the number of valid frames, ``mxFrame``
    of the WAL-index header), as laid out in https://www.sqlite.org/walformat.html."""
    try:
        with open(f"{db}-wal", "rb") as wal, open(f"{db}-shm", "rb") as shm:
            header, index = wal.read(16), shm.read(24)
    except FileNotFoundError:
        return (-1, 0)
    if len(header) < 16 or len(index) < 24:
        return (-1, 0)
    return struct.unpack(">I", header[12:16])[0], struct.unpack("=I", index[16:20])[0]


def _measure(ledger: Any, db: Path, first: int, batches: int, singles: int) -> dict[str, float]:
    """Time ``batches`` batches then ``singles`` single appends of new lot registrations;
    also the slowest batch and the WAL frames (pages) each batch wrote."""
    events = lot_events(first, batches * BATCH + singles)
    size = ledger.size()
    batch_times, frames = [], []
    for i in range(batches):
        before = _wal_position(db)
        t = time.perf_counter()
        ledger.append(events[i * BATCH : (i + 1) * BATCH])
        batch_times.append(time.perf_counter() - t)
        after = _wal_position(db)
        # a WAL that restarted holds this batch's frames only
        frames.append(after[1] - before[1] if after[0] == before[0] else after[1])
    batch_us = sum(batch_times) / (batches * BATCH) * 1e6
    single_times = []
    for e in events[batches * BATCH :]:
        t = time.perf_counter()
        ledger.append_one(e)
        single_times.append(time.perf_counter() - t)
    single_times.sort()
    return {
        "size": size,
        "batch_us": batch_us,
        "batch_max_ms": max(batch_times) * 1e3,
        "wal_frames_per_batch": sum(frames) / len(frames),
        "single_us": sum(single_times) / len(single_times) * 1e6,
        "single_p50_us": single_times[len(single_times) // 2] * 1e6,
    }


def run(
    quick: bool = False, budget_min: float = 25.0, sizes: list[int] | None = None
) -> dict[str, Any]:
    disk = free_disk_gb("/tmp")
    note = ""
    if sizes is None:
        if quick:
            sizes = [10**3, 10**4]
        elif disk >= 10:
            sizes = [10**4, 10**6]
        else:
            sizes = [10**4, 10**5]
            note = f"only {disk:.0f} GB free disk: 10^5 instead of 10^6"
    # enough batches at each size to include the WAL checkpoints they cause (one every
    # ~16,000 pages) and one merge of the event-id index's recent part (every MERGE_EVERY
    # entries: any 33 consecutive batches hold exactly one), so that their cost is counted
    # as often as it is paid
    batches, singles = (2, 100) if quick else (-(-MERGE_EVERY // BATCH), 300)
    out(f"== 4. append cost as the log grows (Ledger directly, SQLite), sizes {sizes} ==")
    if note:
        out(f"  note: {note}")
    deadline = time.monotonic() + budget_min * 60
    points: list[dict[str, float]] = []
    with workdir() as work:
        ledger = open_bench_ledger(f"sqlite:///{work}/ledger.db", work)
        head = header()
        ledger.append(head)
        next_lot = 0
        for target in sizes:
            need = max(0, target - ledger.size())
            fill_started = time.perf_counter()
            last_report = time.monotonic()
            stopped = False
            for chunk in lot_event_chunks(next_lot, need, BATCH):
                ledger.append(chunk)
                next_lot += len(chunk)
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    rate = (ledger.size() - (target - need)) / (time.perf_counter() - fill_started)
                    out(f"  filling: {ledger.size():,} / {target:,} ({rate:,.0f} events/s)")
                if time.monotonic() > deadline:
                    stopped = True
                    break
            point = _measure(ledger, work / "ledger.db", next_lot, batches, singles)
            next_lot += batches * BATCH + singles
            point["target"] = target
            point["db_mb"] = _db_mb(work)
            point["time_boxed"] = stopped
            points.append(point)
            flag = "  (time box reached before the target)" if stopped else ""
            out(
                f"  at {point['size']:>9,} events: batch {point['batch_us']:7.1f} us/event, "
                f"single append {point['single_us']:7.1f} us (p50 {point['single_p50_us']:.0f} us)"
                f", db {point['db_mb']:,.0f} MB{flag}"
            )
            out(
                f"    slowest batch {point['batch_max_ms']:.0f} ms, "
                f"{point['wal_frames_per_batch']:,.0f} WAL frames (pages) per batch"
            )
        ledger.engine.dispose()
    first, last = points[0], points[-1]
    ratios = {
        "batch": last["batch_us"] / first["batch_us"],
        "single": last["single_us"] / first["single_us"],
    }
    out(
        f"  ratio {last['size']:,} / {first['size']:,}: batch {ratios['batch']:.2f}, "
        f"single {ratios['single']:.2f}"
    )
    return {"growth": {"points": points, "ratios": ratios, "note": note}}


def _db_mb(work: Path) -> float:
    return sum(p.stat().st_size for p in work.glob("ledger.db*")) / 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=25.0, help="minutes for the fill")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 10000,100000")
    args = parser.parse_args()
    chosen = [int(x) for x in args.sizes.split(",")] if args.sizes else None
    run(args.quick, args.budget, chosen)
