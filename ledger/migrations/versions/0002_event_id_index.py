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


def upgrade() -> None:
    """Create and fill the two tables, then drop the unique index on ``log.event_id``
    (SQLite cannot drop a table's constraint: the log is copied into a new table without
    it, and its append-only triggers made again)."""
    _create("event_ids")
    _create("recent_event_ids")
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


def downgrade() -> None:
    """Put the unique index on ``log.event_id`` back and drop the two tables."""
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
