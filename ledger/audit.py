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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from ledger import gcpause, merkle, sigcheck, tables
from ledger.checkpoint import open_checkpoint, parse_verifier_key
from ledger.errors import LedgerError
from ledger.protocol import parse_strict
from ledger.rules import Prepared, admit, prepare_split, split_envelope
from ledger.state import MemoryState, StagedState
from ledger.store import event_subject, lot_row, lots_named, read_transaction

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

    def __init__(self, row: Any) -> None:
        self.row = row
        self.seq = int(row.seq)
        self.event_id = str(row.event_id)
        self.leaf = b""
        #: problems found by ``check``, reported in order when the entry is finished
        self.problems: list[Problem] = []
        self.prepared: Prepared | None = None
        #: the replay stops here: a seq is missing before this entry, its leaf hash column
        #: is wrong, or its bytes are not a canonical event with this id
        self.ends_replay = False


class _Chunk:
    """Entries whose signatures are being checked by the worker (or will be, here)."""

    def __init__(self, entries: list[_Entry], origin: str) -> None:
        self.entries = entries
        self.origin = origin
        #: the seq and signature of every entry whose bytes are a canonical event
        self.seqs = [e.seq for e in entries if e.prepared is not None]
        self.items = [sigcheck.item_of(e.prepared) for e in entries if e.prepared is not None]
        self.pending: sigcheck.Pending | None = None

    def submit(self) -> None:
        """Hand the signatures to the worker (if it can take them)."""
        self.pending = sigcheck.CHECKER.submit(self.origin, self.items)

    def bad_signatures(self) -> set[int]:
        """The seqs whose signature does not verify: the worker finds the first, the rest
        (a damaged log only) are checked here."""
        first = sigcheck.result(self.pending, self.origin, self.items)
        bad: set[int] = set()
        while first is not None:
            bad.add(self.seqs[first])
            rest = sigcheck.first_bad(self.origin, self.items[first + 1 :])
            first = None if rest is None else first + 1 + rest
        return bad


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

        The signatures of a chunk go to the signature worker (``ledger.sigcheck``) once it
        is read and checked; it is finished (signatures, columns, replay) while the worker
        checks the next one. Problems are reported in entry order all the same.
        """
        t = tables.log
        total = int(self.conn.execute(select(func.count()).select_from(t)).scalar_one())
        expected, after = 0, -1
        waiting: _Chunk | None = None
        while True:
            rows = self.conn.execute(
                select(
                    t.c.seq,
                    t.c.event_id,
                    t.c.leaf_hash,
                    t.c.envelope,
                    t.c.time,
                    t.c.type,
                    t.c.actor,
                    t.c.subject,
                )
                .where(t.c.seq > after)
                .order_by(t.c.seq)
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            checked = []
            for row in rows:
                entry = _Entry(row)
                if row.seq != expected:
                    entry.problems.append(
                        Problem(
                            "entry",
                            f"the log has no entry {expected}: seq jumps from {expected - 1} "
                            f"to {row.seq}",
                            expected,
                        )
                    )
                    entry.ends_replay = True
                    self.tree_usable = False
                    expected = row.seq
                self.check(entry)
                checked.append(entry)
                expected += 1
            if self.tree_usable:
                merkle.append_leaves(self.tree, self.leaf_count, [e.leaf for e in checked])
                self.leaf_count += len(checked)
            after = rows[-1].seq
            chunk = _Chunk(checked, self.origin)
            if waiting is None:
                chunk.submit()
            else:
                # the worker has been checking the waiting chunk while this one was read:
                # take its answer, give it this chunk, and replay the waiting one meanwhile
                bad = waiting.bad_signatures()
                chunk.submit()
                self.finish(waiting, bad, total)
            waiting = chunk
        if waiting is not None:
            self.finish(waiting, waiting.bad_signatures(), total)

    def check(self, entry: _Entry) -> None:
        """What an entry's stored bytes alone can say: leaf hash, canonical form, id."""
        row = entry.row
        data = bytes(row.envelope)
        seq, stored_id = entry.seq, entry.event_id
        entry.leaf = merkle.leaf_hash(data)

        def bad(detail: str) -> None:
            entry.problems.append(Problem("entry", detail, seq, stored_id))
            entry.ends_replay = True

        if entry.leaf != bytes(row.leaf_hash):
            entry.problems.append(
                Problem(
                    "entry",
                    f"the stored leaf hash {bytes(row.leaf_hash).hex()} is not the hash of the "
                    f"stored envelope, {entry.leaf.hex()}",
                    seq,
                    stored_id,
                )
            )
            entry.ends_replay = True  # the entry is still checked
        try:
            body, sig = split_envelope(parse_strict(data))
        except LedgerError as e:
            return bad(f"the stored envelope is not a valid event: {e.detail}")
        try:
            # the canonical body and envelope, computed once (the envelope's canonical
            # bytes are the body's and the signature's, as RFC 8785 composes objects)
            prepared = prepare_split(body, sig)
        except LedgerError as e:
            return bad(f"the stored envelope cannot be canonicalised: {e.detail}")
        if prepared.leaf_data != data:
            return bad("the stored envelope is not in canonical (RFC 8785) form")
        if prepared.event_id != stored_id:
            return bad(f"the body hashes to {prepared.event_id}, not to the stored event id")
        entry.prepared = prepared

    def finish(self, chunk: _Chunk, bad_signature: set[int], total: int) -> None:
        """Signatures (``bad_signature``: the seqs that fail), columns and the replay,
        entry by entry."""
        for entry in chunk.entries:
            for found in entry.problems:
                self.problem(found.kind, found.detail, found.seq, found.event_id)
            if entry.ends_replay:
                self.replaying = False
            prepared = entry.prepared
            if prepared is None:
                continue
            seq, stored_id = entry.seq, entry.event_id
            if entry.seq in bad_signature:
                self.problem(
                    "entry",
                    f"the signature does not verify for the origin {self.origin!r}",
                    seq,
                    stored_id,
                )
                self.replaying = False
                continue
            # checked for this origin: the replay's admit does not verify it again
            prepared = dataclasses.replace(prepared, verified_for=self.origin)
            body, row = prepared.body, entry.row
            columns = {
                "time": body.get("time"),
                "type": body.get("type"),
                "actor": body.get("actor"),
                "subject": event_subject(body) if isinstance(body.get("type"), str) else None,
            }
            wrong = [name for name, value in columns.items() if getattr(row, name) != value]
            if wrong:
                name = wrong[0]
                self.problem(
                    "entry",
                    f"the {name} column says {getattr(row, name)!r}, the body {columns[name]!r}",
                    seq,
                    stored_id,
                )
                self.replaying = False
                continue
            if seq == 0:
                self.seq0_key = prepared.signature["key"]
            if self.replaying:
                self.replay(seq, stored_id, prepared)
        self.report.size += len(chunk.entries)
        gcpause.collect_young()
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
        matched = 0
        for row in self.conn.execute(
            select(t.c.level, t.c.idx, t.c.hash).order_by(t.c.level, t.c.idx)
        ):
            self.report.tree_nodes += 1
            level, idx, stored = int(row.level), int(row.idx), bytes(row.hash)
            expected = self.tree.hashes.get((level, idx))
            first_leaf = idx << level
            where = f"the tree node (level {level}, index {idx}) over entries {first_leaf}.."
            where += f"{first_leaf + (1 << level) - 1}"
            if expected is None:
                self.problem("tree", f"{where} should not exist: the log is shorter", first_leaf)
            elif expected != stored:
                self.problem(
                    "tree",
                    f"{where} is {stored.hex()}, but the entries give {expected.hex()}",
                    first_leaf,
                )
            else:
                matched += 1
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

    def projections(self) -> None:
        if not self.replaying:
            self.problem("projection", "the projections were not compared: the replay stopped")
            return
        self.report.projections_compared = True
        st, conn = self.state, self.conn
        a, s, lt = tables.actors, tables.sites, tables.lots
        self.compare(
            "actor",
            {
                r.id: (r.status, bool(r.is_registrar), r.registered_seq, r.doc)
                for r in conn.execute(
                    select(a.c.id, a.c.status, a.c.is_registrar, a.c.registered_seq, a.c.doc)
                )
            },
            {
                x.id: (x.status, "registrar" in x.roles, x.registered_seq, _doc(x))
                for x in st.actors.values()
            },
        )
        self.compare(
            "site",
            {
                r.id: (r.operator, r.registered_seq, r.doc)
                for r in conn.execute(select(s.c.id, s.c.operator, s.c.registered_seq, s.c.doc))
            },
            {x.id: (x.operator, x.registered_seq, _doc(x)) for x in st.sites.values()},
        )
        self.compare(
            "lot",
            {r.lot: _normal_lot_row(r._asdict()) for r in conn.execute(select(lt))},
            {x.lot: lot_row(x) for x in st.lots.values()},
        )
        self.compare(
            "key",
            {str(r.key): str(r.actor) for r in conn.execute(select(tables.actor_keys))},
            dict(st.keys),
        )
        self.compare(
            "lot prefix",
            {str(r.prefix): str(r.actor) for r in conn.execute(select(tables.prefixes))},
            dict(st.prefixes),
        )
        ls = tables.lot_sites
        self.compare(
            "lot origin",
            {(r.site, r.lot): r.created_seq for r in conn.execute(select(ls))},
            {(site, x.lot): x.created_seq for x in st.lots.values() for site in x.origins},
        )
        el = tables.event_lots
        self.compare(
            "lot chain link",
            {(r.lot, r.seq): r.event_id for r in conn.execute(select(el))},
            {(lot, seq): eid for lot, seq, eid in self.event_lots},
        )


def _doc(model: Any) -> dict[str, Any]:
    doc: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return doc


def _normal_lot_row(row: dict[str, Any]) -> dict[str, Any]:
    row["hold"] = bool(row["hold"])
    return row


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
    with gcpause.paused(), read_transaction(engine) as conn:
        run = _Audit(conn, origin, verifier_key, registrar_key, progress)
        run.entries()
        run.tree_nodes()
        run.checkpoints()
        run.meta()
        run.projections()
    report = run.report
    report.ok = not report.problems
    return report
