"""Alembic migrations that own the database schema (run them with ``ledger.store.migrate``)."""
