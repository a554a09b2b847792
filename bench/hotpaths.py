"""In-process costs of the hot paths, for before/after comparisons of ``ledger/`` changes.

CPU time (``time.process_time``) per event of: ``Ledger.append`` of 1000-event batches and
``Ledger.append_one`` on SQLite, ``verify_bundle`` on the ~100-event bundle, and the audit.
CPU time is used because this machine is shared: wall time moves with other people's work.
To compare with another tree (for example HEAD, exported with ``git archive HEAD ledger |
tar -x -C /tmp/head``), run it there too and put the two side by side:

    GOLDTRAIL_BENCH_TREE=/tmp/head .venv/bin/python bench/hotpaths.py
    .venv/bin/python bench/hotpaths.py
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import bundle_verify
from common import TREE, header, lot_events, open_bench_ledger, public_hex, workdir


def _cpu(fn: Any) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def measure(rounds: int = 3) -> dict[str, float]:
    from ledger.audit import audit
    from ledger.verify import verify_bundle

    res: dict[str, float] = {}
    with workdir() as work:
        ledger = open_bench_ledger(f"sqlite:///{work}/ledger.db", work)
        ledger.append(header())
        events = lot_events(0, 12_000 + rounds * 300)
        ledger.append(events[:2000])
        batch = []
        for r in range(rounds):
            chunk = events[2000 + r * 1000 * 3 : 2000 + (r + 1) * 1000 * 3]
            batch.append(
                min(
                    _cpu(lambda c=c: ledger.append(c))
                    for c in (chunk[:1000], chunk[1000:2000], chunk[2000:])
                )
                / 1000
            )
        res["append_batch_us"] = min(batch) * 1e6
        singles = events[12_000:]
        per = []
        for r in range(rounds):
            part = singles[r * 300 : (r + 1) * 300]
            per.append(_cpu(lambda p=part: [ledger.append_one(e) for e in p]) / len(part))
        res["append_one_us"] = min(per) * 1e6
        size = ledger.size()
        res["audit_us"] = (
            min(
                _cpu(
                    lambda: audit(
                        ledger.engine,
                        origin=ledger.origin,
                        verifier_key=ledger.verifier_key,
                        registrar_key=public_hex("registrar"),
                    )
                )
                for _ in range(2)
            )
            / size
            * 1e6
        )
        ledger.engine.dispose()
    data, key, reg, _ = bundle_verify.build()
    res["verify_bundle_ms"] = (
        min(_cpu(lambda: [verify_bundle(data, key, reg) for _ in range(10)]) for _ in range(rounds))
        / 10
        * 1e3
    )
    return res


if __name__ == "__main__":
    result = measure()
    print(json.dumps({"tree": str(TREE), **{k: round(v, 1) for k, v in result.items()}}))
    sys.stdout.flush()
