"""Benchmark 6: the full audit's rate (events/s).

A SQLite log of 20 000 events (10 000 with ``--quick``) is written through
``ledger.store.Ledger`` in 1000-event batches, then ``ledger.audit.audit`` replays it: for
every entry it checks the stored bytes are canonical, the id, the leaf hash, the columns
and the signature, and replays the rules from nothing; then every tree node, every
checkpoint and every projection table. The rate is entries / the audit's wall time.

    .venv/bin/python bench/audit_rate.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import (
    Ceiling,
    header,
    lot_event_chunks,
    maybe_profile,
    measure_ceiling,
    open_bench_ledger,
    out,
    public_hex,
    workdir,
)

from ledger.audit import audit


def run(
    ceiling: Ceiling | None = None, quick: bool = False, profile: bool = False
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
        with maybe_profile(profile, "audit"):
            started = time.perf_counter()
            report = audit(
                ledger.engine,
                origin=origin,
                verifier_key=verifier,
                registrar_key=public_hex("registrar"),
            )
            elapsed = time.perf_counter() - started
        ledger.engine.dispose()
    if not report.ok:
        raise RuntimeError(f"the benchmark log does not audit: {report.summary()}")
    rate = size / elapsed
    out(f"== 6. full audit of {size:,} entries ==")
    out(
        f"  {rate:8,.0f} events/s = {ceiling.ratio(rate):.2f} of the ceiling "
        f"({elapsed:.1f} s; {report.tree_nodes:,} tree nodes, {report.checkpoints} checkpoints)"
    )
    return {"audit": {"events_per_s": rate, "size": size, "seconds": elapsed}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    c = measure_ceiling()
    out(f"ceiling: {c.events_per_s:,.0f} events/s")
    run(c, args.quick, args.profile)
