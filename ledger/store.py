"""The SQL store: the append-only log, its Merkle tree, checkpoints and projections.

``Ledger`` is the service the API calls. Appending is one write transaction under the
database's write lock: the rules (``ledger.rules.admit``) run against ``SqlState`` (the
projection tables) through a ``StagedState``; the new log rows, the tree nodes the new
leaves complete, the projections and one signed checkpoint for the new size are written
together and committed, or nothing is. Reads each run in their own read transaction.

Locking. On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` (the write lock is
taken up front, so two writers queue on ``busy_timeout`` instead of one failing when it
upgrades a read lock); reads use a plain deferred ``BEGIN``. This is SQLAlchemy's
documented pysqlite recipe: the driver's own transaction handling is switched off and the
"begin" event emits our BEGIN. On PostgreSQL every write transaction first takes
``pg_advisory_xact_lock(WRITE_LOCK_KEY)``: writers are serialised, READ COMMITTED is enough
under the lock because every statement after it sees every earlier commit. Reads on
PostgreSQL use REPEATABLE READ so that one answer comes from one snapshot.

Durability. SQLite runs in WAL mode with ``synchronous=FULL``: the WAL is synced to disk
before a commit returns, so an append acknowledged with a receipt survives the server
process dying and also a power loss or an OS crash of the machine. ``synchronous=NORMAL``
would not: the last commits could vanish at a power cut, after their signed checkpoints
went out in receipts, and the log would then sign another root for the same size (and the
clients, which keep nothing once acknowledged, would never send those events again). The
cost is one sync per write transaction, shared by every append that group commit puts in
it. On PostgreSQL the server's sessions never run with ``synchronous_commit=off``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import errno
import functools
import json
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from ledger import gcpause, merkle, sigcheck, tables
from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner, open_checkpoint
from ledger.errors import IntegrityError, LedgerError, NotFoundError, SchemaError
from ledger.protocol import event_id
from ledger.rules import Admitted, Prepared, admit, admit_all, prepare
from ledger.state import (
    ActorState,
    Changes,
    EventRecord,
    LotState,
    SiteState,
    StagedState,
    private_copy,
)

#: the key of the PostgreSQL advisory lock every write transaction holds ("goldtrail")
WRITE_LOCK_KEY = 0x676F6C6474726169
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SQLITE_BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOT_STATUSES = frozenset({"active", "offered", "consumed"})
LOT_RISKS = frozenset({"low", "medium", "high", "hold"})
_WRITE_OPTION = "goldtrail_write"
_HEX_SEED = re.compile(r"[0-9a-fA-F]{64}")
_CURSOR_KEY = re.compile(r"[A-Za-z0-9-]{0,64}")


# ---------------------------------------------------------------------------
# Engines, transactions, migrations


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, set up for the ledger's locking.

    SQLite: WAL, ``synchronous=FULL``, foreign keys on, a long ``busy_timeout``, and
    ``BEGIN IMMEDIATE`` for write transactions (see the module docstring). PostgreSQL:
    ``synchronous_commit`` is never ``off``. Raises ValueError for any other database.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs.setdefault("json_serializer", _json_serializer)
    if backend == "sqlite":
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
        event.listen(engine, "connect", _postgresql_connect)
        return engine
    raise ValueError(f"goldtrail stores its log in SQLite or PostgreSQL, not {backend}.")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Switch off pysqlite's own BEGIN handling: the "begin" listener emits ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _postgresql_connect(dbapi_connection: Any, _record: Any) -> None:
    # A commit returns only once it is durable, even where the database or role sets
    # synchronous_commit off (which acknowledges commits a crash of PostgreSQL may undo).
    # Other values ('local', 'remote_write', 'remote_apply') are as durable or more: kept.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('synchronous_commit')")
        if cursor.fetchone()[0] == "off":
            cursor.execute("SET synchronous_commit = on")
    dbapi_connection.commit()


def postgresql_fsync_off(engine: Engine) -> bool:
    """True when ``engine`` is PostgreSQL running with ``fsync`` off: commits then do not
    survive a crash of the machine, whatever goldtrail does."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW fsync").scalar()) == "off"


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: one lock per engine: the writers of one process queue here, in order and woken at once,
#: before taking the database's write lock (SQLite's busy handler polls with sleeps of up to
#: 100 ms, so threads queueing there wait far longer than the transaction they wait for)
_PROCESS_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = (
    weakref.WeakKeyDictionary()
)
_PROCESS_WRITE_LOCKS_GUARD = threading.Lock()


def _process_write_lock(engine: Engine) -> threading.RLock:
    with _PROCESS_WRITE_LOCKS_GUARD:
        lock = _PROCESS_WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _PROCESS_WRITE_LOCKS[engine] = threading.RLock()
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock; commits on success.

    Writers in one process first queue on a lock of their own (see ``_PROCESS_WRITE_LOCKS``);
    other processes are kept out by the database's lock, as always. Raises whatever the
    database raises; on any error the transaction is rolled back.
    """
    # the option is set on the connection (an engine copy per call costs more than a query)
    with _process_write_lock(engine), engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read transaction over one snapshot of the database.

    Raises whatever the database raises.
    """
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect() as conn:
        if options:
            conn = conn.execution_options(**options)
        with conn.begin():
            yield conn


def alembic_config() -> Config:
    """The Alembic configuration of the migrations packaged in ``ledger/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to date (``alembic upgrade head``) under the write lock.

    Raises IntegrityError ``schema_too_new`` (and changes nothing) when the database is at a
    revision this code does not know, and whatever Alembic or the database raises.
    """
    config = alembic_config()
    with write_transaction(engine) as conn:
        _refuse_unknown_revision(conn, config)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _refuse_unknown_revision(conn: Connection, config: Config) -> None:
    """IntegrityError ``schema_too_new`` when the database is at a revision these migrations
    do not know: a newer goldtrail migrated it, and this one must not write to it."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    known = {rev.revision for rev in script.walk_revisions()}
    for current in MigrationContext.configure(conn).get_current_heads():
        if current not in known:
            raise IntegrityError(
                "schema_too_new",
                f"The database's schema is at revision {current}, which this goldtrail does "
                f"not know (its newest is {script.get_current_head()}): a newer goldtrail "
                "migrated it. Run that version (or newer); this one must not write to it.",
            )


# ---------------------------------------------------------------------------
# Small helpers


#: statements built once and reused: building SQLAlchemy expressions costs more than
#: running them on a small transaction (values are always bound parameters)
_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _statement(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return stmt


def _insert_rows(conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert plain rows (integers, text, bytes: values in the table's column order) with
    the driver's ``executemany``: for the hot append-only tables, where SQLAlchemy's
    per-value processing cost more than the insert. The statement is compiled once per
    dialect; the database's constraints and triggers apply as to any insert."""
    if not rows:
        return
    dialect = conn.dialect

    def build() -> tuple[str, list[str] | None]:
        compiled = insert(table).compile(dialect=dialect)
        names = [c.name for c in table.c]
        positional = compiled.positiontup
        if positional is not None and list(positional) != names:  # pragma: no cover
            raise RuntimeError(f"unexpected column order for {table.name}")
        return str(compiled), None if positional is not None else names

    sql, names = _statement(("insert_rows", dialect.name, table.name), build)
    if names is None:
        conn.exec_driver_sql(sql, rows)
    else:
        conn.exec_driver_sql(sql, [dict(zip(names, row, strict=True)) for row in rows])


def _compile_rows(dialect: Any, stmt: Any) -> tuple[str, list[str], list[Any], bool]:
    """An INSERT of every column of a table (``ON CONFLICT`` clauses allowed) compiled for
    ``dialect``: its SQL, its bind names in order, each one's bind processor (the column
    type's, as SQLAlchemy would apply it: JSON documents are serialised alike) and whether
    the driver takes positional parameters."""
    compiled = stmt.compile(dialect=dialect)
    if getattr(compiled, "escaped_bind_names", None):  # pragma: no cover
        raise RuntimeError("unexpected escaped bind names")
    positional = compiled.positiontup
    names = list(positional) if positional is not None else list(compiled.binds)
    processors = [
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    return str(compiled), names, processors, positional is not None


def _execute_rows(conn: Connection, compiled: Any, rows: list[dict[str, Any]]) -> None:
    """Run a ``_compile_rows`` statement once per row with the driver's ``executemany``:
    the values go through the same bind processors as with ``conn.execute``, without
    SQLAlchemy's per-row parameter handling (which cost more than the statement)."""
    sql, names, processors, positional = compiled
    pairs = list(zip(names, processors, strict=True))
    values = [
        [row[name] if process is None else process(row[name]) for name, process in pairs]
        for row in rows
    ]
    if positional:
        conn.exec_driver_sql(sql, [tuple(v) for v in values])
    else:
        conn.exec_driver_sql(sql, [dict(zip(names, v, strict=True)) for v in values])


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert rows, replacing the non-key columns of rows that already exist."""
    if not rows:
        return
    dialect = conn.dialect

    def build() -> Any:
        insert_ = (pg_dialect if dialect.name == "postgresql" else sqlite_dialect).insert
        stmt = insert_(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys},
        )
        return _compile_rows(dialect, stmt)

    _execute_rows(conn, _statement(("upsert", dialect.name, table.name, tuple(keys)), build), rows)


def _insert_new(
    conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert rows, skipping those whose key already exists."""
    if not rows:
        return
    dialect = conn.dialect

    def build() -> Any:
        insert_ = (pg_dialect if dialect.name == "postgresql" else sqlite_dialect).insert
        stmt = insert_(table).on_conflict_do_nothing(index_elements=[table.c[k] for k in keys])
        return _compile_rows(dialect, stmt)

    _execute_rows(
        conn, _statement(("insert_new", dialect.name, table.name, tuple(keys)), build), rows
    )


class DocText:
    """A projection's ``doc`` already written as JSON text by pydantic's serializer (the
    JSON value of ``model_dump(mode="json", by_alias=True)``, four times cheaper than
    ``json.dumps`` of it). The engine's ``json_serializer`` stores the text as it is; an
    engine without it refuses the object instead of storing something else."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def doc_text(model: ActorState | SiteState | LotState) -> DocText:
    """The ``doc`` column of a projection row."""
    return DocText(model.model_dump_json(by_alias=True))


def _json_serializer(value: Any) -> str:
    """The JSON columns' serializer: a ``DocText`` as it is, anything else as before."""
    if type(value) is DocText:
        return value.text
    return json.dumps(value)


def lots_named(body: dict[str, Any]) -> list[str]:
    """Every lot an event body names: ``lot``, ``inputs[].lot``, ``outputs[].lot``."""
    named: dict[str, None] = {}
    if isinstance(body.get("lot"), str):
        named[body["lot"]] = None
    for part in ("inputs", "outputs"):
        for item in body.get(part, ()):
            named[item["lot"]] = None
    return list(named)


def event_subject(body: dict[str, Any]) -> str | None:
    """What an ``actor.*`` (its subject) or ``site.*`` (its site) event is about."""
    kind = body.get("type", "")
    if kind.startswith("actor."):
        return str(body["subject"])
    if kind.startswith("site."):
        return str(body["site"])
    return None


def _limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1:
        raise SchemaError(f"limit must be at least 1, not {limit}.")
    return min(limit, MAX_LIMIT)


def _encode_cursor(seq: int, key: str = "") -> str:
    return base64.urlsafe_b64encode(f"{seq}/{key}".encode()).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str]:
    """The (seq, key) a list resumes after; (-1, "") for the start."""
    if cursor is None or cursor == "":
        return -1, ""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        seq_text, _, key = base64.urlsafe_b64decode(padded.encode("ascii")).decode().partition("/")
        seq = int(seq_text)
    except (ValueError, UnicodeError, binascii.Error) as e:
        raise SchemaError("cursor: this is not a cursor this server gave out.") from e
    # a seq a database integer cannot hold, or a key no id has (a NUL byte...), would make
    # the database fail rather than answer
    if not 0 <= seq < 2**63 or not _CURSOR_KEY.fullmatch(key):
        raise SchemaError("cursor: this is not a cursor this server gave out.")
    return seq, key


def _entry(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "event_id": row.event_id,
        "leaf_hash": bytes(row.leaf_hash).hex(),
        "envelope": json.loads(bytes(row.envelope)),
    }


def log_size(conn: Connection) -> int:
    """The number of entries in the log."""
    stmt = _statement(("log_size",), lambda: select(func.max(tables.log.c.seq)))
    last = conn.execute(stmt).scalar()
    return 0 if last is None else int(last) + 1


#: the ``log_meta`` key whose value ``ledger.admin.rebuild_projections`` changes each time it
#: rewrites the projections without appending (a ledger must not reuse rows it read before)
PROJECTIONS_MARK = "projections_rebuilt"


def _log_version(conn: Connection) -> tuple[int, str | None]:
    """The log's size and the projections' mark (``PROJECTIONS_MARK``), in one query: every
    projection row changes with one of them."""
    meta = tables.log_meta

    def build() -> Any:
        mark = select(meta.c.value).where(meta.c.key == PROJECTIONS_MARK).scalar_subquery()
        return select(func.max(tables.log.c.seq), mark)

    last, mark = conn.execute(_statement(("log_version",), build)).one()
    return (0 if last is None else int(last) + 1), (None if mark is None else str(mark))


# ---------------------------------------------------------------------------
# The tree's hashes and the projections, over one connection

_IN_CHUNK = 500
#: what SqlState looks up: kind -> (key column, value columns)
_LOOKUPS: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "actor": (tables.actors.c.id, (tables.actors.c.doc,)),
    "site": (tables.sites.c.id, (tables.sites.c.doc,)),
    "lot": (tables.lots.c.lot, (tables.lots.c.doc,)),
    "key": (tables.actor_keys.c.key, (tables.actor_keys.c.actor,)),
    "prefix": (tables.prefixes.c.prefix, (tables.prefixes.c.actor,)),
    "event": (tables.log.c.event_id, (tables.log.c.seq, tables.log.c.envelope)),
}

#: the event-id index's recent part moves into its big part each time the log's size
#: passes a multiple of this (``ledger.tables``: a sorted pass of this many ids writes each
#: leaf of the big index once, while a batch's new ids share the recent part's few leaves)
MERGE_EVERY = 32_768

_EVENT_ID = re.compile(r"[0-9a-f]{64}")


def id_key(event_id: str) -> bytes | None:
    """The key of an event id in ``event_ids``/``recent_event_ids`` (its 32 bytes), or None
    when it cannot be a stored id (not 64 lowercase hex digits: the id any stored entry
    has, so an id written otherwise names no event, as before)."""
    return bytes.fromhex(event_id) if _EVENT_ID.fullmatch(event_id) else None


def seqs_of(keys: Sequence[Any]) -> Any:
    """SELECT the seq of the events whose ``id_key`` is one of ``keys`` (values or bind
    parameters): whichever part of the index holds it."""
    parts = (tables.recent_event_ids, tables.event_ids)
    return union_all(*(select(t.c.seq).where(t.c.event_id.in_(keys)) for t in parts))


def _holding(rows: Sequence[Any], event_id: str) -> Any:
    """The log row among ``rows`` (found by the seqs the event-id index gives) that holds
    ``event_id``, or None: the index is a projection, and a wrong row of it (a damaged
    store, which the audit names) must not make another entry answer for the id."""
    return next((row for row in rows if row.event_id == event_id), None)


def index_event_ids(conn: Connection, pairs: list[tuple[bytes, int]]) -> None:
    """Add the (``id_key``, seq) pairs of log entries about to be written to the event-id
    index: before the entries themselves, as the database wants (migration 0002: it refuses
    a log row its index does not hold, and an id the big part already has)."""
    _insert_rows(conn, tables.recent_event_ids, pairs)


def merge_when_due(conn: Connection, start: int, end: int) -> None:
    """Merge the index's recent part into the big one when an append took the log from
    ``start`` to ``end`` entries past a multiple of ``MERGE_EVERY``."""
    if start // MERGE_EVERY != end // MERGE_EVERY:
        merge_event_ids(conn)


def reindex_event_ids(conn: Connection, pairs: Iterable[tuple[bytes, int]]) -> None:
    """Replace the event-id index by ``pairs`` (every entry's ``id_key`` and seq), all in its
    big part (``goldtrail admin rebuild``)."""
    conn.execute(tables.recent_event_ids.delete())
    conn.execute(tables.event_ids.delete())
    ordered = sorted(pairs)
    for at in range(0, len(ordered), 10_000):
        _insert_rows(conn, tables.event_ids, ordered[at : at + 10_000])


def merge_event_ids(conn: Connection) -> None:
    """Move every id of ``recent_event_ids`` into ``event_ids``, in key order."""
    recent, merged = tables.recent_event_ids, tables.event_ids
    conn.execute(
        insert(merged).from_select(
            ["event_id", "seq"], select(recent.c.event_id, recent.c.seq).order_by(recent.c.event_id)
        )
    )
    conn.execute(recent.delete())


#: the kinds of rows an append may take from what the same ledger's last committed append
#: read (actors, sites and the owners of keys and prefixes change rarely; lots and events
#: are read fresh)
_KEPT = ("actor", "site", "key", "prefix")


def _lookup_value(kind: str, row: Any) -> Any:
    if kind != "event":
        return row[1]
    envelope = json.loads(bytes(row[2]))
    body = envelope["body"]
    return EventRecord(str(row[0]), int(row[1]), body["time"], body, envelope["signature"])


def _compile_load(dialect: Any, kind: str, width: int) -> tuple[str, bool, list[Any]]:
    """``SELECT key, values FROM ... WHERE key IN (width bound keys)`` of a ``_LOOKUPS``
    kind, compiled for ``dialect``: its SQL, whether the driver takes positional
    parameters, and each column's result processor (as SQLAlchemy would apply them: JSON
    documents are read alike)."""
    key_col, value_cols = _LOOKUPS[kind]
    columns = (key_col, *value_cols)
    binds: list[Any] = [bindparam(f"k{n}") for n in range(width)]
    if kind == "event":  # found through the event-id index (its two parts bind the keys)
        stmt = select(*columns).where(tables.log.c.seq.in_(seqs_of(binds)))
        expected = [f"k{n}" for n in range(width)] * 2
    else:
        stmt = select(*columns).where(key_col.in_(binds))
        expected = [f"k{n}" for n in range(width)]
    compiled = stmt.compile(dialect=dialect)
    positional = compiled.positiontup
    if positional is not None and list(positional) != expected:
        raise RuntimeError(f"unexpected parameter order for {kind}")  # pragma: no cover
    processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    return str(compiled), positional is not None, processors


def _names_in(envelope: object, names: dict[str, set[str]]) -> None:
    """Add what an envelope names (actors, sites, lots, keys, prefixes, events) to ``names``.

    ``envelope`` may be raw or ``Prepared`` (whose event id is already computed). The
    signature's key is not looked up: the rules check it against the signer's own key
    records; ``actor_keys`` is read only for a key the body registers (``body.key``).
    """
    if isinstance(envelope, Prepared):
        body: object = envelope.body
        names["event"].add(envelope.event_id)
    elif isinstance(envelope, dict):
        body = envelope.get("body")
        if isinstance(body, dict):
            with contextlib.suppress(LedgerError):
                names["event"].add(event_id(body))
    else:
        return
    if not isinstance(body, dict):
        return

    def add(kind: str, value: object) -> None:
        if isinstance(value, str):
            names[kind].add(value)

    for field_name in ("actor", "subject", "to", "operator"):
        add("actor", body.get(field_name))
    add("site", body.get("site"))
    add("lot", body.get("lot"))
    add("event", body.get("prev"))
    add("event", body.get("offer"))
    add("key", body.get("key"))
    add("prefix", body.get("lot_prefix"))
    for part in ("inputs", "outputs"):
        items = body.get(part)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict):
                add("lot", item.get("lot"))
                add("event", item.get("prev"))


def _read_hashes(count: int) -> Any:
    """SELECT ``count`` tree nodes by (level, index): one statement per count, reused."""
    t = tables.tree_nodes
    return select(t.c.level, t.c.idx, t.c.hash).where(
        or_(
            *(
                and_(t.c.level == bindparam(f"level{n}"), t.c.idx == bindparam(f"idx{n}"))
                for n in range(count)
            )
        )
    )


class SqlHashStore:
    """merkle.HashStore over ``tree_nodes``, batched, counting its reads and writes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.reads = 0
        self.writes = 0
        self.read_calls = 0
        self.write_calls = 0

    def read_hashes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hashes stored under ``keys`` ((level, index) pairs), in one query.

        Raises IntegrityError if one is missing: the tree is not what the log says.
        """
        self.read_calls += 1
        self.reads += len(keys)
        if not keys:
            return []
        wanted = list(dict.fromkeys(keys))
        params: dict[str, Any] = {}
        for n, (level, index) in enumerate(wanted):
            params[f"level{n}"], params[f"idx{n}"] = level, index
        stmt = _statement(("read_hashes", len(wanted)), lambda: _read_hashes(len(wanted)))
        rows = self.conn.execute(stmt, params)
        found = {(row.level, row.idx): bytes(row.hash) for row in rows}
        missing = [key for key in keys if key not in found]
        if missing:
            raise IntegrityError(
                "tree_incomplete",
                f"The stored Merkle tree lacks the node (level, index) {missing[0]}: the store "
                "is damaged; run the audit.",
            )
        return [found[key] for key in keys]

    def write_hashes(self, items: Sequence[tuple[int, int, bytes]]) -> None:
        """Insert each ``(level, index, hash)`` (the table is append-only)."""
        self.write_calls += 1
        self.writes += len(items)
        if items:
            _insert_rows(self.conn, tables.tree_nodes, list(items))


#: a committed tree size and the hashes of its right edge (``merkle.frontier_keys``)
Frontier = tuple[int, tuple[bytes, ...]]


class AppendHashStore(SqlHashStore):
    """The SqlHashStore of an append to a tree of ``size`` leaves: its right edge comes from
    ``known`` when that is the frontier of this size, and ``frontier`` gives the right edge
    after the append.

    A frontier is only ever kept once its transaction committed: tree nodes never change
    once written (the table is append-only), so a committed size's right edge stays what
    it was, while a size reached by a rolled-back append could come again with other leaves.
    """

    def __init__(self, conn: Connection, size: int, known: Frontier | None) -> None:
        super().__init__(conn)
        self.size = size
        self.edge: dict[tuple[int, int], bytes] = {}
        if known is not None and known[0] == size:
            self.edge = dict(zip(merkle.frontier_keys(size), known[1], strict=True))

    def read_hashes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        if self.edge and all(key in self.edge for key in keys):
            return [self.edge[key] for key in keys]
        hashes = super().read_hashes(keys)
        self.edge.update(zip(keys, hashes, strict=True))
        return hashes

    def write_hashes(self, items: Sequence[tuple[int, int, bytes]]) -> None:
        super().write_hashes(items)
        self.edge.update(((level, index), digest) for level, index, digest in items)

    def frontier(self, size: int) -> Frontier | None:
        """The right edge of the tree of ``size`` leaves, from what this append read and
        wrote (None if it did not see all of it)."""
        keys = merkle.frontier_keys(size)
        if not all(key in self.edge for key in keys):
            return None
        return size, tuple(self.edge[key] for key in keys)


class SqlState:
    """ledger.state.StateReader over the projection tables of one transaction.

    What it reads is kept for the rest of its transaction only (which the write lock or the
    read snapshot keeps unchanged), and dropped by ``apply``: an instance must not outlive
    its transaction. ``prefetch`` loads everything a batch names in a few queries.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._cache: dict[str, dict[str, Any]] = {kind: {} for kind in _LOOKUPS}
        self._size: int | None = None
        self._version: tuple[int, str | None] | None = None

    def size(self) -> int:
        """Number of events in the log (read once, like every other read, until ``apply``)."""
        if self._size is None:
            self._size = log_size(self.conn)
        return self._size

    def version(self) -> tuple[int, str | None]:
        """The log's size and the projections' mark (``PROJECTIONS_MARK``): what the rows
        read here depend on (read once, until ``apply``)."""
        if self._version is None:
            self._version = _log_version(self.conn)
            self._size = self._version[0]
        return self._version

    def _get(self, kind: str, key: str) -> Any:
        cache = self._cache[kind]
        if key not in cache:
            self._load(kind, [key])
        return cache[key]

    def _load(self, kind: str, keys: Iterable[str]) -> None:
        """Read the rows of ``kind`` with these keys (misses are remembered as None)."""
        cache = self._cache[kind]
        wanted = sorted({k for k in keys if k not in cache})
        # a raw envelope may name anything: no stored id holds a NUL character (PostgreSQL
        # text cannot), so never ask the database for one (it would fail, not answer)
        cache.update({k: None for k in wanted if "\x00" in k})
        wanted = [k for k in wanted if "\x00" not in k]
        if kind == "event":  # looked up by their index keys; no other text names an event
            cache.update({k: None for k in wanted if id_key(k) is None})
            wanted = [k for k in wanted if id_key(k) is not None]
        dialect = self.conn.dialect
        for at in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[at : at + _IN_CHUNK]
            # one statement per kind and power of two of keys, the last key repeated to
            # fill it (a key named twice in IN is found once)
            width = 1 << (len(chunk) - 1).bit_length()
            sql, positional, processors = _statement(
                ("load", dialect.name, kind, width),
                functools.partial(_compile_load, dialect, kind, width),
            )
            values: list[Any] = chunk + [chunk[-1]] * (width - len(chunk))
            if kind == "event":  # the index's keys, bound once per part of the index
                values = [bytes.fromhex(k) for k in values]
            params: Any = (
                values * (2 if kind == "event" else 1)
                if positional
                else {f"k{n}": k for n, k in enumerate(values)}
            )
            for raw in self.conn.exec_driver_sql(sql, tuple(params) if positional else params):
                row = tuple(v if p is None else p(v) for v, p in zip(raw, processors, strict=True))
                cache[row[0]] = _lookup_value(kind, row)
            for key in chunk:
                cache.setdefault(key, None)

    def reads(self) -> tuple[str | None, dict[str, dict[str, Any]]]:
        """What this state has read so far of the kinds a later transaction may reuse
        (``_KEPT``): per kind, key -> value (None for a row not found); with the
        projections' mark they were read under. Call before ``apply``, which forgets
        every read."""
        return self.version()[1], {kind: self._cache[kind] for kind in _KEPT}

    def recall(self, reads: dict[str, dict[str, Any]]) -> None:
        """Take ``reads`` (from ``reads`` of an earlier transaction) as already read: the
        caller vouches that nothing they cover has changed since."""
        for kind, rows in reads.items():
            self._cache[kind].update(rows)

    def prefetch(self, envelopes: Iterable[object]) -> None:
        """Load, in a few queries, every row the rules may read for these envelopes.

        Raises only what the database raises; malformed envelopes are skipped (the rules
        refuse them later).
        """
        names: dict[str, set[str]] = {kind: set() for kind in _LOOKUPS}
        for envelope in envelopes:
            _names_in(envelope, names)
        self._load("event", names["event"])
        self._load("lot", names["lot"])
        for doc in self._cache["lot"].values():
            if doc is not None:
                names["actor"].add(doc["custodian"])
                if doc.get("offer"):
                    names["actor"].add(doc["offer"]["to"])
        self._load("site", names["site"])
        for doc in self._cache["site"].values():
            if isinstance(doc, SiteState):  # kept from an earlier append (``recall``)
                names["actor"].add(doc.operator)
            elif doc is not None:
                names["actor"].add(doc["operator"])
        for kind in ("actor", "key", "prefix"):
            self._load(kind, names[kind])

    def actor(self, actor_id: str) -> ActorState | None:
        """A copy of the actor, or None."""
        doc = self._get("actor", actor_id)
        if isinstance(doc, ActorState):  # kept from an earlier append (``recall``)
            return private_copy(doc)
        return None if doc is None else ActorState.model_validate(doc)

    def site(self, site_id: str) -> SiteState | None:
        """A copy of the site, or None."""
        doc = self._get("site", site_id)
        if isinstance(doc, SiteState):
            return private_copy(doc)
        return None if doc is None else SiteState.model_validate(doc)

    def lot(self, lot_id: str) -> LotState | None:
        """The lot, or None."""
        doc = self._get("lot", lot_id)
        return None if doc is None else LotState.model_validate(doc)

    def key_owner(self, key: str) -> str | None:
        """The actor that holds or held ``key``, or None."""
        owner = self._get("key", key)
        return None if owner is None else str(owner)

    def prefix_owner(self, prefix: str) -> str | None:
        """The actor given this lot prefix, or None."""
        owner = self._get("prefix", prefix)
        return None if owner is None else str(owner)

    def event(self, event_id: str) -> EventRecord | None:
        """An accepted event by id, read back from its log entry, or None."""
        record: EventRecord | None = self._get("event", event_id)
        return record

    def active_registrars(self) -> list[str]:
        """Ids of the active actors holding the registrar role."""
        a = tables.actors
        rows = self.conn.execute(
            select(a.c.id).where(a.c.is_registrar, a.c.status == "active").order_by(a.c.id)
        )
        return [str(r) for r in rows.scalars()]

    def apply(self, changes: Changes) -> None:
        """Write staged projections: upsert actors, sites and lots, add keys, prefixes and
        each event's lots.

        Raises whatever the database raises (a key or prefix claimed twice, for one).
        """
        self._cache = {kind: {} for kind in _LOOKUPS}
        self._size = self._version = None
        conn = self.conn
        _upsert(
            conn,
            tables.actors,
            [
                {
                    "id": a.id,
                    "status": a.status,
                    "is_registrar": "registrar" in a.roles,
                    "registered_seq": a.registered_seq,
                    "doc": doc_text(a),
                }
                for a in changes.actors.values()
            ],
            ["id"],
        )
        if changes.keys:
            conn.execute(
                insert(tables.actor_keys),
                [{"key": k, "actor": v} for k, v in changes.keys.items()],
            )
        if changes.prefixes:
            conn.execute(
                insert(tables.prefixes),
                [{"prefix": k, "actor": v} for k, v in changes.prefixes.items()],
            )
        _upsert(
            conn,
            tables.sites,
            [
                {
                    "id": s.id,
                    "operator": s.operator,
                    "registered_seq": s.registered_seq,
                    "doc": doc_text(s),
                }
                for s in changes.sites.values()
            ],
            ["id"],
        )
        _upsert(conn, tables.lots, [lot_row(lot) for lot in changes.lots.values()], ["lot"])
        _insert_new(
            conn,
            tables.lot_sites,
            [
                {"site": site, "lot": lot.lot, "created_seq": lot.created_seq}
                for lot in changes.lots.values()
                for site in lot.origins
            ],
            ["site", "lot"],
        )
        _insert_rows(
            conn,
            tables.event_lots,
            [
                (lot, record.seq, record.event_id)  # the columns' order
                for record in changes.events
                for lot in lots_named(record.body)
            ],
        )


def lot_row(lot: LotState) -> dict[str, Any]:
    """The ``lots`` row of a lot state."""
    return {
        "lot": lot.lot,
        "custodian": lot.custodian,
        "status": lot.status,
        "risk": lot.risk,
        "hold": lot.hold,
        "origins": " ".join(sorted(lot.origins)),
        "created_seq": lot.created_seq,
        "doc": doc_text(lot),
    }


class SqlLogReader:
    """ledger.bundle.LogReader over the log of one transaction."""

    def __init__(self, conn: Connection, tree_size: int) -> None:
        self.conn = conn
        self.tree_size = tree_size

    def event_at(self, event_id: str) -> tuple[int, dict[str, Any]] | None:
        """The (seq, envelope) of an event, or None."""
        key, t = id_key(event_id), tables.log
        rows = (
            []
            if key is None
            else self.conn.execute(
                select(t.c.seq, t.c.event_id, t.c.envelope).where(t.c.seq.in_(seqs_of([key])))
            ).all()
        )
        row = _holding(rows, event_id)
        return None if row is None else (row.seq, json.loads(bytes(row.envelope)))

    def _about(self, prefix: str, subject: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        t = tables.log
        rows = self.conn.execute(
            select(t.c.seq, t.c.envelope)
            .where(t.c.subject == subject, t.c.seq < max_seq, t.c.type.startswith(prefix))
            .order_by(t.c.seq)
        )
        return [(row.seq, json.loads(bytes(row.envelope))) for row in rows]

    def actor_events(self, actor_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """Every ``actor.*`` event whose subject is ``actor_id``, with seq < max_seq."""
        return self._about("actor.", actor_id, max_seq)

    def site_events(self, site_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The ``site.*`` events of a site, with seq < max_seq."""
        return self._about("site.", site_id, max_seq)

    def proof(self, seq: int, size: int) -> list[bytes]:
        """The inclusion proof of entry ``seq`` in the tree of ``size`` leaves."""
        return merkle.inclusion_proof(SqlHashStore(self.conn), seq, size, tree_size=self.tree_size)


# ---------------------------------------------------------------------------
# The service


class Receipt(TypedDict):
    """The receipt of one event (the wire shape): where it is in the log and a checkpoint
    note that includes it."""

    event_id: str
    seq: int
    leaf_hash: str
    checkpoint: str


@dataclass(frozen=True)
class AppendResult:
    """What an append did: a receipt per envelope, in order, and the log's checkpoint after.

    ``created`` is True when at least one event is new (201 rather than 200); ``new[i]``
    says whether envelope ``i`` was appended by this call (False for a re-post or a repeat
    within the batch).
    """

    receipts: list[Receipt]
    checkpoint: str
    size: int
    created: bool
    new: list[bool]


class LogInfo(TypedDict):
    """``GET /v1/log``: the log's identity and current tree head (root in hex)."""

    origin: str
    verifier_key: str
    registrar_key: str | None
    size: int
    root: str


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _BadSignatureInBatch(Exception):
    """A signature checked on the other core failed: roll back and run the plain way."""


def _prepared_or_raw(envelope: object) -> object:
    """The envelope's ``Prepared`` form, or the envelope itself when it cannot be prepared."""
    if isinstance(envelope, Prepared):
        return envelope
    try:
        return prepare(envelope)
    except LedgerError:
        return envelope


class Ledger:
    """The ledger service over a database: appends, proofs and state queries.

    ``registrar_key`` is the key trusted to sign seq 0 (None accepts any self-registered
    registrar: set it before the first append). ``clock`` gives the time for the future-time
    rule and the checkpoints' ``created_at``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        origin: str,
        log_signer: LogSigner,
        registrar_key: str | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        """Serve the log in ``engine`` (already migrated) under ``origin``.

        Raises ValueError if the log key is not named after the origin.
        """
        if log_signer.origin != origin:
            raise ValueError(
                f"The log key is named {log_signer.origin!r}, not the origin {origin!r}."
            )
        self.engine = engine
        self.origin = origin
        self.log_signer = log_signer
        self.registrar_key = registrar_key
        self.clock = clock
        #: the SqlHashStore of the last operation that touched the tree (tests, metrics)
        self.last_hash_store: SqlHashStore | None = None
        #: the right edge of the tree after this ledger's last committed append: the next
        #: append reads it from here instead of the database if the size is still the same
        self._frontier: Frontier | None = None
        #: the log's size after this ledger's last committed append with the projections'
        #: mark, and the actors, sites, key owners and prefix owners that append read or
        #: wrote: the next append takes them from here if both are still the same
        self._kept: tuple[tuple[int, str | None], dict[str, dict[str, Any]]] | None = None
        #: True once an append saw the log named after this ledger's origin and key with
        #: entries in it: from then on no server can bind the log to another key (only an
        #: empty log may be rebound, see ``open_ledger``)
        self._bound = False

    @property
    def verifier_key(self) -> str:
        """The note verifier key that opens this log's checkpoints."""
        return self.log_signer.verifier_key

    def _hash_store(self, conn: Connection) -> SqlHashStore:
        store = SqlHashStore(conn)
        self.last_hash_store = store
        return store

    # -- writing -----------------------------------------------------------------------

    def _state(self, conn: Connection) -> SqlState:
        """The projections as a write transaction sees them, with what this ledger's last
        committed append read or wrote, if nothing was appended since (by this ledger or
        any other: the log only grows) and the projections were not rebuilt (every
        projection row changes only with one or the other)."""
        state = SqlState(conn)
        if not self._bound:
            self._check_bound(conn, state)
        kept = self._kept
        if kept is not None and kept[0] == state.version():
            state.recall(kept[1])
        return state

    def _check_bound(self, conn: Connection, state: SqlState) -> None:
        """Refuse to append when the log is no longer bound to this ledger's origin and key:
        another server started on the log while it was empty, with another key file or
        origin, and rebound it (``open_ledger`` allows that for an empty log). This server
        must then sign nothing, or the log would hold checkpoints under two keys."""
        meta = tables.log_meta
        stored = dict(
            conn.execute(
                select(meta.c.key, meta.c.value).where(meta.c.key.in_(["origin", "log_public_key"]))
            ).all()
        )
        if stored.get("origin", self.origin) != self.origin:
            raise IntegrityError(
                "origin_mismatch",
                f"Another server bound this log to the origin {stored['origin']!r} after this "
                f"one started with {self.origin!r}: this server appends nothing. Give every "
                "server the same GOLDTRAIL_ORIGIN and restart it.",
            )
        if stored.get("log_public_key", self.log_signer.public_key.hex()) != (
            self.log_signer.public_key.hex()
        ):
            raise IntegrityError(
                "log_key_mismatch",
                "Another server bound this log to another log key after this one started: this "
                "server signs nothing. Give every server the same log key file "
                "(GOLDTRAIL_LOG_KEY_FILE) and restart it.",
            )
        # once the log has entries nobody can bind it again: no need to look any more
        self._bound = state.size() > 0

    def _keep(
        self,
        size: int,
        reads: tuple[str | None, dict[str, dict[str, Any]]],
        changes: Changes,
    ) -> None:
        """After a commit that left the log at ``size``: keep the rows the append read
        (found ones only), and what it wrote in their place (an actor's or a site's new
        state as the object it wrote: staged objects are never changed in place, and
        ``SqlState`` hands out copies)."""
        written: dict[str, dict[str, Any]] = {
            "actor": changes.actors,
            "site": changes.sites,
            "key": changes.keys,
            "prefix": changes.prefixes,
        }
        mark, rows_read = reads
        self._kept = (
            (size, mark),
            {
                kind: {k: v for k, v in rows.items() if v is not None} | written[kind]
                for kind, rows in rows_read.items()
            },
        )

    def append(
        self, envelopes: Sequence[object], *, batch: bool = True, check_time: bool = True
    ) -> AppendResult:
        """Append envelopes in order, all or nothing, in one transaction; return receipts.

        ``batch`` tags an error with the failing envelope's index; ``check_time=False``
        skips the future-time rule (an import of an existing log). Re-posted envelopes get
        their original receipt. Raises SchemaError for an empty list, the LedgerError of the
        first failed check otherwise, IntegrityError if the store is damaged.
        """
        if not envelopes:
            raise SchemaError("The batch is empty: send at least one event.")
        with gcpause.paused():
            return self._append_checked(envelopes, batch, self.clock() if check_time else None)

    def _append_checked(
        self, envelopes: Sequence[object], batch: bool, now: dt.datetime | None
    ) -> AppendResult:
        # canonical bytes once per envelope, for the re-post lookup and the rules; one that
        # cannot be prepared goes to the rules as it is, which refuse it in its turn
        items = [_prepared_or_raw(envelope) for envelope in envelopes]
        # a big batch has its signatures checked on another core while the rules run here
        # on envelopes marked as checked; nothing is committed before the answer is in, and
        # if any signature fails, or the rules refuse an envelope while one does, the
        # batch runs again the plain way, so the error is exactly the one it gives alone
        unchecked = [
            (i, item)
            for i, item in enumerate(items)
            if isinstance(item, Prepared) and item.verified_for is None
        ]
        signatures = [sigcheck.item_of(item) for _, item in unchecked]
        future = sigcheck.CHECKER.submit(self.origin, signatures)
        if future is None:
            return self._append(items, now, batch, None)
        marked = list(items)
        for i, item in unchecked:
            marked[i] = item._replace(verified_for=self.origin)

        def all_verified() -> bool:
            return sigcheck.result(future, self.origin, signatures) is None

        try:
            return self._append(marked, now, batch, all_verified)
        except _BadSignatureInBatch:
            return self._append(items, now, batch, None)
        except LedgerError:
            if all_verified():
                raise
            return self._append(items, now, batch, None)
        finally:
            all_verified()  # the answer is always collected, which frees the worker

    def _append(
        self,
        items: list[object],
        now: dt.datetime | None,
        batch: bool,
        all_verified: Callable[[], bool] | None,
    ) -> AppendResult:
        """``append`` in one write transaction; ``all_verified`` (if given) is asked once
        the rows are written but before the checkpoint is signed and anything committed,
        and a false answer rolls the transaction back (the worker checks the signatures
        while this thread runs the rules and writes the rows)."""
        with write_transaction(self.engine) as conn:
            state = self._state(conn)
            state.prefetch(items)
            staged = StagedState(state)
            start = staged.size()
            admitted = admit_all(
                staged,
                items,
                origin=self.origin,
                registrar_key=self.registrar_key,
                now=now,
                batch=batch,
            )
            new = [a for a in admitted if a.existing is None]
            leaves = {a.event_id: merkle.leaf_hash(a.leaf_data) for a in new}
            frontier = None
            if new:
                reads = state.reads()
                note, frontier = self._write(
                    conn, state, staged.changes, new, leaves, start, before_signing=all_verified
                )
                size = start + len(new)
            else:
                if all_verified is not None and not all_verified():
                    raise _BadSignatureInBatch
                size = start
                note = self._latest_note(conn, size)
            receipts = self._receipts(conn, admitted, leaves, start, note)
        if frontier is not None:  # committed
            self._frontier = frontier
            self._keep(size, reads, staged.changes)
        return AppendResult(receipts, note, size, bool(new), [a.existing is None for a in admitted])

    def append_one(self, envelope: object, *, check_time: bool = True) -> Receipt:
        """Append one envelope (``POST /v1/events``); return its receipt.

        Raises the LedgerError of the first failed check, without a batch index.
        """
        return self.append([envelope], batch=False, check_time=check_time).receipts[0]

    def _write(
        self,
        conn: Connection,
        state: SqlState,
        changes: Changes,
        new: list[Admitted],
        leaves: dict[str, bytes],
        start: int,
        *,
        before_signing: Callable[[], bool] | None = None,
    ) -> tuple[str, Frontier | None]:
        """Write the log rows, tree nodes, projections and checkpoint; return the note and
        the tree's new right edge, for the caller to keep once the transaction commits.

        ``before_signing`` (if given) is asked before the checkpoint is signed; a false
        answer raises, so that the caller's transaction rolls everything back.
        """
        if [r.event_id for r in changes.events] != [a.event_id for a in new] or any(
            r.seq != start + i for i, r in enumerate(changes.events)
        ):
            raise IntegrityError(
                "staging_mismatch", "The staged events do not match the admitted envelopes."
            )
        rows = []
        for seq, a in enumerate(new, start=start):
            body = a.envelope["body"]
            # the columns' order: seq, event_id, leaf_hash, envelope, time, type, actor, subject
            rows.append(
                (
                    seq,
                    a.event_id,
                    leaves[a.event_id],
                    a.leaf_data,
                    body["time"],
                    body["type"],
                    body["actor"],
                    event_subject(body),
                )
            )
        index_event_ids(conn, [(bytes.fromhex(row[1]), row[0]) for row in rows])
        _insert_rows(conn, tables.log, rows)
        merge_when_due(conn, start, start + len(rows))
        tree = AppendHashStore(conn, start, self._frontier)
        self.last_hash_store = tree
        root = merkle.append_leaves(tree, start, [leaves[a.event_id] for a in new])
        state.apply(changes)
        if start == 0:
            conn.execute(
                insert(tables.log_meta),
                {"key": "registrar_key", "value": new[0].envelope["signature"]["key"]},
            )
        if before_signing is not None and not before_signing():
            raise _BadSignatureInBatch
        checkpoint = self.log_signer.sign(start + len(new), root)
        conn.execute(
            insert(tables.checkpoints),
            {
                "size": checkpoint.size,
                "root": checkpoint.root,
                "note": checkpoint.note,
                "created_at": self.clock(),
            },
        )
        return checkpoint.note, tree.frontier(start + len(new))

    def _latest_note(self, conn: Connection, size: int) -> str:
        """The checkpoint of the current size (signed on the fly for the empty log)."""
        if size == 0:
            return self.log_signer.sign(0, merkle.EMPTY_ROOT).note
        note = conn.execute(
            select(tables.checkpoints.c.note).where(tables.checkpoints.c.size == size)
        ).scalar()
        if note is None:
            raise IntegrityError(
                "checkpoint_missing",
                f"The log holds {size} entries but no checkpoint of that size: the store is "
                "damaged; run the audit.",
            )
        return str(note)

    def _receipts(
        self,
        conn: Connection,
        admitted: list[Admitted],
        leaves: dict[str, bytes],
        start: int,
        note: str,
    ) -> list[Receipt]:
        """Receipts in order: new events and repeats in this batch get ``note``; events
        already logged get the checkpoint that first included them."""
        old_seqs = {a.existing.seq for a in admitted if a.existing is not None}
        old_seqs = {s for s in old_seqs if s < start}
        old_leaves: dict[int, bytes] = {}
        old_notes: dict[int, str] = {}
        if old_seqs:
            rows = conn.execute(
                select(tables.log.c.seq, tables.log.c.leaf_hash).where(
                    tables.log.c.seq.in_(old_seqs)
                )
            )
            old_leaves = {row.seq: bytes(row.leaf_hash) for row in rows}
            for seq in old_seqs:
                first = conn.execute(
                    select(tables.checkpoints.c.note)
                    .where(tables.checkpoints.c.size > seq)
                    .order_by(tables.checkpoints.c.size)
                    .limit(1)
                ).scalar()
                if first is None or seq not in old_leaves:
                    raise IntegrityError(
                        "checkpoint_missing",
                        f"No stored checkpoint includes entry {seq}: the store is damaged; "
                        "run the audit.",
                    )
                old_notes[seq] = str(first)
        receipts: list[Receipt] = []
        new = [a for a in admitted if a.existing is None]
        seq_of = {a.event_id: seq for seq, a in enumerate(new, start=start)}
        for a in admitted:
            if a.existing is None:
                seq, leaf, checkpoint = seq_of[a.event_id], leaves[a.event_id], note
            elif a.existing.seq >= start:  # repeated within this batch
                seq, leaf, checkpoint = a.existing.seq, leaves[a.event_id], note
            else:
                seq = a.existing.seq
                leaf, checkpoint = old_leaves[seq], old_notes[seq]
            receipts.append(
                {
                    "event_id": a.event_id,
                    "seq": seq,
                    "leaf_hash": leaf.hex(),
                    "checkpoint": checkpoint,
                }
            )
        return receipts

    # -- the log -----------------------------------------------------------------------

    def log_info(self) -> LogInfo:
        """The log's origin, verifier key, seq-0 registrar key, size and root (hex)."""
        with read_transaction(self.engine) as conn:
            size, root = self._head(conn)
            registrar = conn.execute(
                select(tables.log_meta.c.value).where(tables.log_meta.c.key == "registrar_key")
            ).scalar()
        return {
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "registrar_key": None if registrar is None else str(registrar),
            "size": size,
            "root": root.hex(),
        }

    def _head(self, conn: Connection) -> tuple[int, bytes]:
        """The latest (size, root): the largest checkpoint, every commit stores one."""
        row = conn.execute(
            select(tables.checkpoints.c.size, tables.checkpoints.c.root)
            .order_by(tables.checkpoints.c.size.desc())
            .limit(1)
        ).first()
        if row is None:
            return 0, merkle.EMPTY_ROOT
        return int(row.size), bytes(row.root)

    def size(self) -> int:
        """The number of entries in the log."""
        with read_transaction(self.engine) as conn:
            return log_size(conn)

    def latest_checkpoint(self) -> str:
        """The latest signed checkpoint note (the empty tree's, signed now, before seq 0)."""
        with read_transaction(self.engine) as conn:
            size, _ = self._head(conn)
            return self._latest_note(conn, size)

    def checkpoint_at(self, size: int) -> str | None:
        """The stored checkpoint of exactly ``size`` entries, or None."""
        with read_transaction(self.engine) as conn:
            note = conn.execute(
                select(tables.checkpoints.c.note).where(tables.checkpoints.c.size == size)
            ).scalar()
        return None if note is None else str(note)

    def entries(
        self, start: int = 0, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Log entries ``{seq, event_id, leaf_hash, envelope}`` from ``start``, and the next
        start (None at the end).

        Raises SchemaError for a negative start or a limit below 1.
        """
        if start < 0:
            raise SchemaError(f"start must be 0 or more, not {start}.")
        count = _limit(limit)
        t = tables.log
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                select(t.c.seq, t.c.event_id, t.c.leaf_hash, t.c.envelope)
                .where(t.c.seq >= start)
                .order_by(t.c.seq)
                .limit(count + 1)
            ).all()
        items = [_entry(row) for row in rows[:count]]
        return items, (rows[count].seq if len(rows) > count else None)

    def entry_by_id(self, event_id: str) -> dict[str, Any] | None:
        """The entry ``{event_id, seq, leaf_hash, envelope}`` of an event, or None."""
        t, key = tables.log, id_key(event_id)
        if key is None:
            return None
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                select(t.c.seq, t.c.event_id, t.c.leaf_hash, t.c.envelope).where(
                    t.c.seq.in_(seqs_of([key]))
                )
            ).all()
        row = _holding(rows, event_id)
        return None if row is None else _entry(row)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 audit path of entry ``index`` in the tree of ``size`` entries.

        Raises SchemaError unless 0 <= index < size <= the log's size.
        """
        with read_transaction(self.engine) as conn:
            current = log_size(conn)
            if not 0 <= index < size <= current:
                raise SchemaError(
                    f"An inclusion proof needs 0 <= index < size <= {current} (the log's size); "
                    f"got index={index}, size={size}."
                )
            return merkle.inclusion_proof(self._hash_store(conn), index, size, tree_size=current)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The RFC 9162 consistency proof from tree size ``first`` to ``second``.

        Raises SchemaError unless 1 <= first <= second <= the log's size.
        """
        with read_transaction(self.engine) as conn:
            current = log_size(conn)
            if not 1 <= first <= second <= current:
                raise SchemaError(
                    f"A consistency proof needs 1 <= first <= second <= {current} (the log's "
                    f"size); got first={first}, second={second}."
                )
            return merkle.consistency_proof(
                self._hash_store(conn), first, second, tree_size=current
            )

    # -- state -------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[SqlState]:
        """A StateReader over one read transaction (for views that read several objects).

        Raises whatever the database raises.
        """
        with read_transaction(self.engine) as conn:
            yield SqlState(conn)

    def actor(self, actor_id: str) -> ActorState | None:
        """An actor's state, or None."""
        with self.reader() as state:
            return state.actor(actor_id)

    def site(self, site_id: str) -> SiteState | None:
        """A site's state, or None."""
        with self.reader() as state:
            return state.site(site_id)

    def lot(self, lot_id: str) -> LotState | None:
        """A lot's state, or None."""
        with self.reader() as state:
            return state.lot(lot_id)

    def _page(
        self, query: Select[Any], seq_col: Any, key_col: Any, cursor: str | None, limit: int | None
    ) -> tuple[list[Any], str | None]:
        count = _limit(limit)
        after_seq, after_key = _decode_cursor(cursor)
        query = (
            query.where(or_(seq_col > after_seq, and_(seq_col == after_seq, key_col > after_key)))
            .order_by(seq_col, key_col)
            .limit(count + 1)
        )
        with read_transaction(self.engine) as conn:
            rows = conn.execute(query).all()
        page = rows[:count]
        more = len(rows) > count
        next_cursor = _encode_cursor(page[-1].seq, page[-1].key) if more and page else None
        return [row.doc for row in page], next_cursor

    def actors(
        self, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[ActorState], str | None]:
        """Actors in the order they were registered, and the next cursor (None at the end).

        Raises SchemaError for a bad cursor or a limit below 1.
        """
        a = tables.actors
        docs, nxt = self._page(
            select(a.c.doc, a.c.registered_seq.label("seq"), a.c.id.label("key")),
            a.c.registered_seq,
            a.c.id,
            cursor,
            limit,
        )
        return [ActorState.model_validate(d) for d in docs], nxt

    def sites(
        self, operator: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[SiteState], str | None]:
        """Sites in the order they were registered (optionally one operator's), and the
        next cursor.

        Raises SchemaError for a bad cursor or a limit below 1.
        """
        s = tables.sites
        query = select(s.c.doc, s.c.registered_seq.label("seq"), s.c.id.label("key"))
        if operator is not None:
            query = query.where(s.c.operator == operator)
        docs, nxt = self._page(query, s.c.registered_seq, s.c.id, cursor, limit)
        return [SiteState.model_validate(d) for d in docs], nxt

    def lots(
        self,
        custodian: str | None = None,
        site: str | None = None,
        status: str | None = None,
        risk: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[LotState], str | None]:
        """Lots in the order they were created, filtered, and the next cursor.

        ``site`` matches lots with that origin site. Raises SchemaError for an unknown
        status or risk, a bad cursor or a limit below 1.
        """
        if status is not None and status not in LOT_STATUSES:
            raise SchemaError(f"status must be one of {', '.join(sorted(LOT_STATUSES))}.")
        if risk is not None and risk not in LOT_RISKS:
            raise SchemaError(f"risk must be one of {', '.join(sorted(LOT_RISKS))}.")
        t = tables.lots
        seq_col = t.c.created_seq
        query = select(t.c.doc, t.c.created_seq.label("seq"), t.c.lot.label("key"))
        if site is not None:
            ls = tables.lot_sites
            query = query.join(ls, ls.c.lot == t.c.lot).where(ls.c.site == site)
            seq_col = ls.c.created_seq
        if custodian is not None:
            query = query.where(t.c.custodian == custodian)
        if status is not None:
            query = query.where(t.c.status == status)
        if risk is not None:
            query = query.where(t.c.risk == risk)
        docs, nxt = self._page(query, seq_col, t.c.lot, cursor, limit)
        return [LotState.model_validate(d) for d in docs], nxt

    def lot_events(
        self, lot_id: str, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The events that name a lot, oldest first, shaped as log entries, and the next
        cursor (an unknown lot has none).

        Raises SchemaError for a bad cursor or a limit below 1.
        """
        count = _limit(limit)
        after, _ = _decode_cursor(cursor)
        el, t = tables.event_lots, tables.log
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                select(t.c.seq, t.c.event_id, t.c.leaf_hash, t.c.envelope)
                .join(el, el.c.seq == t.c.seq)
                .where(el.c.lot == lot_id, el.c.seq > after)
                .order_by(el.c.seq)
                .limit(count + 1)
            ).all()
        page = rows[:count]
        nxt = _encode_cursor(page[-1].seq) if len(rows) > count else None
        return [_entry(row) for row in page], nxt

    def bundle(self, lot_id: str, label_at: str | None = None) -> dict[str, Any] | None:
        """The provenance bundle of a lot at its current head (PROTOCOL.md section 7), or
        None for an unknown lot.

        Raises NotFoundError ``unknown_event`` when ``label_at`` is not on the lot's own
        chain, IntegrityError when an event its provenance names is missing.
        """
        with read_transaction(self.engine) as conn:
            state = SqlState(conn)
            lot = state.lot(lot_id)
            if lot is None:
                return None
            if label_at is not None:
                el = tables.event_lots
                on_chain = conn.execute(
                    select(el.c.seq).where(el.c.lot == lot_id, el.c.event_id == label_at)
                ).first()
                if on_chain is None:
                    raise NotFoundError(
                        "unknown_event",
                        f"The event {label_at[:12]}… is not on the chain of lot '{lot_id}'.",
                    )
            size, _ = self._head(conn)
            note = self._latest_note(conn, size)
            registrar = conn.execute(
                select(tables.log_meta.c.value).where(tables.log_meta.c.key == "registrar_key")
            ).scalar()
            try:
                return build_bundle(
                    SqlLogReader(conn, size),
                    lot=lot_id,
                    head=lot.head,
                    label_at=label_at,
                    origin=self.origin,
                    verifier_key=self.verifier_key,
                    registrar_key=None if registrar is None else str(registrar),
                    checkpoint_note=note,
                    size=size,
                )
            except KeyError as e:
                raise IntegrityError(
                    "event_missing",
                    f"Lot '{lot_id}' names the event {e.args[0]}, which is not in the log: the "
                    "store is damaged; run the audit.",
                ) from e

    # -- group commit ------------------------------------------------------------------

    def append_each(
        self, envelopes: Sequence[object], *, check_time: bool = True
    ) -> list[AppendResult | LedgerError]:
        """Append envelopes as independent single appends, in one transaction (group commit).

        Each envelope is admitted on its own, in order, against the state left by the ones
        accepted before it, exactly as ``append_one`` would be called for each in turn: a
        refused one gets the LedgerError it would get alone (no batch index) and leaves no
        trace; a re-post (of a logged event, or of one accepted earlier in the group) gets
        the receipt as first issued. The new events are written together, with one tree
        update and one checkpoint that includes them all (PROTOCOL.md section 4 allows
        group commit). Returns, per envelope, what ``append([envelope], batch=False)``
        would return, or its error. Raises what the store raises (IntegrityError, a
        database error) when the transaction fails: then nothing is written.
        """
        if not envelopes:
            return []
        now = self.clock() if check_time else None
        items = [_prepared_or_raw(envelope) for envelope in envelopes]
        outcomes: list[Admitted | LedgerError] = []
        with write_transaction(self.engine) as conn:
            state = self._state(conn)
            state.prefetch(items)
            staged = StagedState(state)
            start = staged.size()
            for item in items:
                # each envelope stages its effects over the group's state, which takes them
                # only if every check passed: a refusal leaves the group's state as it was
                own = StagedState(staged)
                try:
                    admitted = admit(
                        own, item, origin=self.origin, registrar_key=self.registrar_key, now=now
                    )
                except LedgerError as e:
                    outcomes.append(e)
                    continue
                staged.apply(own.changes)
                outcomes.append(admitted)
            accepted = [o for o in outcomes if isinstance(o, Admitted)]
            new = [a for a in accepted if a.existing is None]
            leaves = {a.event_id: merkle.leaf_hash(a.leaf_data) for a in new}
            size = start + len(new)
            frontier = None
            if new:
                reads = state.reads()
                note, frontier = self._write(conn, state, staged.changes, new, leaves, start)
            elif accepted:
                note = self._latest_note(conn, size)
            else:  # every one refused
                return [o for o in outcomes if isinstance(o, LedgerError)]
            receipts = iter(self._receipts(conn, accepted, leaves, start, note))
        if frontier is not None:  # committed
            self._frontier = frontier
            self._keep(size, reads, staged.changes)
        results: list[AppendResult | LedgerError] = []
        for o in outcomes:
            if isinstance(o, LedgerError):
                results.append(o)
            else:
                created = o.existing is None
                results.append(AppendResult([next(receipts)], note, size, created, [created]))
        return results


# ---------------------------------------------------------------------------
# Start-up (PROTOCOL.md section 8)


def read_seed_file(path: str | os.PathLike[str], what: str = "log key") -> bytes | None:
    """The 32-byte Ed25519 seed in a key file (64 hex characters), or None if there is none.

    ``what`` names the key in messages. Raises IntegrityError (code ``log_key_unreadable``)
    if the file exists but cannot be read or does not hold a 64-hex seed.
    """
    try:
        content = Path(path).read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as e:
        raise IntegrityError(
            "log_key_unreadable", f"The {what} file {path} cannot be read: {e}."
        ) from e
    if not _HEX_SEED.fullmatch(content):
        raise IntegrityError(
            "log_key_unreadable",
            f"The {what} file {path} does not hold a key (64 hex characters).",
        )
    return bytes.fromhex(content)


def create_seed_file(path: str | os.PathLike[str]) -> bytes:
    """Write a new random Ed25519 seed, in hex, to a new file of mode 0600; return the seed.

    Used for the log key, and by the API for a generated registrar key. Raises
    FileExistsError if the file exists, OSError if it cannot be written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "File exists", str(target))
    seed = secrets.token_bytes(32)
    # Durable before it is used: the seed goes to a temporary file that is synced, then
    # appears whole under its name (a hard link, which fails like O_EXCL when the name is
    # taken), and the folder is synced. A crash or power cut never leaves an empty or
    # missing key behind a log whose checkpoints it signed.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(seed.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, target)  # FileExistsError (EEXIST) is raised as it is
        except OSError as e:  # a file system without hard links: the name, then its data
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            _write_new_synced(target, seed.hex() + "\n")
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(target.parent)
    return seed


def _write_new_synced(target: Path, text: str) -> None:
    """Create ``target`` (mode 0600, never an existing file) with ``text``, synced; on a
    failure, remove it."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    """Sync a folder, so that a name just created in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse(code: str, detail: str) -> IntegrityError:
    return IntegrityError(code, detail)


def open_ledger(
    url: str,
    *,
    origin: str,
    log_key_file: str | os.PathLike[str],
    registrar_key: str | None = None,
    clock: Callable[[], dt.datetime] = _utc_now,
    engine: Engine | None = None,
) -> Ledger:
    """Migrate the database, load (or, for an empty log, create) the log key, check that the
    database's log is the configured one, and return the Ledger.

    The first start records the origin and the log's public key in ``log_meta``. When
    ``registrar_key`` is None and the log has a seq 0, seq 0's key is used. Raises
    IntegrityError with a plain message, and starts nothing, when the log has another
    origin or another seq-0 key than configured, or has entries and the key file is missing,
    unreadable or holds another key.
    """
    own_engine = engine is None
    engine = engine if engine is not None else make_engine(url)
    try:
        migrate(engine)
        with write_transaction(engine) as conn:
            ledger = _check_and_bind(conn, engine, origin, log_key_file, registrar_key, clock)
    except BaseException:
        if own_engine:
            engine.dispose()
        raise
    return ledger


def _check_and_bind(
    conn: Connection,
    engine: Engine,
    origin: str,
    log_key_file: str | os.PathLike[str],
    registrar_key: str | None,
    clock: Callable[[], dt.datetime],
) -> Ledger:
    meta = {
        str(k): str(v)
        for k, v in conn.execute(select(tables.log_meta.c.key, tables.log_meta.c.value))
    }
    size = log_size(conn)
    latest = conn.execute(
        select(tables.checkpoints.c.note).order_by(tables.checkpoints.c.size.desc()).limit(1)
    ).scalar()
    started = size > 0 or latest is not None

    stored_origin = meta.get("origin")
    if started and stored_origin is not None and stored_origin != origin:
        raise _refuse(
            "origin_mismatch",
            f"This database holds the log {stored_origin!r}, but the server is configured "
            f"with the origin {origin!r} (GOLDTRAIL_ORIGIN). A log's origin never changes: "
            "set GOLDTRAIL_ORIGIN back, or point GOLDTRAIL_DATABASE_URL at another database.",
        )
    seq0_key = meta.get("registrar_key")
    if seq0_key is None and size > 0:
        envelope = conn.execute(select(tables.log.c.envelope).where(tables.log.c.seq == 0)).scalar()
        if envelope is None:
            raise _refuse("log_damaged", "The log has entries but no entry 0: run the audit.")
        seq0_key = str(json.loads(bytes(envelope))["signature"]["key"])
    if registrar_key is not None and seq0_key is not None and registrar_key != seq0_key:
        raise _refuse(
            "registrar_key_mismatch",
            f"This log was started by the registrar key {seq0_key}, but the server is "
            f"configured with {registrar_key} (GOLDTRAIL_REGISTRAR_KEY). Set it back to "
            "the key of the log's first entry, or leave it unset.",
        )

    seed = read_seed_file(log_key_file)
    if seed is None:
        if started:
            raise _refuse(
                "log_key_missing",
                f"The log key file {log_key_file} is missing, but this log already has "
                f"{size} entries signed under its key. Restore the key file "
                "(GOLDTRAIL_LOG_KEY_FILE): a new key would break every published checkpoint.",
            )
        try:
            seed = create_seed_file(log_key_file)
        except OSError as e:
            raise _refuse(
                "log_key_unwritable",
                f"The log key file {log_key_file} cannot be created: {e.strerror or e}. "
                "Set GOLDTRAIL_LOG_KEY_FILE to a file in a folder the server may write in.",
            ) from e
    try:
        signer = LogSigner(origin, seed)
    except ValueError as e:
        raise _refuse("bad_origin", f"The origin {origin!r} cannot be used: {e}") from e
    public_hex = signer.public_key.hex()
    if not started and public_hex in (registrar_key, seq0_key):
        # nothing is published yet: the log may still take another key (section 4)
        raise _refuse(
            "log_key_is_registrar_key",
            f"The log key file {log_key_file} (GOLDTRAIL_LOG_KEY_FILE) holds the registrar's "
            "key (GOLDTRAIL_REGISTRAR_KEY): the log signs its checkpoints with its own key, "
            "never the registrar's. Use another log key file, or remove this one to have a new "
            "key made.",
        )
    if started:
        stored_key = meta.get("log_public_key")
        wrong = stored_key is not None and stored_key != public_hex
        if not wrong and latest is not None:
            try:
                open_checkpoint(str(latest), signer.verifier_key)
            except LedgerError:
                wrong = True
        if wrong:
            raise _refuse(
                "log_key_mismatch",
                f"The log key file {log_key_file} holds another key than the one that signed "
                "this log's checkpoints. Restore the original key file "
                "(GOLDTRAIL_LOG_KEY_FILE).",
            )
    _upsert(
        conn,
        tables.log_meta,
        [{"key": "origin", "value": origin}, {"key": "log_public_key", "value": public_hex}],
        ["key"],
    )
    return Ledger(
        engine,
        origin=origin,
        log_signer=signer,
        registrar_key=registrar_key if registrar_key is not None else seq0_key,
        clock=clock,
    )
