"""Initial schema: the append-only log, tree and checkpoints, log metadata, projections.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("log", "tree_nodes", "checkpoints")
MESSAGE = "the log is append-only"


def _create_tables() -> None:
    op.create_table(
        "log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("time", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_log"),
        sa.UniqueConstraint("event_id", name="uq_log_event_id"),
    )
    op.create_index("ix_log_subject_seq", "log", ["subject", "seq"])
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_tree_nodes"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_checkpoints"),
    )
    op.create_table(
        "log_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_log_meta"),
    )
    op.create_table(
        "actors",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_registrar", sa.Boolean(), nullable=False),
        sa.Column("registered_seq", sa.BigInteger(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actors"),
    )
    op.create_index("ix_actors_registered_seq", "actors", ["registered_seq"])
    op.create_table(
        "actor_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_actor_keys"),
    )
    op.create_index("ix_actor_keys_actor", "actor_keys", ["actor"])
    op.create_table(
        "prefixes",
        sa.Column("prefix", sa.String(length=17), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name="pk_prefixes"),
    )
    op.create_index("ix_prefixes_actor", "prefixes", ["actor"])
    op.create_table(
        "sites",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("registered_seq", sa.BigInteger(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
    )
    op.create_index("ix_sites_operator", "sites", ["operator"])
    op.create_index("ix_sites_registered_seq", "sites", ["registered_seq"])
    op.create_table(
        "lots",
        sa.Column("lot", sa.String(length=48), nullable=False),
        sa.Column("custodian", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("origins", sa.Text(), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("lot", name="pk_lots"),
    )
    op.create_index("ix_lots_created_seq", "lots", ["created_seq"])
    op.create_index("ix_lots_custodian_created_seq", "lots", ["custodian", "created_seq"])
    op.create_index("ix_lots_status_created_seq", "lots", ["status", "created_seq"])
    op.create_index("ix_lots_risk_created_seq", "lots", ["risk", "created_seq"])
    op.create_table(
        "lot_sites",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("lot", sa.String(length=48), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "lot", name="pk_lot_sites"),
    )
    op.create_index("ix_lot_sites_site_created_seq", "lot_sites", ["site", "created_seq"])
    op.create_table(
        "event_lots",
        sa.Column("lot", sa.String(length=48), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("lot", "seq", name="pk_event_lots"),
    )


def _create_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION goldtrail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% (table %)', "
            f"'{MESSAGE}', TG_TABLE_NAME USING ERRCODE = 'restrict_violation'; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION goldtrail_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION goldtrail_append_only()"
            )
    else:
        raise RuntimeError(f"goldtrail supports SQLite and PostgreSQL, not {dialect}.")


def upgrade() -> None:
    """Create every table and the triggers that make the log, tree and checkpoints final."""
    _create_tables()
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    """Drop everything (a database without its log is no ledger: for tests only)."""
    dialect = op.get_bind().dialect.name
    for table in (
        "event_lots",
        "lot_sites",
        "lots",
        "sites",
        "prefixes",
        "actor_keys",
        "actors",
        "log_meta",
        "checkpoints",
        "tree_nodes",
        "log",
    ):
        op.drop_table(table)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION goldtrail_append_only()")
