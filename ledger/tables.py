"""The database schema: the append-only log, its Merkle tree and checkpoints, and projections.

One ``MetaData`` describes every table; the Alembic migrations in ``ledger/migrations`` own
the schema in a real database (and add the append-only triggers, which SQLAlchemy metadata
cannot express). A test checks that the two agree.

- ``log``, ``tree_nodes`` and ``checkpoints`` are the truth and are append-only: the
  database itself refuses UPDATE, DELETE (and TRUNCATE on PostgreSQL) on them.
- ``event_ids`` and ``recent_event_ids`` find an event's seq by its id (see below).
- ``log_meta`` holds what the log is bound to: its origin, its public key, seq 0's key.
- ``actors``, ``actor_keys``, ``prefixes``, ``sites``, ``lots``, ``lot_sites`` and
  ``event_lots`` are projections: rebuildable from the log, checked against it by the audit.
  Each projection row keeps the pydantic state object as a JSON ``doc`` plus the few columns
  that queries filter or sort on.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: the tables the database refuses to change or delete rows of
APPEND_ONLY_TABLES = ("log", "tree_nodes", "checkpoints")

# -- the log -----------------------------------------------------------------------------

log = Table(
    "log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    # unique, but indexed by event_ids and recent_event_ids, not here
    Column("event_id", String(64), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    # exactly JCS(envelope): the leaf data, byte for byte
    Column("envelope", LargeBinary, nullable=False),
    Column("time", String(20), nullable=False),
    Column("type", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    # what an actor.* event is about (its subject) or a site.* event (its site); else NULL
    Column("subject", String(64), nullable=True),
    Index(None, "subject", "seq"),
)

# -- which seq holds an event id --------------------------------------------------------
# Event ids are SHA-256 hashes: in one B-tree over all of them, every new id lands on a
# leaf of its own, so a batch of appends writes about one index page per event once the
# index outgrows the cache, scattered over the whole database file. Instead, new ids go to
# ``recent_event_ids`` (small, so a batch's ids share its few pages), and every
# ``store.MERGE_EVERY`` entries they move to ``event_ids`` in one sorted pass, which
# writes each leaf of the big index once for all its new ids. An id is in exactly one of the two
# (the store looks in both; the audit checks both against the log; a rebuild refills them).
# The database keeps the ids unique as the log's UNIQUE index did (migration 0002's
# triggers): a log row is refused unless ``recent_event_ids`` already holds its id at its
# seq, and ``recent_event_ids`` refuses an id that ``event_ids`` holds.


def _event_id_table(name: str, *extra: Index) -> Table:
    """A part of the event-id index: an id's 32 bytes -> its seq."""
    return Table(
        name,
        metadata,
        Column("event_id", LargeBinary(32), primary_key=True),
        Column("seq", BigInteger, nullable=False),
        *extra,
        sqlite_with_rowid=False,
    )


event_ids = _event_id_table("event_ids")
# by seq too: the database checks each new log row against it (migration 0002's triggers)
recent_event_ids = _event_id_table("recent_event_ids", Index(None, "seq"))

tree_nodes = Table(
    "tree_nodes",
    metadata,
    # the complete subtree of 2**level leaves starting at leaf idx * 2**level
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

log_meta = Table(
    "log_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- projections -------------------------------------------------------------------------

actors = Table(
    "actors",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("is_registrar", Boolean, nullable=False),
    Column("registered_seq", BigInteger, nullable=False, index=True),
    Column("doc", JSON, nullable=False),
)

actor_keys = Table(
    "actor_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("actor", String(64), nullable=False, index=True),
)

prefixes = Table(
    "prefixes",
    metadata,
    Column("prefix", String(17), primary_key=True),
    Column("actor", String(64), nullable=False, index=True),
)

sites = Table(
    "sites",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("operator", String(64), nullable=False, index=True),
    Column("registered_seq", BigInteger, nullable=False, index=True),
    Column("doc", JSON, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("lot", String(48), primary_key=True),
    Column("custodian", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("risk", String(16), nullable=False),
    Column("hold", Boolean, nullable=False),
    # origin site ids, sorted, space-separated (for reading; filter through lot_sites)
    Column("origins", Text, nullable=False),
    Column("created_seq", BigInteger, nullable=False),
    Column("doc", JSON, nullable=False),
    Index(None, "created_seq"),
    Index(None, "custodian", "created_seq"),
    Index(None, "status", "created_seq"),
    Index(None, "risk", "created_seq"),
)

lot_sites = Table(
    "lot_sites",
    metadata,
    # one row per (origin site, lot): GET /v1/lots?site=
    Column("site", String(64), primary_key=True),
    Column("lot", String(48), primary_key=True),
    Column("created_seq", BigInteger, nullable=False),
    Index(None, "site", "created_seq"),
)

event_lots = Table(
    "event_lots",
    metadata,
    # every lot an event names (lot, inputs[].lot, outputs[].lot): a lot's own chain
    Column("lot", String(48), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False),
)
