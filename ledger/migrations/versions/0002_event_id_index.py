"""Event ids indexed by ``event_ids`` and ``recent_event_ids`` instead of a unique index
on ``log.event_id`` (see ``ledger.tables``: new ids no longer land on random leaves of one
big index, so an append's cost stays flat as the log grows).

Revision ID: 0002_event_id_index
Revises: 0001_initial
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_event_id_index"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "the log is append-only"
CHUNK = 20_000


def _create(name: str) -> None:
    op.create_table(
        name,
        sa.Column("event_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


def _fill_event_ids() -> None:
    """Every entry's (id, seq) into ``event_ids``, in id order."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT event_id, seq FROM log")).all()
    pairs = sorted((bytes.fromhex(str(event_id)), int(seq)) for event_id, seq in rows)
    insert = sa.text("INSERT INTO event_ids (event_id, seq) VALUES (:event_id, :seq)")
    for at in range(0, len(pairs), CHUNK):
        conn.execute(insert, [{"event_id": e, "seq": s} for e, s in pairs[at : at + CHUNK]])


#: what the triggers say when they refuse a row
NOT_INDEXED = "a log entry is written only after its event id is indexed at its seq"
TWICE = "this event id is already in the log"


def _create_triggers(dialect: str) -> None:
    """The database keeps event ids unique, as the log's UNIQUE index did: a log row is
    refused unless ``recent_event_ids`` holds its id at its seq (so a writer that does not
    index, such as a server of an older version still running, cannot append), and
    ``recent_event_ids`` refuses an id that ``event_ids`` holds (its primary key refuses
    one it holds itself)."""
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER log_indexed BEFORE INSERT ON log WHEN NOT EXISTS "
            "(SELECT 1 FROM recent_event_ids WHERE seq = NEW.seq "
            "AND lower(hex(event_id)) = NEW.event_id) "
            f"BEGIN SELECT RAISE(ABORT, '{NOT_INDEXED}'); END"
        )
        op.execute(
            "CREATE TRIGGER event_id_new BEFORE INSERT ON recent_event_ids WHEN EXISTS "
            "(SELECT 1 FROM event_ids WHERE event_id = NEW.event_id) "
            f"BEGIN SELECT RAISE(ABORT, '{TWICE}'); END"
        )
    else:
        op.execute(
            "CREATE FUNCTION goldtrail_log_indexed() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NOT EXISTS (SELECT 1 FROM recent_event_ids WHERE seq = NEW.seq "
            "AND event_id = decode(NEW.event_id, 'hex')) THEN "
            f"RAISE EXCEPTION '{NOT_INDEXED} (seq %)', NEW.seq "
            "USING ERRCODE = 'integrity_constraint_violation'; END IF; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER log_indexed BEFORE INSERT ON log "
            "FOR EACH ROW EXECUTE FUNCTION goldtrail_log_indexed()"
        )
        op.execute(
            "CREATE FUNCTION goldtrail_event_id_new() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF EXISTS (SELECT 1 FROM event_ids WHERE event_id = NEW.event_id) THEN "
            f"RAISE EXCEPTION '{TWICE} (seq %)', NEW.seq USING ERRCODE = 'unique_violation'; "
            "END IF; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER event_id_new BEFORE INSERT ON recent_event_ids "
            "FOR EACH ROW EXECUTE FUNCTION goldtrail_event_id_new()"
        )


def _drop_triggers(dialect: str) -> None:
    op.execute(
        "DROP TRIGGER event_id_new" + ("" if dialect == "sqlite" else " ON recent_event_ids")
    )
    if dialect == "sqlite":
        op.execute("DROP TRIGGER log_indexed")
    else:
        op.execute("DROP TRIGGER log_indexed ON log")
        op.execute("DROP FUNCTION goldtrail_log_indexed()")
        op.execute("DROP FUNCTION goldtrail_event_id_new()")


def upgrade() -> None:
    """Create and fill the two tables, then drop the unique index on ``log.event_id``
    (SQLite cannot drop a table's constraint: the log is copied into a new table without
    it, and its append-only triggers made again), and add the triggers that keep ids
    unique."""
    _create("event_ids")
    _create("recent_event_ids")
    op.create_index("ix_recent_event_ids_seq", "recent_event_ids", ["seq"])
    _fill_event_ids()
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("log", recreate="always") as batch:
            batch.drop_constraint("uq_log_event_id", type_="unique")
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER log_no_{action.lower()} BEFORE {action} ON log "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
    else:
        op.drop_constraint("uq_log_event_id", "log", type_="unique")
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    """Put the unique index on ``log.event_id`` back and drop the two tables."""
    _drop_triggers(op.get_bind().dialect.name)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("log", recreate="always") as batch:
            batch.create_unique_constraint("uq_log_event_id", ["event_id"])
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER log_no_{action.lower()} BEFORE {action} ON log "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
    else:
        op.create_unique_constraint("uq_log_event_id", "log", ["event_id"])
    op.drop_table("recent_event_ids")
    op.drop_table("event_ids")
