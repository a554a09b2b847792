"""The audit: replay the whole stored log and check every table against it.

The log's envelope bytes are the truth. For every entry, in order, the audit checks that
the stored bytes are canonical JSON, that the event id, the leaf hash and the other columns
are what the bytes say, that the signature verifies for this log's origin and that the rules
accept the event at that position (replaying them from nothing, with no clock); that ``seq``
runs from 0 without gaps. Then that the stored Merkle tree nodes are exactly those
recomputed from the leaves, that every stored checkpoint opens with the log's key and has
the recomputed root of its size, and that the projection tables equal a fresh replay.

It reads one snapshot (one read transaction) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Text, cast, func, select

from ledger import gcpause, merkle, sigcheck, tables
from ledger.checkpoint import open_checkpoint, parse_verifier_key
from ledger.errors import LedgerError
from ledger.rules import Prepared, admit
from ledger.state import MemoryState, StagedState
from ledger.store import doc_text, event_subject, lot_row, lots_named, read_transaction

CHUNK = 1000
MAX_PROBLEMS = 100

#: called as progress(entries checked, entries in the log)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One thing the audit found wrong, with the entry (or tree position) it concerns.

    ``kind`` is ``entry``, ``tree``, ``checkpoint``, ``projection`` or ``meta``.
    """

    kind: str
    detail: str
    seq: int | None = None
    event_id: str | None = None

    def __str__(self) -> str:
        where = self.kind
        if self.seq is not None:
            where += f" at seq {self.seq}"
        if self.event_id is not None:
            where += f" (event {self.event_id})"
        return f"{where}: {self.detail}"


@dataclass
class AuditReport:
    """The verdict of an audit: ``ok`` only when nothing at all was found wrong."""

    ok: bool = True
    size: int = 0
    checkpoints: int = 0
    tree_nodes: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False
    projections_compared: bool = False

    @property
    def first(self) -> Problem | None:
        """The first problem found (entries are checked first, in log order)."""
        return self.problems[0] if self.problems else None

    @property
    def first_bad_entry(self) -> Problem | None:
        """The first problem about a log entry, naming its seq and event id."""
        return next((p for p in self.problems if p.kind == "entry"), None)

    def summary(self) -> str:
        """One plain paragraph: the verdict and the first problem."""
        if self.ok:
            return (
                f"The log is sound: {self.size} entries, {self.tree_nodes} tree nodes and "
                f"{self.checkpoints} checkpoints check out, and the projections match a replay."
            )
        more = " (and more not listed)" if self.truncated else ""
        return (
            f"The log is NOT sound: {len(self.problems)} problem(s){more}. "
            f"First: {self.problems[0]}."
        )


class _Entry:
    """One stored entry between its checks: what the bytes said, what is left to do."""

    def __init__(self, row: tuple[Any, ...]) -> None:
        seq, event_id, leaf_hash, envelope, *columns = row
        self.seq = int(seq)
        self.event_id = str(event_id)
        self.stored_leaf = bytes(leaf_hash)
        self.data = bytes(envelope)
        #: the time, type, actor and subject columns
        self.columns = columns
        self.leaf = merkle.leaf_hash(self.data)
        #: problems found before the entry is finished, reported in order then
        self.problems: list[Problem] = []
        self.prepared: Prepared | None = None
        #: the replay stops here: a seq is missing before this entry, its leaf hash column
        #: is wrong, or its bytes are not a canonical event with this id
        self.ends_replay = False


class _Chunk:
    """Entries the worker checks whole (the first ``share`` of them) while the previous
    chunk is finished here."""

    def __init__(self, entries: list[_Entry], origin: str, share: int) -> None:
        self.entries = entries
        self.share = min(share, len(entries))
        self.pending = sigcheck.CHECKER.submit_entries(
            origin, [(e.data, e.event_id) for e in entries[: self.share]]
        )

    def sound(self) -> tuple[int, bool]:
        """How many entries, from the first, the worker found sound (``stored_entry_ok``),
        none without a worker; and whether its answer was there before it was asked for
        (the worker had time to spare)."""
        if self.pending is None:
            return 0, False
        ready = self.pending.ready()
        first_bad = self.pending.first_bad()
        return (self.share if first_bad is None else first_bad), ready


def next_share(share: int, ready: bool) -> int:
    """The worker's share of the next chunk: more when its last answer was ready before it
    was needed, fewer when the audit's thread had to wait for it (which then checks the
    rest itself), so that both cores stay busy."""
    step = max(1, CHUNK // 40)
    if ready:
        return min(CHUNK, share + step)
    return max(sigcheck.MIN_BATCH, share - step)


class _Audit:
    """The state of one audit run."""

    def __init__(
        self,
        conn: Connection,
        origin: str,
        verifier_key: str,
        registrar_key: str | None,
        progress: Progress | None,
    ) -> None:
        self.conn = conn
        self.origin = origin
        self.verifier_key = verifier_key
        self.registrar_key = registrar_key
        self.progress = progress
        self.report = AuditReport()
        self.state = MemoryState()
        self.tree = merkle.MemoryHashStore()
        self.leaf_count = 0
        self.replaying = True
        self.tree_usable = True
        self.event_lots: set[tuple[str, int, str]] = set()
        self.seq0_key: str | None = None

    def problem(
        self, kind: str, detail: str, seq: int | None = None, event_id: str | None = None
    ) -> None:
        if len(self.report.problems) >= MAX_PROBLEMS:
            self.report.truncated = True
            return
        self.report.problems.append(Problem(kind, detail, seq, event_id))

    # -- entries -----------------------------------------------------------------------

    def entries(self) -> None:
        """Check every entry in order, a chunk at a time.

        Each chunk goes to the signature worker (``ledger.sigcheck``) as soon as it is read,
        which checks its entries whole (strict JSON, canonical form, id, signature) while
        the previous chunk is finished here (columns and replay). Entries it does not find
        sound, those beyond its share (``next_share``), or all of them without a worker,
        are checked here one by one. Problems are reported in entry order all the same.
        """
        t = tables.log
        total = int(self.conn.execute(select(func.count()).select_from(t)).scalar_one())
        columns = (
            t.c.seq,
            t.c.event_id,
            t.c.leaf_hash,
            t.c.envelope,
            *(t.c[name] for name in _COLUMN_NAMES),
        )
        expected, after = 0, -1
        waiting: _Chunk | None = None
        share = CHUNK
        while True:
            rows = _raw_rows(
                self.conn, select(*columns).where(t.c.seq > after).order_by(t.c.seq).limit(CHUNK)
            )
            if not rows:
                break
            entries = []
            for row in rows:
                entry = _Entry(row)
                if entry.seq != expected:
                    entry.problems.append(
                        Problem(
                            "entry",
                            f"the log has no entry {expected}: seq jumps from {expected - 1} "
                            f"to {entry.seq}",
                            expected,
                        )
                    )
                    entry.ends_replay = True
                    self.tree_usable = False
                    expected = entry.seq
                if entry.leaf != entry.stored_leaf:
                    entry.problems.append(
                        Problem(
                            "entry",
                            f"the stored leaf hash {entry.stored_leaf.hex()} is not the hash of "
                            f"the stored envelope, {entry.leaf.hex()}",
                            entry.seq,
                            entry.event_id,
                        )
                    )
                    entry.ends_replay = True  # the entry is still checked
                entries.append(entry)
                expected += 1
            if self.tree_usable:
                merkle.append_leaves(self.tree, self.leaf_count, [e.leaf for e in entries])
                self.leaf_count += len(entries)
            after = entries[-1].seq
            # the worker takes this chunk as soon as it has answered for the waiting one,
            # which is then finished here meanwhile
            if waiting is None:
                waiting = _Chunk(entries, self.origin, share)
                continue
            sound, ready = waiting.sound()
            if waiting.pending is not None and self.report.size:
                # (not after the first chunk, whose answer nothing could overlap but a read)
                share = next_share(share, ready)
            chunk = _Chunk(entries, self.origin, share)
            self.finish(waiting, sound, total)
            waiting = chunk
        if waiting is not None:
            self.finish(waiting, waiting.sound()[0], total)

    def check(self, entry: _Entry) -> None:
        """What an entry's stored bytes alone can say (``sigcheck.entry_problem``: canonical
        form, id, signature), for an entry the worker did not find sound: sets
        ``entry.prepared`` if nothing is wrong, and notes what is."""
        found = sigcheck.entry_problem(self.origin, entry.data, entry.event_id)
        if isinstance(found, str):
            entry.problems.append(Problem("entry", found, entry.seq, entry.event_id))
            entry.ends_replay = True
            return
        entry.prepared = _prepared_sound(entry, self.origin, *found)

    def finish(self, chunk: _Chunk, sound: int, total: int) -> None:
        """Columns and the replay, entry by entry; the first ``sound`` entries are sound
        (``sigcheck.stored_entry_ok``), the others are checked here first."""
        for index, entry in enumerate(chunk.entries):
            if index < sound:
                envelope = json.loads(entry.data)
                entry.prepared = _prepared_sound(
                    entry, self.origin, envelope["body"], envelope["signature"]
                )
            else:
                self.check(entry)
            for found in entry.problems:
                self.problem(found.kind, found.detail, found.seq, found.event_id)
            if entry.ends_replay:
                self.replaying = False
            prepared = entry.prepared
            if prepared is None:
                continue
            seq, stored_id = entry.seq, entry.event_id
            body = prepared.body
            expected = (
                body.get("time"),
                body.get("type"),
                body.get("actor"),
                event_subject(body) if isinstance(body.get("type"), str) else None,
            )
            for name, have, want in zip(_COLUMN_NAMES, entry.columns, expected, strict=True):
                if have != want:
                    self.problem(
                        "entry",
                        f"the {name} column says {have!r}, the body {want!r}",
                        seq,
                        stored_id,
                    )
                    self.replaying = False
                    break
            else:
                if seq == 0:
                    self.seq0_key = prepared.signature["key"]
                if self.replaying:
                    self.replay(seq, stored_id, prepared)
        self.report.size += len(chunk.entries)
        if self.progress is not None:
            self.progress(self.report.size, total)

    def replay(self, seq: int, event_id: str, envelope: Any) -> None:
        staged = StagedState(self.state)
        try:
            admitted = admit(
                staged, envelope, origin=self.origin, registrar_key=self.registrar_key, now=None
            )
        except LedgerError as e:
            self.problem(
                "entry", f"the rules refuse this event ({e.code}): {e.detail}", seq, event_id
            )
            self.replaying = False
            return
        if admitted.existing is not None:
            self.problem(
                "entry",
                f"this event is already in the log at seq {admitted.existing.seq}",
                seq,
                event_id,
            )
            self.replaying = False
            return
        self.state.apply(staged.changes)
        for record in staged.changes.events:
            for lot in lots_named(record.body):
                self.event_lots.add((lot, record.seq, record.event_id))

    # -- tree and checkpoints ----------------------------------------------------------

    def tree_nodes(self) -> None:
        if not self.tree_usable:
            self.problem("tree", "the tree cannot be recomputed: the log has a gap")
            return
        t = tables.tree_nodes
        hashes = self.tree.hashes
        rows = _raw_rows(
            self.conn, select(t.c.level, t.c.idx, t.c.hash).order_by(t.c.level, t.c.idx)
        )
        self.report.tree_nodes += len(rows)
        matched = 0
        for level, idx, stored in rows:
            expected = hashes.get((level, idx))
            if expected is not None and expected == stored:
                matched += 1
                continue
            first_leaf = idx << level
            where = f"the tree node (level {level}, index {idx}) over entries {first_leaf}.."
            where += f"{first_leaf + (1 << level) - 1}"
            if expected is None:
                self.problem("tree", f"{where} should not exist: the log is shorter", first_leaf)
            else:
                self.problem(
                    "tree",
                    f"{where} is {bytes(stored).hex()}, but the entries give {expected.hex()}",
                    first_leaf,
                )
        if matched != len(self.tree.hashes):
            stored_keys = {
                (int(r.level), int(r.idx)) for r in self.conn.execute(select(t.c.level, t.c.idx))
            }
            missing = sorted(set(self.tree.hashes) - stored_keys)
            if missing:
                level, idx = missing[0]
                self.problem(
                    "tree",
                    f"{len(missing)} tree node(s) are missing, the first (level {level}, "
                    f"index {idx})",
                    idx << level,
                )

    def checkpoints(self) -> None:
        c = tables.checkpoints
        sizes = set()
        for row in self.conn.execute(select(c.c.size, c.c.root, c.c.note).order_by(c.c.size)):
            self.report.checkpoints += 1
            size = int(row.size)
            sizes.add(size)
            where = f"the checkpoint of size {size}"
            try:
                opened = open_checkpoint(str(row.note), self.verifier_key)
            except LedgerError as e:
                self.problem("checkpoint", f"{where} does not open with the log's key: {e.detail}")
                continue
            if opened.origin != self.origin:
                self.problem("checkpoint", f"{where} is for the origin {opened.origin!r}")
            if opened.size != size or opened.root != bytes(row.root):
                self.problem(
                    "checkpoint",
                    f"{where} signs size {opened.size} and root {opened.root.hex()}, but its row "
                    f"says size {size} and root {bytes(row.root).hex()}",
                )
            if size > self.leaf_count:
                self.problem("checkpoint", f"{where} is beyond the log's {self.leaf_count} entries")
            elif self.tree_usable:
                root = merkle.tree_root(self.tree, size)
                if root != opened.root:
                    self.problem(
                        "checkpoint",
                        f"{where} signs the root {opened.root.hex()}, but the entries give "
                        f"{root.hex()}",
                    )
        if self.report.size and self.report.size not in sizes:
            self.problem("checkpoint", f"no checkpoint covers the whole log ({self.report.size})")

    def meta(self) -> None:
        meta = {
            str(k): str(v)
            for k, v in self.conn.execute(select(tables.log_meta.c.key, tables.log_meta.c.value))
        }
        if meta.get("origin", self.origin) != self.origin:
            self.problem("meta", f"log_meta says the origin is {meta['origin']!r}")
        try:
            _, _, public_key = parse_verifier_key(self.verifier_key)
        except LedgerError as e:
            self.problem("meta", f"the verifier key is not usable: {e.detail}")
        else:
            stored = meta.get("log_public_key")
            if stored is not None and stored != public_key.hex():
                self.problem("meta", f"log_meta holds another log public key, {stored}")
        stored_registrar = meta.get("registrar_key")
        if stored_registrar != self.seq0_key:
            self.problem(
                "meta",
                f"log_meta's registrar key is {stored_registrar}, seq 0 is signed by "
                f"{self.seq0_key}",
            )

    # -- projections -------------------------------------------------------------------

    def compare(self, what: str, stored: dict[Any, Any], expected: dict[Any, Any]) -> None:
        if stored == expected:
            return
        for key in sorted(set(stored) | set(expected), key=repr):
            have, want = stored.get(key), expected.get(key)
            if have == want:
                continue
            if have is None:
                self.problem("projection", f"{what} {key!r} is missing from the store")
            elif want is None:
                self.problem("projection", f"{what} {key!r} is in the store but not in the log")
            else:
                self.problem("projection", f"{what} {key!r} differs from a replay of the log")

    def compare_rows(
        self,
        what: str,
        stored: list[tuple[Any, ...]],
        expected: list[tuple[Any, ...]],
        key: int = 1,
        doc: bool = False,
    ) -> None:
        """``compare`` for a table read as rows (tuples whose first ``key`` items are the
        key) and the rows a replay gives. Equal sets of rows are equal tables (keys are
        unique on both sides); otherwise the rows are compared by key, and with ``doc`` the
        last column is JSON text: a stored text that is not the replay's exact text (one
        ``json.dumps`` wrote, or a wrong one) is compared with it as a JSON value."""
        if set(stored) == set(expected):
            return

        def by_key(rows: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
            return {(r[:key] if key > 1 else r[0]): r[key:] for r in rows}

        have, want = by_key(stored), by_key(expected)
        if doc:  # a row whose text is not the replay's is compared again as JSON values
            for k, v in have.items():
                w = want.get(k)
                if w is not None and w != v:
                    have[k] = (*v[:-1], _json_value(v[-1]))
                    want[k] = (*w[:-1], json.loads(w[-1]))
        self.compare(what, have, want)

    def projections(self) -> None:
        if not self.replaying:
            self.problem("projection", "the projections were not compared: the replay stopped")
            return
        self.report.projections_compared = True
        st, conn = self.state, self.conn
        a, s, lt, ls, el = (
            tables.actors,
            tables.sites,
            tables.lots,
            tables.lot_sites,
            tables.event_lots,
        )
        self.compare_rows(
            "actor",
            _raw_rows(
                conn,
                select(a.c.id, a.c.status, a.c.is_registrar, a.c.registered_seq, _text(a.c.doc)),
            ),
            [
                (x.id, x.status, "registrar" in x.roles, x.registered_seq, doc_text(x).text)
                for x in st.actors.values()
            ],
            doc=True,
        )
        self.compare_rows(
            "site",
            _raw_rows(conn, select(s.c.id, s.c.operator, s.c.registered_seq, _text(s.c.doc))),
            [(x.id, x.operator, x.registered_seq, doc_text(x).text) for x in st.sites.values()],
            doc=True,
        )
        self.compare_rows(
            "lot",
            _raw_rows(conn, select(*(lt.c[name] for name in _LOT_COLUMNS), _text(lt.c.doc))),
            [_lot_tuple(lot_row(x)) for x in st.lots.values()],
            doc=True,
        )
        self.compare_rows("key", _raw_rows(conn, select(tables.actor_keys)), list(st.keys.items()))
        self.compare_rows(
            "lot prefix", _raw_rows(conn, select(tables.prefixes)), list(st.prefixes.items())
        )
        self.compare_rows(
            "lot origin",
            _raw_rows(conn, select(ls.c.site, ls.c.lot, ls.c.created_seq)),
            [(site, x.lot, x.created_seq) for x in st.lots.values() for site in x.origins],
            key=2,
        )
        self.compare_rows(
            "lot chain link",
            _raw_rows(conn, select(el.c.lot, el.c.seq, el.c.event_id)),
            list(self.event_lots),
            key=2,
        )
        self.event_id_index()

    def event_id_index(self) -> None:
        """The event-id index (``ledger.tables``): each entry's id once, in either part,
        with its seq."""
        expected = {e.event_id: e.seq for e in self.state.events.values()}
        indexed: dict[str, int] = {}
        for table in (tables.event_ids, tables.recent_event_ids):
            for key, seq in _raw_rows(self.conn, select(table.c.event_id, table.c.seq)):
                event = bytes(key).hex()
                if event in indexed:
                    self.problem(
                        "projection",
                        f"event id index entry {event!r} is in both event_ids and recent_event_ids",
                    )
                    if indexed[event] != expected.get(event):
                        continue  # the first copy's wrong seq is compared (and named) below
                indexed[event] = int(seq)
        self.compare_rows("event id index entry", list(indexed.items()), list(expected.items()))


#: the log's columns that repeat what the body says
_COLUMN_NAMES = ("time", "type", "actor", "subject")


def _prepared_sound(
    entry: _Entry, origin: str, body: dict[str, Any], signature: dict[str, str]
) -> Prepared:
    """The prepared form of a sound entry (``sigcheck.entry_problem`` found nothing wrong):
    its bytes are the canonical envelope of ``body`` and ``signature``, hashing to its id,
    with a signature verified for ``origin``. (The entries the worker found sound are read
    with ``json.loads``, which reads strict JSON exactly as ``parse_strict`` does.)"""
    return Prepared(
        body,
        signature,
        sigcheck.canonical_body(entry.data),
        bytes.fromhex(entry.event_id),
        entry.event_id,
        entry.data,
        verified_for=origin,
    )


#: the lots columns but ``doc``, in the order they are compared
_LOT_COLUMNS = ("lot", "custodian", "status", "risk", "hold", "origins", "created_seq")


def _lot_tuple(row: dict[str, Any]) -> tuple[Any, ...]:
    return (*(row[name] for name in _LOT_COLUMNS), row["doc"].text)


#: each projection's JSON doc read as its stored text (not decoded); made once, as
#: SQLAlchemy's cast expressions hold reference cycles
_DOC_TEXT = {
    table.name: cast(table.c.doc, Text) for table in (tables.actors, tables.sites, tables.lots)
}


def _text(column: Any) -> Any:
    """A projection's JSON doc column read as its stored text (not decoded)."""
    return _DOC_TEXT[column.table.name]


def _json_value(text: Any) -> Any:
    """A stored doc's JSON value, or the text itself where it is not JSON (it then differs)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _raw_rows(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
    """The rows of a parameterless ``select`` as the driver gives them (plain tuples, no
    SQLAlchemy row or type processing), read in ``conn``'s transaction."""
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def audit(
    engine: Engine,
    *,
    origin: str,
    verifier_key: str,
    registrar_key: str | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Replay the whole log in ``engine`` and check every stored table against it.

    ``verifier_key`` is the log's note verifier key; ``registrar_key``, if given, must be
    the key of seq 0. Never raises for a damaged log: everything wrong is a Problem in the
    report (at most 100). Raises only what the database raises.
    """
    # the replayed state makes no reference cycles: it is freed (by reference counting)
    # before the collector resumes, which then has nothing of it left to walk
    with gcpause.paused(), read_transaction(engine) as conn:
        report = _run(_Audit(conn, origin, verifier_key, registrar_key, progress))
    report.ok = not report.problems
    return report


def _run(run: _Audit) -> AuditReport:
    run.entries()
    run.tree_nodes()
    run.checkpoints()
    run.meta()
    run.projections()
    return run.report
