"""Pausing Python's cyclic garbage collector around the ledger's bulk work.

An append of a thousand events, or an audit, allocates hundreds of thousands of small
objects; each 700 allocations start a collection, and every so often a full one walks
everything alive, the whole replayed state of an audit included. Measured on a batch
append, that was 10 to 60 µs per event of nothing but collection. The work itself makes
almost no reference cycles (reference counting frees its garbage at once), so the
automatic collector is paused while it runs and resumes afterwards. An audit frees its
replayed state before it resumes (``tests/ledger/test_audit.py`` checks that an audit
leaves no cycle behind), so the collector has nothing of it to walk then.

The pause is process-wide (that is how ``gc`` works) and nests: concurrent or nested users
share it, and the collector resumes when the last one leaves, and only if it was on.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """Pause automatic garbage collection for the duration of the block."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
