"""Benchmark 6: the full audit's rate (events/s).

A SQLite log of 20 000 events (10 000 with ``--quick``) is written through
``ledger.store.Ledger`` in 1000-event batches, then ``ledger.audit.audit`` replays it: for
every entry it checks the stored bytes are canonical, the id, the leaf hash, the columns
and the signature, and replays the rules from nothing; then every tree node, every
checkpoint and every projection table. The rate is entries / the audit's wall time.

It also accounts for the CPU: per entry, the audit's own process (the entries' replay, its
share of whole-entry checks, and the end phase: tree, checkpoints, projections, which run
after the last entry) and the signature worker (``ledger.sigcheck``, its share of the
whole-entry checks). From them it prints the best wall time any split of that work over
two cores could reach, ``(total - end) / 2 + end``, and its ratio to the ceiling: the
limit of the code as it is, whatever the scheduling.

    .venv/bin/python bench/audit_rate.py [--quick] [--profile | --py-spy]

``--profile`` runs pyinstrument over the audit's own process (a call tree); ``--py-spy``
samples both processes (this one and the signature worker) during the audit only and
prints, per process, where the CPU goes (self time per function, in us per entry).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    BIN,
    Ceiling,
    header,
    lot_event_chunks,
    maybe_profile,
    measure_ceiling,
    open_bench_ledger,
    out,
    public_hex,
    tree_cpu_seconds,
    workdir,
)

from ledger.audit import audit


def run(
    ceiling: Ceiling | None = None, quick: bool = False, profile: bool = False, spy: bool = False
) -> dict[str, Any]:
    ceiling = ceiling or measure_ceiling()
    lots = 10_000 if quick else 20_000
    with workdir() as work:
        ledger = open_bench_ledger(f"sqlite:///{work}/ledger.db", work)
        ledger.append(header())
        for chunk in lot_event_chunks(0, lots, 1000):
            ledger.append(chunk)
        size = ledger.size()
        verifier = ledger.verifier_key
        origin = ledger.origin
        last_chunk = [0.0]

        def progress(done: int, total: int) -> None:
            last_chunk[0] = time.perf_counter()

        with maybe_profile(profile, "audit"), sampled(spy) as samples:
            worker_cpu = _children_cpu()
            cpu = time.process_time()
            started = time.perf_counter()
            report = audit(
                ledger.engine,
                origin=origin,
                verifier_key=verifier,
                registrar_key=public_hex("registrar"),
                progress=progress,
            )
            ended = time.perf_counter()
            cpu = time.process_time() - cpu
            worker_cpu = _children_cpu() - worker_cpu
        elapsed = ended - started
        end_phase = ended - last_chunk[0]
        ledger.engine.dispose()
    if not report.ok:
        raise RuntimeError(f"the benchmark log does not audit: {report.summary()}")
    rate = size / elapsed
    out(f"== 6. full audit of {size:,} entries ==")
    out(
        f"  {rate:8,.0f} events/s = {ceiling.ratio(rate):.2f} of the ceiling "
        f"({elapsed:.1f} s; {report.tree_nodes:,} tree nodes, {report.checkpoints} checkpoints)"
    )
    per = 1e6 / size
    if samples:
        print_samples(samples[0], size)
    total = cpu + worker_cpu
    best = (total - end_phase) / 2 + end_phase
    out(
        f"  per entry: {elapsed * per:.1f} us of wall time; CPU {cpu * per:.1f} us in the "
        f"audit's process ({end_phase * per:.1f} of them after the last entry) + "
        f"{worker_cpu * per:.1f} us in the signature worker = {total * per:.1f} us"
    )
    out(
        f"  best split over two cores: {best * per:.1f} us per entry = "
        f"{ceiling.ratio(size / best):.2f} of the ceiling ({ceiling.us_per_event:.1f} us)"
    )
    return {
        "audit": {
            "events_per_s": rate,
            "size": size,
            "seconds": elapsed,
            "cpu_us": cpu * per,
            "worker_cpu_us": worker_cpu * per,
            "end_phase_us": end_phase * per,
            "best_ratio": ceiling.ratio(size / best),
        }
    }


SPY_RATE = 250


@contextlib.contextmanager
def sampled(enabled: bool) -> Iterator[list[Path]]:
    """py-spy (``--subprocesses``) attached to this process for the block: the path of its
    raw (collapsed) stacks, written when it stops, is in the list after the block."""
    found: list[Path] = []
    if not enabled:
        yield found
        return
    spy_bin = BIN / "py-spy"
    if not spy_bin.exists():
        out("  (py-spy is not installed in .venv: no profile)")
        yield found
        return
    raw = Path(tempfile.mkdtemp(prefix="goldtrail-bench-spy-")) / "audit.raw"
    proc = subprocess.Popen(
        [
            *(str(spy_bin), "record", "--pid", str(os.getpid()), "--subprocesses"),
            *("--nonblocking", "-r", str(SPY_RATE), "-f", "raw", "-o", str(raw)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # attached and sampling before the audit starts
    try:
        yield found
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        if raw.exists():
            found.append(raw)


#: where a sample's time goes, per process: the first of these functions (in this order)
#: that its stack holds; anything else is "other"
PARTS = {
    "audit's process": (
        ("_Audit.tree_nodes", "end phase: stored tree nodes against the recomputed tree"),
        ("_Audit.checkpoints", "end phase: checkpoints"),
        ("_Audit.projections", "end phase: projection tables against the replay"),
        ("_Audit.replay", "the rules' replay (admit, state changes)"),
        ("_Audit.check", "whole-entry checks beyond the worker's share"),
        ("loads", "json.loads of the entries the worker found sound"),
        ("_raw_rows", "reading the log's rows"),
        ("_Entry.__init__", "leaf hashes"),
        ("append_leaves", "the tree's nodes from the leaves"),
        ("_Chunk.__init__", "sending entries to the worker"),
        ("_Chunk.sound", "reading the worker's answers"),
        ("_Audit.finish", "the entries' columns (time, type, actor, subject), the loop"),
        ("_Audit.entries", "the chunk loop"),
        ("audit", "end phase: freeing the replayed state"),
    ),
    "signature worker": (
        ("verify_signature", "Ed25519 verify (PyNaCl, with the signed message)"),
        ("parse_strict", "strict JSON reading"),
        ("split_envelope", "the envelope's shape"),
        ("canonical_parsed", "canonical form (RFC 8785) of the envelope"),
        ("sha256", "SHA-256 of the body"),
        ("_read_exactly", "reading the entries from the pipe"),
    ),
}


def print_samples(raw: Path, entries: int) -> None:
    """Per process, where its sampled CPU goes (``PARTS``), in us per entry, from py-spy's
    raw stacks (each line ``process A;...;frame;frame N``); idle time is not sampled."""
    per_process: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        if not processes or len(frames) == len(processes):
            continue
        name = "signature worker" if "ledger.sigcheck" in processes[-1] else "audit's process"
        functions = [f.split(" (")[0] for f in frames[len(processes) :]]
        part = next((what for fn, what in PARTS[name] if fn in functions), "other")
        per_process[name][part] += int(count)
    scale = 1e6 / SPY_RATE / entries
    for name in PARTS:
        counts = per_process.get(name, collections.Counter())
        out(f"  py-spy, {name}: {sum(counts.values()) * scale:.1f} us per entry sampled busy")
        for part, n in counts.most_common():
            out(f"    {n * scale:6.1f}  {part}")


def _children_cpu() -> float:
    """CPU seconds used so far by the live processes below this one (the signature
    worker)."""
    return tree_cpu_seconds(os.getpid(), children_only=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="pyinstrument, this process")
    parser.add_argument("--py-spy", action="store_true", help="py-spy, both processes")
    args = parser.parse_args()
    c = measure_ceiling()
    out(f"ceiling: {c.events_per_s:,.0f} events/s")
    run(c, args.quick, args.profile, args.py_spy)
