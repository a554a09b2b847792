"""Alembic environment: runs the migrations on the connection ``ledger.store.migrate`` passes.

Run from the command line (``alembic upgrade head`` with the repository's alembic.ini and
``GOLDTRAIL_DATABASE_URL`` or ``sqlalchemy.url`` set), it makes its own engine instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from ledger.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Upgrade on the given connection, or on one to the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from ledger.store import make_engine, write_transaction

    url = os.environ.get("GOLDTRAIL_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("Set GOLDTRAIL_DATABASE_URL or sqlalchemy.url to run migrations.")
    engine = make_engine(url)
    try:
        with write_transaction(engine) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("goldtrail migrations run online only (they create triggers per dialect).")
run_migrations_online()
