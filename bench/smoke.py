"""A tiny smoke test of the benchmark helpers, run by hand (never part of the test suite).

It checks in a few seconds that the benchmark events are valid for the ledger (the header
and some lot registrations append, the log audits clean), that the bundle built for
benchmark 5 verifies, and that the ceiling measures something. It starts no server.

    .venv/bin/python bench/smoke.py
"""

from __future__ import annotations

import sys

import bundle_verify
from common import header, lot_events, measure_ceiling, open_bench_ledger, public_hex, workdir

from ledger.audit import audit
from ledger.verify import verify_bundle


def main() -> int:
    with workdir() as work:
        ledger = open_bench_ledger(f"sqlite:///{work}/ledger.db", work)
        ledger.append(header())
        events = lot_events(0, 50)
        ledger.append(events[:40])
        for e in events[40:]:
            ledger.append_one(e)
        assert ledger.size() == len(header()) + 50, ledger.size()
        report = audit(
            ledger.engine,
            origin=ledger.origin,
            verifier_key=ledger.verifier_key,
            registrar_key=public_hex("registrar"),
        )
        ledger.engine.dispose()
        assert report.ok, report.summary()
    data, key, registrar, entries = bundle_verify.build()
    assert 90 <= entries <= 110, entries
    verdict = verify_bundle(data, key, registrar)
    assert verdict.ok, verdict.failures
    c = measure_ceiling(lot_events(0, 50), min_seconds=0.1, rounds=1)
    assert c.events_per_s > 0
    print(
        f"bench smoke ok: {entries}-entry bundle verifies, ceiling {c.events_per_s:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
