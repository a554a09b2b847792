"""On PostgreSQL the server runs as a role that may only read and append to the log: the
migrations run as the schema's owner, who grants the application role SELECT and INSERT on
the log, its tree and its checkpoints, and full DML on the projections and log_meta. That
role cannot UPDATE, DELETE or TRUNCATE the log, nor switch the append-only triggers off."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from api.app import create_app
from api.settings import Settings
from clients.admin import admin_app
from ledger.admin import rebuild_projections, record_audit
from ledger.audit import audit
from ledger.pgroles import grant_app_role, migrate_as_owner, table_privileges
from ledger.protocol import public_key_hex
from ledger.store import make_engine, migrate, open_ledger
from tests.ops.conftest import NOW, _pg_admin, build_world

APPEND = {"SELECT", "INSERT"}
DML = {"SELECT", "INSERT", "UPDATE", "DELETE"}
EXPECTED = {
    "log": APPEND,
    "tree_nodes": APPEND,
    "checkpoints": APPEND,
    "log_meta": DML,
    "actors": DML,
    "actor_keys": DML,
    "prefixes": DML,
    "sites": DML,
    "lots": DML,
    "lot_sites": DML,
    "event_lots": DML,
    "event_ids": DML,
    "recent_event_ids": DML,
    "alembic_version": {"SELECT"},
}
#: what the application role tries, and PostgreSQL refuses for want of privilege
FORBIDDEN = [
    "UPDATE log SET type = 'x'",
    "DELETE FROM log",
    "TRUNCATE log",
    "UPDATE tree_nodes SET hash = hash",
    "DELETE FROM tree_nodes",
    "TRUNCATE tree_nodes",
    "UPDATE checkpoints SET note = 'x'",
    "DELETE FROM checkpoints",
    "TRUNCATE checkpoints CASCADE",
    # switching the triggers off first: only the owner (or a superuser) may
    "ALTER TABLE log DISABLE TRIGGER USER",
    "ALTER TABLE log DISABLE TRIGGER ALL",
    "ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_append_only",
    "DROP TRIGGER log_append_only ON log",
    "DROP TRIGGER log_no_truncate ON log",
    # nor the triggers that keep event ids unique and indexed
    "DROP TRIGGER log_indexed ON log",
    "ALTER TABLE recent_event_ids DISABLE TRIGGER event_id_new",
    "CREATE OR REPLACE FUNCTION goldtrail_event_id_new() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RETURN NEW; END $$",
    "SET session_replication_role = replica",
    "CREATE OR REPLACE FUNCTION goldtrail_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RETURN NEW; END $$",
    "ALTER TABLE log OWNER TO CURRENT_USER",
    "DROP TABLE log",
]


@pytest.fixture
def roles(postgres_url: str) -> Iterator[tuple[str, str, str]]:
    """A database owned by a fresh (non-superuser) owner role, and a fresh application
    role: (owner URL, application URL, application role)."""
    suffix = uuid.uuid4().hex[:10]
    owner, app, name = f"gt_owner_{suffix}", f"gt_app_{suffix}", f"t_roles_{suffix}"
    with _pg_admin(postgres_url) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE ROLE "{app}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    base = make_url(postgres_url).set(database=name)
    try:
        yield (
            base.set(username=owner).render_as_string(hide_password=False),
            base.set(username=app).render_as_string(hide_password=False),
            app,
        )
    finally:
        with _pg_admin(postgres_url) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'DROP ROLE IF EXISTS "{app}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def refused(engine: Engine, statement: str) -> str:
    """Run ``statement`` as the engine's role; return PostgreSQL's SQLSTATE (it must fail)."""
    with pytest.raises(sqlalchemy.exc.DBAPIError) as e, engine.begin() as conn:
        conn.execute(text(statement))
    sqlstate: str = getattr(e.value.orig, "sqlstate", "")
    return sqlstate


def test_the_app_role_appends_but_cannot_change_the_log(
    roles: tuple[str, str, str], tmp_path: Path
) -> None:
    owner_url, app_url, app = roles
    w = build_world()
    owner = make_engine(owner_url)
    try:
        migrate(owner)
        grant_app_role(owner, app)
        assert table_privileges(owner, app) == EXPECTED
        # a role that owns the tables, or does not exist, is refused
        with pytest.raises(ValueError, match="owns the log"):
            grant_app_role(owner, str(make_url(owner_url).username))
        with pytest.raises(ValueError, match="no PostgreSQL role"):
            grant_app_role(owner, "no_such_role_here")
    finally:
        owner.dispose()

    led = open_ledger(
        app_url,
        origin=w.origin,
        log_key_file=tmp_path / "log.key",
        registrar_key=public_key_hex(w.registrar_key),
        clock=lambda: NOW,
    )
    try:
        envelopes = w.envelopes()
        led.append(envelopes[:20], check_time=False)
        led.append(envelopes[20:], check_time=False)
        size = led.size()
        assert size == len(envelopes)

        for statement in FORBIDDEN:
            assert refused(led.engine, statement) == "42501", statement  # insufficient_privilege
        with led.engine.begin() as conn:  # only a warning ("no privileges were granted")
            conn.execute(text(f'GRANT UPDATE, DELETE, TRUNCATE ON log TO "{app}"'))
        assert table_privileges(led.engine, app) == EXPECTED

        # projections and log_meta stay the application's to rebuild and annotate
        assert rebuild_projections(led.engine, led.origin, led.registrar_key) == size
        report = audit(
            led.engine,
            origin=led.origin,
            verifier_key=led.verifier_key,
            registrar_key=led.registrar_key,
        )
        assert report.ok, report.problems
        record_audit(led.engine, report)
        assert led.size() == size
    finally:
        led.engine.dispose()


def test_the_server_migrates_as_owner_and_serves_as_the_app_role(
    roles: tuple[str, str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner_url, app_url, app = roles
    w = build_world()
    settings = Settings(
        database_url=app_url,
        migrate_database_url=owner_url,
        origin=w.origin,
        log_key_file=str(tmp_path / "log.key"),
        registrar_key=public_key_hex(w.registrar_key),
    )
    with caplog.at_level(logging.WARNING, logger="goldtrail"):
        created = create_app(settings)
    assert "can change the log" not in caplog.text
    try:
        with TestClient(created) as client:
            posted = client.post("/v1/events/batch", json={"events": w.envelopes()})
            assert posted.status_code == 201, posted.text
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
        engine = created.state.runtime.store.engine
        assert str(engine.url.username) == app
        assert refused(engine, "DELETE FROM log") == "42501"
    finally:
        created.state.runtime.store.engine.dispose()
    owner = make_engine(owner_url)
    try:
        assert table_privileges(owner, app) == EXPECTED
    finally:
        owner.dispose()
    # again, through the command line: nothing to migrate, the grants given again
    env = {
        "GOLDTRAIL_DATABASE_URL": app_url,
        "GOLDTRAIL_MIGRATE_DATABASE_URL": owner_url,
    }
    done: Any = CliRunner().invoke(admin_app, ["migrate"], env=env)
    assert done.exit_code == 0, done.output
    assert f"the role {app} may read and append" in done.stdout
    assert migrate_as_owner(owner_url, app_url) == app


def test_a_server_running_as_the_owner_or_a_superuser_warns_at_start(
    roles: tuple[str, str, str], postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8, "the server runs as a role that may only SELECT and INSERT on the log", and
    see when something goes wrong: a server given the owner's (or a superuser's) URL runs,
    but says at start that the database's privileges do not guard the log."""
    owner_url, _app_url, _app = roles
    w = build_world()
    owner = str(make_url(owner_url).username)
    superuser = make_url(owner_url).set(username=make_url(postgres_url).username)
    for url, reason in (
        (owner_url, f"the role {owner} owns the log"),
        (superuser.render_as_string(hide_password=False), "is a superuser"),
    ):
        settings = Settings(
            database_url=url,
            origin=w.origin,
            log_key_file=str(tmp_path / "log.key"),
            registrar_key=public_key_hex(w.registrar_key),
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="goldtrail"):
            created = create_app(settings)
        created.state.runtime.store.engine.dispose()
        lines = [r.getMessage() for r in caplog.records if "can change the log" in r.getMessage()]
        assert len(lines) == 1, caplog.text
        assert reason in lines[0]
