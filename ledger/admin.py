"""Operator tasks on a stored log: export, import, rebuilding projections, a quick check.

- ``export_log`` streams the log as JSON lines, one envelope per line, in ``seq`` order: the
  stored leaf data (``JCS(envelope)``) byte for byte, from one read snapshot.
- ``import_log`` replays such an export into an *empty* ledger, in batches, through the same
  checks as any append (signatures, rules; only the future-time rule is off), and returns
  the root: the same envelopes in the same order give the same tree, so the root equals the
  exported log's root.
- ``rebuild_projections`` clears the projection tables and replays the whole log into them
  in one write transaction. Projections are derived data; the log, its tree and its
  checkpoints are append-only and are never touched.
- ``quick_check`` is what a server can afford at start and on every ``/readyz``: the latest
  checkpoint opens with the log key, covers the whole log and has the root of the stored
  tree, and the last entry's bytes hash to its stored leaf. It reads O(log n) rows. Only
  the full audit (``ledger.audit``) reads every entry; ``record_audit`` keeps its verdict in
  ``log_meta`` so that the server can report it (``last_audit``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from ledger import merkle, tables
from ledger.audit import AuditReport
from ledger.checkpoint import open_checkpoint
from ledger.errors import ConflictError, IntegrityError, LedgerError
from ledger.protocol import parse_strict
from ledger.rules import admit
from ledger.state import Changes, MemoryState, StagedState
from ledger.store import (
    PROJECTIONS_MARK,
    Ledger,
    SqlHashStore,
    SqlState,
    _upsert,
    log_size,
    read_transaction,
    reindex_event_ids,
    write_transaction,
)

#: how many log rows are read per query
CHUNK = 1000
#: how many envelopes an import appends per transaction
IMPORT_BATCH = 500
#: the ``log_meta`` key under which ``record_audit`` keeps the last audit's verdict
LAST_AUDIT_KEY = "last_audit"
#: the projection tables, children first (rebuilt from the log; never the truth); the
#: event-id index (``ledger.tables``) is rebuilt with them by ``reindex_event_ids``
PROJECTION_TABLES = (
    tables.event_lots,
    tables.lot_sites,
    tables.lots,
    tables.sites,
    tables.prefixes,
    tables.actor_keys,
    tables.actors,
)


class ImportRefused(LedgerError):
    """An export line could not be imported: ``line`` (1-based) and the ``seq`` it would
    have had; ``code`` is the code of the check that failed."""

    fault = "verification"

    def __init__(self, code: str, detail: str, *, line: int, seq: int) -> None:
        super().__init__(code, f"line {line} (seq {seq}): {detail}")
        self.line = line
        self.seq = seq


# ---------------------------------------------------------------------------
# Export and import


def _log_rows(conn: Connection, what: str) -> Iterator[tuple[int, bytes]]:
    """(seq, envelope bytes) of every entry in order; IntegrityError at a gap in seq."""
    t = tables.log
    expected = 0
    while True:
        rows = conn.execute(
            select(t.c.seq, t.c.envelope).where(t.c.seq >= expected).order_by(t.c.seq).limit(CHUNK)
        ).all()
        if not rows:
            return
        for row in rows:
            if row.seq != expected:
                raise IntegrityError(
                    "log_damaged",
                    f"The log has no entry {expected} (the next is {row.seq}), so it cannot be "
                    f"{what}: run goldtrail admin audit.",
                )
            yield expected, bytes(row.envelope)
            expected += 1


def export_log(engine: Engine) -> Iterator[str]:
    """The log's envelopes as JSON lines (no newline at the end of each), in seq order.

    Each line is the stored leaf data, ``JCS(envelope)``, decoded as UTF-8; all lines come
    from one read snapshot. Raises IntegrityError ``log_damaged`` at a gap in seq, and
    whatever the database raises.
    """
    with read_transaction(engine) as conn:
        for _seq, data in _log_rows(conn, "exported"):
            yield data.decode("utf-8")


def import_log(
    ledger: Ledger,
    lines: Iterable[str],
    progress: Callable[[int], None] | None = None,
    *,
    batch_size: int = IMPORT_BATCH,
    whole_lines: bool = False,
) -> bytes:
    """Append an export's envelopes to an empty ledger, verifying every one; return the root.

    The whole export is checked first, before anything is written: every line parsed as
    strict JSON (blank lines are skipped) and replayed in memory through every signature
    and rule (no clock), and with ``whole_lines`` every line must end with a newline (a file
    cut short does not). Only then are the envelopes appended ``batch_size`` at a time with
    ``check_time=False``, checked again as any append. ``lines`` is read twice (an iterator
    is first read into a list). ``progress(entries imported so far)`` is called after each
    batch. Raises ConflictError ``log_not_empty`` if the ledger has entries, ImportRefused
    naming the line and seq of the first envelope that fails (the ledger is then as it was),
    and whatever the database raises (a failure of the database while appending leaves the
    batches before it committed: discard the database).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if ledger.size() != 0:
        raise ConflictError(
            "log_not_empty",
            "An export can only be imported into an empty log; this database already holds "
            f"{ledger.size()} entries.",
        )
    if iter(lines) is lines:  # read twice: first checked whole, then appended
        lines = list(lines)
    _check_lines(ledger, lines, whole_lines=whole_lines)
    done = 0
    batch: list[Any] = []
    numbers: list[int] = []

    def flush() -> None:
        nonlocal done
        try:
            result = ledger.append(batch, check_time=False)
        except LedgerError as e:
            at = e.index or 0
            raise ImportRefused(e.code, e.detail, line=numbers[at], seq=done + at) from e
        for at, new in enumerate(result.new):
            if not new:
                raise ImportRefused(
                    "duplicate_event",
                    "this envelope appears earlier in the export",
                    line=numbers[at],
                    seq=done + at,
                )
        done += len(batch)
        batch.clear()
        numbers.clear()
        if progress is not None:
            progress(done)

    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            envelope = parse_strict(text.encode("utf-8"))
        except LedgerError as e:
            raise ImportRefused(e.code, e.detail, line=number, seq=done + len(batch)) from e
        batch.append(envelope)
        numbers.append(number)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return bytes.fromhex(ledger.log_info()["root"])


def _check_lines(ledger: Ledger, lines: Iterable[str], *, whole_lines: bool) -> None:
    """ImportRefused for the first line that is not a whole, sound envelope of the export."""
    state = MemoryState()
    seq = 0
    last: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = (number, line)
        try:
            envelope = parse_strict(line.rstrip("\r\n").encode("utf-8"))
            staged = StagedState(state)
            admitted = admit(
                staged,
                envelope,
                origin=ledger.origin,
                registrar_key=ledger.registrar_key,
                now=None,
            )
        except LedgerError as e:
            raise ImportRefused(e.code, e.detail, line=number, seq=seq) from e
        if admitted.existing is not None:
            raise ImportRefused(
                "duplicate_event",
                "this envelope appears earlier in the export",
                line=number,
                seq=seq,
            )
        state.apply(staged.changes)
        seq += 1
    if whole_lines and last is not None and not last[1].endswith("\n"):
        raise ImportRefused(
            "truncated",
            "the file ends in the middle of this line (no newline after it): it was cut "
            "short; export the log again",
            line=last[0],
            seq=seq - 1,
        )


def root_of_lines(lines: Iterable[str]) -> tuple[int, bytes]:
    """(entries, root) of the tree over export lines, as a log of exactly those bytes has."""
    leaves = [
        merkle.leaf_hash(line.rstrip("\r\n").encode("utf-8")) for line in lines if line.strip()
    ]
    return len(leaves), merkle.root_from_leaves(leaves)


# ---------------------------------------------------------------------------
# Projections


def rebuild_projections(engine: Engine, origin: str, registrar_key: str | None) -> int:
    """Replace every projection row by a replay of the log; return the entries replayed.

    Runs in one write transaction: the replay (every signature and rule, with no clock)
    happens first, and the projection tables are cleared and refilled only if the whole log
    replays. Raises IntegrityError ``log_damaged`` naming the seq of the first entry that
    does not (nothing is changed then), and whatever the database raises.
    """
    with write_transaction(engine) as conn:
        state = MemoryState()
        for seq, data in _log_rows(conn, "replayed"):
            staged = StagedState(state)
            try:
                admitted = admit(
                    staged,
                    parse_strict(data),
                    origin=origin,
                    registrar_key=registrar_key,
                    now=None,
                )
            except LedgerError as e:
                raise IntegrityError(
                    "log_damaged",
                    f"The entry at seq {seq} does not replay ({e.code}: {e.detail}); the "
                    "projections were left as they were: run goldtrail admin audit.",
                ) from e
            if admitted.existing is not None:
                raise IntegrityError(
                    "log_damaged",
                    f"The entry at seq {seq} repeats the event at seq {admitted.existing.seq}; "
                    "the projections were left as they were: run goldtrail admin audit.",
                )
            state.apply(staged.changes)
        for table in PROJECTION_TABLES:
            conn.execute(delete(table))
        SqlState(conn).apply(
            Changes(
                actors=dict(state.actors),
                sites=dict(state.sites),
                lots=dict(state.lots),
                keys=dict(state.keys),
                prefixes=dict(state.prefixes),
                events=list(state.events.values()),
            )
        )
        reindex_event_ids(conn, ((bytes.fromhex(e.event_id), e.seq) for e in state.events.values()))
        # a ledger (another process's, for one) keeps rows it read while the log's size
        # does not change: a new mark tells it these are not them
        mark = conn.execute(
            select(tables.log_meta.c.value).where(tables.log_meta.c.key == PROJECTIONS_MARK)
        ).scalar()
        count = int(mark) + 1 if mark is not None and str(mark).isdigit() else 1
        _upsert(conn, tables.log_meta, [{"key": PROJECTIONS_MARK, "value": str(count)}], ["key"])
        return state.size()


# ---------------------------------------------------------------------------
# Quick check and the audit's verdict


@dataclass(frozen=True)
class QuickCheck:
    """The result of ``quick_check``: ``ok``, the log's size and one plain sentence."""

    ok: bool
    size: int
    detail: str


def quick_check(engine: Engine, verifier_key: str) -> QuickCheck:
    """Check the head of the log in O(log n) reads, from one read snapshot.

    The latest checkpoint must open with ``verifier_key``, sign the size and root of its
    row, cover the whole log, and sign the root of the stored tree nodes; the last entry's
    bytes must hash to its stored leaf hash and to the stored leaf of the tree. A changed
    entry elsewhere in the log is found only by the full audit. Never raises for a damaged
    store; raises only what the database raises.
    """
    with read_transaction(engine) as conn:
        return _quick_check(conn, verifier_key)


def _quick_check(conn: Connection, verifier_key: str) -> QuickCheck:
    size = log_size(conn)
    c = tables.checkpoints
    row = conn.execute(
        select(c.c.size, c.c.root, c.c.note).order_by(c.c.size.desc()).limit(1)
    ).first()
    if row is None:
        if size == 0:
            return QuickCheck(True, 0, "The log is empty.")
        return QuickCheck(False, size, f"The log has {size} entries but no checkpoint.")
    where = f"The latest checkpoint (size {row.size})"
    try:
        opened = open_checkpoint(str(row.note), verifier_key)
    except LedgerError as e:
        return QuickCheck(False, size, f"{where} does not open with the log key: {e.detail}")
    if opened.size != row.size or opened.root != bytes(row.root):
        return QuickCheck(False, size, f"{where} signs another size or root than its row says.")
    if opened.size != size:
        return QuickCheck(False, size, f"{where} does not cover the log, which has {size} entries.")
    try:
        tree_root = merkle.tree_root(SqlHashStore(conn), size)
        (last_node,) = SqlHashStore(conn).read_hashes([(0, size - 1)])
    except LedgerError as e:
        return QuickCheck(False, size, f"The stored Merkle tree is incomplete: {e.detail}")
    if tree_root != opened.root:
        return QuickCheck(
            False,
            size,
            f"{where} signs the root {opened.root.hex()}, but the stored tree's root is "
            f"{tree_root.hex()}.",
        )
    t = tables.log
    last = conn.execute(select(t.c.leaf_hash, t.c.envelope).where(t.c.seq == size - 1)).first()
    if last is None:
        return QuickCheck(False, size, f"The log has no entry {size - 1}, its last.")
    leaf = merkle.leaf_hash(bytes(last.envelope))
    if leaf != bytes(last.leaf_hash) or leaf != last_node:
        return QuickCheck(
            False, size, f"The last entry (seq {size - 1}) does not hash to its stored leaf."
        )
    return QuickCheck(
        True,
        size,
        f"The latest checkpoint opens with the log key and signs the stored tree's root over "
        f"all {size} entries.",
    )


def record_audit(engine: Engine, report: AuditReport, at: dt.datetime | None = None) -> None:
    """Keep an audit's verdict in ``log_meta`` (``last_audit``), for ``last_audit``.

    Raises whatever the database raises.
    """
    first = report.first
    verdict = {
        "ok": report.ok,
        "size": report.size,
        "at": (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "problems": len(report.problems),
        "first": None if first is None else str(first),
        "seq": None if first is None else first.seq,
    }
    with write_transaction(engine) as conn:
        _upsert(
            conn,
            tables.log_meta,
            [{"key": LAST_AUDIT_KEY, "value": json.dumps(verdict, sort_keys=True)}],
            ["key"],
        )


def last_audit(engine: Engine) -> dict[str, Any] | None:
    """The verdict ``record_audit`` kept (``ok``, ``size``, ``at``, ``problems``, ``first``,
    ``seq``), or None if no audit was recorded. Raises whatever the database raises."""
    with read_transaction(engine) as conn:
        value = conn.execute(
            select(tables.log_meta.c.value).where(tables.log_meta.c.key == LAST_AUDIT_KEY)
        ).scalar()
    if value is None:
        return None
    try:
        verdict = json.loads(str(value))
    except ValueError:
        return {"ok": False, "first": "the recorded audit verdict is unreadable"}
    return verdict if isinstance(verdict, dict) else None
