"""Benchmark 1: the ceiling, the irreducible per-event work on one core.

Per event: RFC 8785 canonical bytes of the body (``ledger.protocol.canonical``, the same
canonicaliser the product uses), SHA-256 of them, and one strict Ed25519 verify of
the signed message (libsodium through PyNaCl), in a tight loop over the same
``lot.registered`` events the other benchmarks send. Every other figure is divided by it.

    .venv/bin/python bench/ceiling.py
"""

from __future__ import annotations

import argparse
from typing import Any

from common import Ceiling, lot_events, measure_ceiling, out


def run(quick: bool = False) -> dict[str, Any]:
    ceiling = measure_ceiling(lot_events(0, 1000), min_seconds=0.5 if quick else 1.5)
    report(ceiling)
    return {"ceiling": ceiling}


def report(c: Ceiling) -> None:
    out("== 1. ceiling: canonicalise + SHA-256 + Ed25519 verify, one core ==")
    out(f"  {c.events_per_s:10,.0f} events/s   ({c.us_per_event:.1f} us/event)")
    out(
        f"  parts alone: canonical {c.canonical_us:.1f} us, SHA-256 {c.sha256_us:.2f} us, "
        f"Ed25519 verify {c.verify_us:.1f} us"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
