"""The offline outbox: signed envelopes kept in a local SQLite file until the log has them.

A cooperative treasurer with a connection a few hours a week signs a whole week of work
offline; every signed envelope is written here first (``pending``), then sent in order by
:func:`sync`, and marked ``sent`` with its receipt, or ``failed`` with the server's code and
detail. Nothing is ever deleted behind the user's back: only ``goldtrail outbox drop ID``
removes an event.

Chaining offline. An event about an existing lot names the lot's head in ``prev``. The
outbox works it out: the latest *pending* event naming the lot, else the lot's head as last
seen (a ``GET /v1/lots/{lot}`` while online, or the last event of ours the log accepted),
kept in a small cache. When neither exists, the user is told to run ``goldtrail lot show``
once while online. The pending offer (for accept, reject, cancel) and the open flags (for
resolve) are projected the same way; the outputs of a pending ``lot.processed`` inherit the
flags of its inputs as they stood just before it (PROTOCOL.md section 5, Flags). Flags the
server derives from data this machine lacks (a site's assessments, actors' countries, a
weighed mass) are never guessed: the view says its flags may be incomplete.

Safety of re-sending. The server answers an envelope already logged with its original
receipt, so a sync killed between sending and marking just sends the same envelopes again
and marks them then: nothing is lost and nothing is logged twice.

Refused batches. A batch is all or nothing, and the refusal names the failing ``index``:
the events before it are sent again as a smaller batch, the failing event is marked
``failed``, later events naming one of its lots (directly or through events that depend
on it) stay ``pending`` and are reported as blocked, and every other event goes on.

The database uses WAL with ``synchronous=FULL``, so a power cut never loses an event that
was reported saved.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from clients.sdk import ApiError, Client, ClientError, LogInfo, Receipt, ServerUnreachable
from ledger.events import FLAG_CLASS, FlagCode
from ledger.protocol import event_id as compute_event_id
from ledger.rules import MERCURY_WORST

__all__ = [
    "DEFAULT_BATCH",
    "ChainState",
    "Outbox",
    "OutboxError",
    "OutboxEvent",
    "SyncReport",
    "default_outbox_path",
    "lots_named",
    "sync",
]

DEFAULT_BATCH = 100
MAX_BATCH = 1000
STATUSES = ("pending", "sent", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    origin       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    type         TEXT NOT NULL,
    lots         TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    queued_at    TEXT NOT NULL,
    sent_at      TEXT,
    seq          INTEGER,
    receipt      TEXT,
    error_status INTEGER,
    error_code   TEXT,
    error_detail TEXT
);
CREATE INDEX IF NOT EXISTS events_status ON events (origin, status, id);
CREATE TABLE IF NOT EXISTS lot_cache (
    origin   TEXT NOT NULL,
    lot      TEXT NOT NULL,
    view     TEXT NOT NULL,
    known_at TEXT NOT NULL,
    PRIMARY KEY (origin, lot)
);
CREATE TABLE IF NOT EXISTS servers (
    server     TEXT PRIMARY KEY,
    origin     TEXT NOT NULL,
    info       TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox cannot do what was asked; ``detail`` is one sentence, ``code`` a machine code."""

    def __init__(self, detail: str, code: str = "outbox") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code

    def __str__(self) -> str:
        return f"{self.detail} ({self.code})"


def default_outbox_path() -> Path:
    """``~/.goldtrail/outbox.db``."""
    return Path.home() / ".goldtrail" / "outbox.db"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lots_named(body: dict[str, Any]) -> list[str]:
    """Every lot an event body touches: ``lot``, ``inputs[].lot`` and ``outputs[].lot``."""
    lots: list[str] = []
    if isinstance(body.get("lot"), str):
        lots.append(body["lot"])
    for key in ("inputs", "outputs"):
        for item in body.get(key, []) or []:
            if isinstance(item, dict) and isinstance(item.get("lot"), str):
                lots.append(item["lot"])
    return list(dict.fromkeys(lots))


def _input_lots(body: dict[str, Any]) -> list[str]:
    """The input lots of a ``lot.processed`` body (none for any other event)."""
    if body.get("type") != "lot.processed":
        return []
    items = body.get("inputs") or []
    return [i["lot"] for i in items if isinstance(i, dict) and isinstance(i.get("lot"), str)]


@dataclass(frozen=True)
class OutboxEvent:
    """One queued envelope and what became of it."""

    id: int
    event_id: str
    origin: str
    actor: str
    type: str
    lots: list[str]
    envelope: dict[str, Any]
    status: str
    queued_at: str
    sent_at: str | None = None
    seq: int | None = None
    receipt: dict[str, Any] | None = None
    error_status: int | None = None
    error_code: str | None = None
    error_detail: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The signed body."""
        body: dict[str, Any] = self.envelope["body"]
        return body

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> OutboxEvent:
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            origin=row["origin"],
            actor=row["actor"],
            type=row["type"],
            lots=json.loads(row["lots"]),
            envelope=json.loads(row["envelope"]),
            status=row["status"],
            queued_at=row["queued_at"],
            sent_at=row["sent_at"],
            seq=row["seq"],
            receipt=json.loads(row["receipt"]) if row["receipt"] else None,
            error_status=row["error_status"],
            error_code=row["error_code"],
            error_detail=row["error_detail"],
        )


@dataclass
class ChainState:
    """What the next event about a lot must name, as far as this machine knows.

    ``head`` is None when nothing is known about the lot. ``offer`` is the pending offer's
    event id; ``flags`` the lot's flags (``{id, code, class, status, outcome?}``), and
    ``flags_unsure`` None when they are all the flags the server will show, else why they
    may not be, in a few words (an event whose flags the server derives from data this
    machine lacks); ``pending`` the number of queued events on the lot that the log does
    not have yet.
    """

    lot: str
    head: str | None
    offer: str | None = None
    offer_to: str | None = None
    status: str | None = None
    custodian: str | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    flags_unsure: str | None = None
    pending: int = 0
    source: str = "unknown"


#: events for which the server may derive flags from data a lot view does not hold (the
#: site's assessments, the actors' countries, the lot's mass and fineness as it moved on)
_DERIVES_UNKNOWN_FLAGS = frozenset(
    {"lot.registered", "lot.transfer_offered", "lot.transfer_accepted", "lot.assayed"}
)


def _flag_class(code: Any) -> str | None:
    """The class PROTOCOL.md section 5 gives a flag code (None for a code it does not have)."""
    try:
        return FLAG_CLASS[FlagCode(code)]
    except ValueError:
        return None


def _new_flag(flag_id: str, code: Any) -> dict[str, Any]:
    """An open flag as ``GET /v1/lots/{lot}`` shows it."""
    flag: dict[str, Any] = {"id": flag_id, "code": code}
    if _flag_class(code) is not None:
        flag["class"] = _flag_class(code)
    flag["status"] = "open"
    return flag


def _inherited_flags(inputs: list[dict[str, Any]], eid: str, process: Any) -> list[dict[str, Any]]:
    """The flags of every output of a ``lot.processed`` (PROTOCOL.md section 5, Flags): every
    flag open on an input, and every hold flag resolved as remediated, under the same id
    (open wins over resolved), then the flag the process raises. The same walk as
    ``ledger.rules._lot_processed``, over views instead of ``FlagState``."""
    inherited: dict[str, dict[str, Any]] = {}
    for view in inputs:
        for flag in view.get("flags") or []:
            # (a flag cached by an older client may lack its class: the code gives it)
            hold = (flag.get("class") or _flag_class(flag.get("code"))) == "hold"
            keep = flag.get("status") == "open" or (hold and flag.get("outcome") == "remediated")
            if not keep:
                continue
            seen = inherited.get(flag["id"])
            if seen is None or (seen.get("status") != "open" and flag.get("status") == "open"):
                inherited[flag["id"]] = copy.deepcopy(flag)
    if process in MERCURY_WORST:
        code = "mercury_worst_practice"
        inherited[f"{eid}/{code}"] = _new_flag(f"{eid}/{code}", code)
    return list(inherited.values())


def _project(
    view: dict[str, Any] | None,
    lot: str,
    body: dict[str, Any],
    eid: str,
    inputs: list[dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """A lot view moved on by one event about it (the fields clients chain on, and flags).

    ``inputs``: for an output of ``lot.processed``, the views of its inputs just before the
    event (None for an input this machine knows nothing about), whose flags it inherits.
    ``flags_unsure`` is set (with why) when the server may have flags this view lacks.
    """
    kind = body.get("type")
    creates = kind == "lot.registered" or (
        kind == "lot.processed" and any(item.get("lot") == lot for item in body.get("outputs", []))
    )
    out = (
        copy.deepcopy(view)
        if view is not None
        else {
            "lot": lot,
            "status": "active",
            "custodian": body.get("actor"),
            "offer": None,
            "flags": [],
        }
    )
    out["head"] = eid
    if view is None and not creates:
        out["flags_unsure"] = f"lot {lot} was not seen on this machine before event {eid[:12]}"
    elif kind in _DERIVES_UNKNOWN_FLAGS:
        out["flags_unsure"] = (
            f"the server may derive flags from {kind} {eid[:12]}, with data this machine lacks"
        )
    if kind == "lot.transfer_offered":
        out["offer"] = {"id": eid, "to": body.get("to"), "mass_mg": body.get("mass_mg")}
        out["status"] = "offered"
    elif kind == "lot.transfer_accepted":
        out["offer"], out["status"], out["custodian"] = None, "active", body.get("actor")
    elif kind in ("lot.transfer_rejected", "lot.transfer_cancelled"):
        out["offer"], out["status"] = None, "active"
    elif kind == "lot.flagged":
        flags = list(out.get("flags") or [])
        flags.append(_new_flag(f"{eid}/{body.get('code')}", body.get("code")))
        out["flags"] = flags
    elif kind == "lot.flag_resolved":
        for flag in out.get("flags") or []:
            if flag.get("id") == body.get("flag"):
                flag["status"] = "resolved"
                flag["outcome"] = body.get("outcome")
    elif kind == "lot.processed":
        if any(item.get("lot") == lot for item in body.get("inputs", [])):
            out["status"] = "consumed"
        else:
            out.update({"status": "active", "custodian": body.get("actor"), "offer": None})
            known = [v for v in inputs or [] if v is not None]
            out["flags"] = _inherited_flags(known, eid, body.get("process"))
            out.pop("flags_unsure", None)
            unsure = [v.get("flags_unsure") for v in known if v.get("flags_unsure")]
            if inputs is None or len(known) < len(inputs):
                unsure.append(f"an input of lot.processed {eid[:12]} is not known on this machine")
            if unsure:
                out["flags_unsure"] = str(unsure[0])
    return out


class Outbox:
    """The outbox database (``~/.goldtrail/outbox.db`` by default)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"cannot open the outbox {path}: {e}") from e
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise OutboxError(f"{path} is not a goldtrail outbox database: {e}") from e
        with contextlib.suppress(OSError):
            path.chmod(0o600)
        self._depth = 0

    # -- lifecycle

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``: other writers wait); nests."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- what this machine knows about servers and lots

    def remember_server(self, server: str, info: LogInfo) -> None:
        """Cache ``GET /v1/log`` of a server (its origin is needed to sign offline)."""
        self._db.execute(
            "INSERT INTO servers (server, origin, info, fetched_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (server) DO UPDATE SET origin = excluded.origin, info = excluded.info, "
            "fetched_at = excluded.fetched_at",
            (server.rstrip("/"), info["origin"], json.dumps(info), _now()),
        )

    def server_info(self, server: str) -> dict[str, Any] | None:
        """The cached ``GET /v1/log`` answer of a server, or None."""
        row = self._db.execute(
            "SELECT info FROM servers WHERE server = ?", (server.rstrip("/"),)
        ).fetchone()
        return json.loads(row["info"]) if row else None

    def remember_lot(self, origin: str, view: dict[str, Any]) -> None:
        """Cache a lot's state as the server showed it (its head, offer and flags)."""
        self._db.execute(
            "INSERT INTO lot_cache (origin, lot, view, known_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (origin, lot) DO UPDATE SET view = excluded.view, "
            "known_at = excluded.known_at",
            (origin, view["lot"], json.dumps(view), _now()),
        )

    def cached_lot(self, origin: str, lot: str) -> dict[str, Any] | None:
        """The lot's state as last seen (from the server, or moved on by our sent events)."""
        row = self._db.execute(
            "SELECT view FROM lot_cache WHERE origin = ? AND lot = ?", (origin, lot)
        ).fetchone()
        return json.loads(row["view"]) if row else None

    # -- the queue

    def enqueue(self, envelope: dict[str, Any], origin: str) -> OutboxEvent:
        """Queue a signed envelope as ``pending``; queuing the same event twice is a no-op."""
        body = envelope["body"]
        eid = compute_event_id(body)
        with self.transaction():
            existing = self.find(eid)
            if existing is not None:
                return existing
            cursor = self._db.execute(
                "INSERT INTO events (event_id, origin, actor, type, lots, envelope, status, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    eid,
                    origin,
                    body["actor"],
                    body["type"],
                    json.dumps(lots_named(body)),
                    json.dumps(envelope, ensure_ascii=False),
                    _now(),
                ),
            )
            assert cursor.lastrowid is not None
            return self.get(cursor.lastrowid)

    def get(self, outbox_id: int) -> OutboxEvent:
        """The event with this outbox id; raises OutboxError if there is none."""
        row = self._db.execute("SELECT * FROM events WHERE id = ?", (outbox_id,)).fetchone()
        if row is None:
            raise OutboxError(f"there is no event #{outbox_id} in the outbox", "not_found")
        return OutboxEvent._from_row(row)

    def find(self, event_id: str) -> OutboxEvent | None:
        """The queued event with this event id, or None."""
        row = self._db.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return OutboxEvent._from_row(row) if row else None

    def events(
        self, statuses: Iterable[str] = STATUSES, origin: str | None = None
    ) -> list[OutboxEvent]:
        """Queued events with these statuses (and origin), oldest first."""
        wanted = list(statuses)
        query = f"SELECT * FROM events WHERE status IN ({','.join('?' * len(wanted))})"
        args: list[Any] = list(wanted)
        if origin is not None:
            query += " AND origin = ?"
            args.append(origin)
        rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [OutboxEvent._from_row(r) for r in rows]

    def pending(self, origin: str | None = None) -> list[OutboxEvent]:
        """Events still to send, in the order they were queued."""
        return self.events(("pending",), origin)

    def counts(self, origin: str | None = None) -> dict[str, int]:
        """How many events are pending, sent and failed."""
        query = "SELECT status, COUNT(*) AS n FROM events"
        args: list[Any] = []
        if origin is not None:
            query += " WHERE origin = ?"
            args.append(origin)
        rows = self._db.execute(query + " GROUP BY status", args).fetchall()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    def mark_sent(self, items: list[tuple[OutboxEvent, Receipt]]) -> None:
        """Mark events sent with their receipts, in one transaction, and move the lot cache on."""
        with self.transaction():
            now = _now()
            for event, receipt in items:
                self._db.execute(
                    "UPDATE events SET status = 'sent', sent_at = ?, seq = ?, receipt = ?, "
                    "error_status = NULL, error_code = NULL, error_detail = NULL WHERE id = ?",
                    (now, receipt.get("seq"), json.dumps(receipt), event.id),
                )
                # the inputs as they stood before the event, for its outputs' flags
                inputs = [self.cached_lot(event.origin, name) for name in _input_lots(event.body)]
                for lot in event.lots:
                    view = _project(
                        self.cached_lot(event.origin, lot), lot, event.body, event.event_id, inputs
                    )
                    self.remember_lot(event.origin, view)

    def mark_failed(self, event: OutboxEvent, error: ApiError) -> OutboxEvent:
        """Mark an event refused by the server, keeping its code and detail."""
        self._db.execute(
            "UPDATE events SET status = 'failed', error_status = ?, error_code = ?, "
            "error_detail = ? WHERE id = ?",
            (error.status, error.code, error.detail, event.id),
        )
        return self.get(event.id)

    def retry(self, outbox_id: int) -> OutboxEvent:
        """Put a failed event back in the queue (after what refused it was fixed)."""
        event = self.get(outbox_id)
        if event.status != "failed":
            raise OutboxError(f"event #{outbox_id} is {event.status}, not failed", "not_failed")
        self._db.execute(
            "UPDATE events SET status = 'pending', error_status = NULL, error_code = NULL, "
            "error_detail = NULL WHERE id = ?",
            (outbox_id,),
        )
        return self.get(outbox_id)

    def drop(self, outbox_id: int) -> OutboxEvent:
        """Delete a pending or failed event for good (the user decided it); returns it."""
        event = self.get(outbox_id)
        if event.status == "sent":
            raise OutboxError(
                f"event #{outbox_id} is already in the log (seq {event.seq}); the log is "
                "append-only, so there is nothing to drop",
                "already_sent",
            )
        self._db.execute("DELETE FROM events WHERE id = ?", (outbox_id,))
        return event

    def forget(self, outbox_id: int) -> None:
        """Delete an event the server refused while the user was watching (internal)."""
        self._db.execute("DELETE FROM events WHERE id = ? AND status != 'sent'", (outbox_id,))

    # -- chains

    def failed_on(self, origin: str, lot: str) -> OutboxEvent | None:
        """The refused event holding ``lot`` back: one naming it, or one that a pending event
        naming it builds on (as sync holds them back); new events on it would be built on
        sand."""
        held: dict[str, OutboxEvent] = {}
        for event in self.events(("pending", "failed"), origin):
            if event.status == "failed":
                root: OutboxEvent | None = event
            else:
                root = next((held[name] for name in event.lots if name in held), None)
            if root is not None:
                for name in event.lots:
                    held.setdefault(name, root)
        return held.get(lot)

    def _projected(
        self,
        origin: str,
        lot: str,
        view: dict[str, Any] | None,
        queue: list[OutboxEvent],
        before: int | None = None,
    ) -> tuple[dict[str, Any] | None, list[OutboxEvent]]:
        """``view`` moved on by the events of ``queue`` on the lot (those queued before the
        outbox id ``before``, if given); returns the view and the events applied. An output
        of a pending ``lot.processed`` is built from its inputs as they stood just before
        it, themselves projected the same way."""
        pending = [e for e in queue if lot in e.lots and (before is None or e.id < before)]
        if view is not None and pending:
            # Pending events the server already has (a crash between send and mark) count once.
            ids = [e.event_id for e in pending]
            if view.get("head") in ids:
                pending = pending[ids.index(view["head"]) + 1 :]
        for event in pending:
            inputs: list[dict[str, Any] | None] | None = None
            if event.type == "lot.processed" and lot not in _input_lots(event.body):
                inputs = [
                    self._projected(origin, name, self.cached_lot(origin, name), queue, event.id)[0]
                    for name in _input_lots(event.body)
                ]
            view = _project(view, lot, event.body, event.event_id, inputs)
        return view, pending

    def chain(self, origin: str, lot: str, server_view: dict[str, Any] | None = None) -> ChainState:
        """Where the lot's chain stands: the server's view (or the cache) plus pending events.

        Pass ``server_view`` when just fetched from the server (it is cached); offline the
        cache is used.
        """
        view = server_view
        source = "server"
        if view is not None:
            self.remember_lot(origin, view)
        else:
            view = self.cached_lot(origin, lot)
            source = "cache" if view is not None else "unknown"
        view, pending = self._projected(origin, lot, view, self.pending(origin))
        if pending:
            source = "outbox"
        if view is None:
            return ChainState(lot, None)
        offer = view.get("offer") or None
        return ChainState(
            lot=lot,
            head=view.get("head"),
            offer=offer.get("id") if isinstance(offer, dict) else None,
            offer_to=offer.get("to") if isinstance(offer, dict) else None,
            status=view.get("status"),
            custodian=view.get("custodian"),
            flags=list(view.get("flags") or []),
            flags_unsure=view.get("flags_unsure"),
            pending=len(pending),
            source=source,
        )


# ---------------------------------------------------------------------------
# Sync


@dataclass
class SyncReport:
    """What a sync did: events sent and refused, events held back, and why it stopped."""

    sent: list[OutboxEvent] = field(default_factory=list)
    failed: list[OutboxEvent] = field(default_factory=list)
    blocked: list[OutboxEvent] = field(default_factory=list)
    other_logs: int = 0
    stopped: ClientError | None = None
    remaining: int = 0
    batches: int = 0

    @property
    def ok(self) -> bool:
        """True when everything pending reached the log."""
        return not (self.failed or self.blocked or self.stopped or self.remaining)


def _block(
    todo: list[OutboxEvent], bad_lots: set[str]
) -> tuple[list[OutboxEvent], list[OutboxEvent]]:
    """Split events into those free to send and those that build on a refused event's lots."""
    free: list[OutboxEvent] = []
    blocked: list[OutboxEvent] = []
    for event in todo:
        if bad_lots.intersection(event.lots):
            blocked.append(event)
            bad_lots.update(event.lots)
        else:
            free.append(event)
    return free, blocked


def sync(
    outbox: Outbox,
    client: Client,
    origin: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Send every pending event for the log ``origin`` in order, in batches.

    ``progress(done, total)`` is called after each batch. Stops (keeping events pending) when
    the server cannot be reached, answers with a server error or with something that is not
    its answer (a captive portal's page); see the module docstring for refusals. Never
    raises for a refusal, a lost connection or a bad answer: the report says.
    """
    report = SyncReport()
    report.other_logs = len(outbox.pending()) - len(outbox.pending(origin))
    bad_lots: set[str] = set()
    for event in outbox.events(("failed",), origin):
        bad_lots.update(event.lots)
    todo, report.blocked = _block(outbox.pending(origin), bad_lots)
    total = len(todo)
    size = max(1, min(batch_size, MAX_BATCH))
    limit = size
    done = 0
    if progress is not None:
        progress(0, total)
    while todo:
        chunk = todo[:limit]
        limit = size
        report.batches += 1
        try:
            result = client.post_batch([e.envelope for e in chunk])
        except ServerUnreachable as e:
            report.stopped = e
            break
        except ApiError as e:
            if e.status == 413 and e.index is None and len(chunk) > 1:
                size = max(1, len(chunk) // 2)
                limit = size
                continue
            if e.status >= 500 or e.index is None or not 0 <= e.index < len(chunk):
                report.stopped = e
                break
            if e.index > 0:
                # Nothing was appended: send the events before the refused one on their own.
                limit = e.index
                continue
            failed = outbox.mark_failed(chunk[0], e)
            report.failed.append(failed)
            bad_lots.update(failed.lots)
            todo, blocked = _block(todo[1:], bad_lots)
            report.blocked.extend(blocked)
            total -= 1 + len(blocked)
            if progress is not None:
                progress(done, total)
            continue
        except ClientError as e:
            # an answer that is not the server's (a captive portal's login page, a proxy's
            # HTML): as good as no answer; the events stay pending
            report.stopped = e
            break
        receipts = result.get("receipts") if isinstance(result, dict) else None
        if (
            not isinstance(receipts, list)
            or len(receipts) != len(chunk)
            or any(
                not isinstance(r, dict) or r.get("event_id") != e.event_id
                for r, e in zip(receipts, chunk, strict=False)
            )
        ):
            report.stopped = ClientError(
                "The server's receipts do not match the events sent; nothing was marked.",
                "bad_response",
            )
            break
        for receipt in receipts:
            receipt.setdefault("checkpoint", result.get("checkpoint", ""))
        outbox.mark_sent(list(zip(chunk, receipts, strict=True)))
        report.sent.extend(chunk)
        todo = todo[len(chunk) :]
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    report.remaining = len(todo)
    report.blocked.sort(key=lambda e: e.id)
    return report
