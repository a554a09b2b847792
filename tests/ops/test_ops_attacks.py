"""What an operator hits when things go wrong around a running goldtrail: the schema is
newer than the code, the database or the log key goes away under the server, an import file
is tampered with or truncated, a compose file ships a default origin, an error line hides
its reason."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from api.app import create_app
from api.observability import JsonFormatter
from api.settings import Settings
from clients.admin import admin_app
from ledger import tables
from ledger.admin import ImportRefused, export_log, import_log, record_audit
from ledger.audit import audit
from ledger.protocol import public_key_hex
from ledger.store import Ledger, make_engine, migrate
from tests.ops.conftest import GOLDTRAIL, REPO, build_world, flip_a_digit, open_world_ledger

FUTURE_REVISION = "0099_from_a_newer_goldtrail"


def env_for(url: str, key_file: Path) -> dict[str, str]:
    w = build_world()
    return {
        "GOLDTRAIL_DATABASE_URL": url,
        "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
        "GOLDTRAIL_ORIGIN": w.origin,
        "GOLDTRAIL_LOG_KEY_FILE": str(key_file),
        "GOLDTRAIL_REGISTRAR_KEY": public_key_hex(w.registrar_key),
    }


def serve_refused(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``goldtrail serve`` that must exit by itself (it refuses to start)."""
    return subprocess.run(
        [str(GOLDTRAIL), "serve", "--host", "127.0.0.1", "--port", "9"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def counts(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in tables.metadata.sorted_tables
            if t.name != "log_meta"
        }


# ---------------------------------------------------------------------------
# A schema newer than the code, a database that does not answer at start


def test_a_schema_newer_than_the_code_is_refused_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE alembic_version SET version_num = '{FUTURE_REVISION}'"))
        env = env_for(database_url, tmp_path / "log.key")

        started = serve_refused(env, tmp_path)
        assert started.returncode == 2, started.stderr
        assert started.stderr.splitlines() == [
            f"goldtrail: cannot start: The database's schema is at revision {FUTURE_REVISION}, "
            "which this goldtrail does not know (its newest is 0002_event_id_index): a newer "
            "goldtrail migrated it. Run that version (or newer); this one must not write to it."
        ]
        migrated = CliRunner().invoke(admin_app, ["migrate"], env=env)
        assert migrated.exit_code == 1
        assert migrated.stderr.startswith(
            f"error: The database's schema is at revision {FUTURE_REVISION}, which this "
        )
        assert migrated.stderr.endswith("(schema_too_new)\n")
        # nothing was written: no key, no log, the version as it was
        assert not (tmp_path / "log.key").exists()
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == FUTURE_REVISION
        assert set(counts(engine).values()) == {0}
    finally:
        engine.dispose()


def test_a_database_that_does_not_answer_at_start_is_one_plain_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://goldtrail_app:pw-9f2c@127.0.0.1:{port}/goldtrail"
    started = serve_refused(env_for(url, tmp_path / "log.key"), tmp_path)
    assert started.returncode == 2, started.stderr
    (line,) = started.stderr.splitlines()
    assert line.startswith(
        f"goldtrail: cannot start: cannot use the database "
        f"postgresql+psycopg://goldtrail_app:***@127.0.0.1:{port}/goldtrail: connection failed"
    ), line
    assert "pw-9f2c" not in started.stderr


# ---------------------------------------------------------------------------
# /readyz when the log key or the SQLite file goes away after start


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[TestClient, Path, Path]]:
    key_file, db = tmp_path / "keys" / "log.key", tmp_path / "g.db"
    env = env_for(f"sqlite:///{db}", key_file)
    settings = Settings(
        database_url=env["GOLDTRAIL_DATABASE_URL"],
        origin=env["GOLDTRAIL_ORIGIN"],
        log_key_file=str(key_file),
        registrar_key=env["GOLDTRAIL_REGISTRAR_KEY"],
    )
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            posted = client.post("/v1/events/batch", json={"events": build_world().envelopes()})
            assert posted.status_code == 201, posted.text
            assert client.get("/readyz").status_code == 200
            yield client, key_file, db
    finally:
        app.state.runtime.store.engine.dispose()


def test_readyz_when_the_log_key_file_is_removed_or_replaced(
    sqlite_app: tuple[TestClient, Path, Path],
) -> None:
    client, key_file, _db = sqlite_app
    original = key_file.read_bytes()
    key_file.unlink()
    gone = client.get("/readyz")
    assert gone.status_code == 503
    assert gone.json()["checks"]["log_key"] is False
    assert gone.json()["checks"]["log_key_problem"] == (
        f"The log key file {key_file} is missing: the server signs with the key it loaded at "
        "start, but will not start again until the file is restored."
    )
    key_file.write_text("11" * 32 + "\n")
    other = client.get("/readyz")
    assert other.status_code == 503
    assert other.json()["checks"]["log_key_problem"] == (
        f"The log key file {key_file} now holds another key than the one this server signs "
        "with: it will not start again until the original file is restored."
    )
    key_file.write_text("not a key")
    assert client.get("/readyz").json()["checks"]["log_key"] is False
    key_file.write_bytes(original)
    back = client.get("/readyz")
    assert back.status_code == 200, back.text
    assert "log_key_problem" not in back.json()["checks"]


def test_readyz_and_appends_when_the_sqlite_file_is_removed(
    sqlite_app: tuple[TestClient, Path, Path],
) -> None:
    client, _key_file, db = sqlite_app
    size = client.get("/v1/log").json()["size"]
    moved = db.with_name("moved.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").rename(f"{moved}{suffix}")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] is False
    assert checks["database_problem"] == (
        f"The database file {db} was removed or replaced after the server started: what it "
        "writes now would be lost at the next start. Restore the file and restart the server."
    )
    # an append now would be acknowledged, then lost: refused instead
    w = build_world()
    more = w.register_lot(post=False).envelope
    refused = client.post("/v1/events", json=more)
    assert refused.status_code == 503
    assert refused.json()["code"] == "database_moved"
    engine = make_engine(f"sqlite:///{moved}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM log")).scalar() == size
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# Import: a tampered or truncated export leaves the target as it was


def test_a_tampered_import_leaves_the_target_exactly_as_it_was(
    logged: Ledger, database_url: str, tmp_path: Path
) -> None:
    lines = list(export_log(logged.engine))
    seq = 15
    lines[seq] = flip_a_digit(lines[seq].encode()).decode()
    target_url = f"sqlite:///{tmp_path}/target.db"
    target = open_world_ledger(target_url, tmp_path / "log.key")
    try:
        before = counts(target.engine)
        with pytest.raises(ImportRefused) as refused:
            import_log(target, lines, batch_size=5)
        assert (refused.value.code, refused.value.line, refused.value.seq) == (
            "bad_signature",
            seq + 1,
            seq,
        )
        assert counts(target.engine) == before == dict.fromkeys(before, 0)
        assert target.size() == 0
        # and the real export goes in afterwards, to the same root
        root = import_log(target, list(export_log(logged.engine)), batch_size=5)
        assert root.hex() == logged.log_info()["root"]
    finally:
        target.engine.dispose()


def test_a_truncated_export_file_is_refused_naming_its_last_line(
    logged: Ledger, tmp_path: Path
) -> None:
    lines = list(export_log(logged.engine))
    key_file = tmp_path / "log.key"
    for cut, why in ((len(lines[-1]) // 2, "strict JSON"), (len(lines[-1]), "newline")):
        export = tmp_path / f"cut-{cut}.jsonl"
        export.write_text("".join(line + "\n" for line in lines[:-1]) + lines[-1][:cut])
        target = f"sqlite:///{tmp_path}/target-{cut}.db"
        done = CliRunner().invoke(admin_app, ["import", str(export)], env=env_for(target, key_file))
        assert done.exit_code == 1, done.output
        assert f"line {len(lines)} (seq {len(lines) - 1})" in done.stderr, done.stderr
        engine = make_engine(target)
        try:
            assert set(counts(engine).values()) == {0}, why
        finally:
            engine.dispose()
    # the whole file, from stdin, goes in
    whole = "".join(line + "\n" for line in lines)
    done = CliRunner().invoke(
        admin_app,
        ["import", "-"],
        input=whole,
        env=env_for(f"sqlite:///{tmp_path}/whole.db", key_file),
    )
    assert done.exit_code == 0, done.output
    assert f"root {logged.log_info()['root']}" in done.stdout


# ---------------------------------------------------------------------------
# compose.yaml and error lines


def test_compose_ships_no_default_origin_or_public_url() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    env = compose["services"]["goldtrail"]["environment"]
    assert env["GOLDTRAIL_ORIGIN"] == "${GOLDTRAIL_ORIGIN:?set GOLDTRAIL_ORIGIN}"
    assert env["GOLDTRAIL_PUBLIC_URL"] == "${GOLDTRAIL_PUBLIC_URL:?set GOLDTRAIL_PUBLIC_URL}"


def test_an_error_line_says_what_the_database_refused_without_its_parameters(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ro.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    engine.dispose()
    readonly = make_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with readonly.begin() as conn:
            conn.execute(tables.log_meta.insert().values(key="k", value="Amani Canary-Kahindo"))
    except sqlalchemy.exc.OperationalError:
        record = logging.LogRecord(
            "goldtrail.api", logging.ERROR, "x", 1, "unexpected error", (), sys.exc_info()
        )
    finally:
        readonly.dispose()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["error"] == (
        "OperationalError: (sqlite3.OperationalError) attempt to write a readonly database"
    )
    assert "Amani" not in json.dumps(entry)


# ---------------------------------------------------------------------------
# Durability the server cannot give


def test_a_postgresql_without_fsync_is_a_warning_at_start(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8, never lose a signed event, and see when something goes wrong: PostgreSQL
    with fsync off (as the throwaway test server runs) may lose acknowledged events at a
    power cut; goldtrail cannot change that, so it says so at start. SQLite: no warning."""
    w = build_world()
    settings = Settings(
        database_url=database_url,
        origin=w.origin,
        log_key_file=str(tmp_path / "log.key"),
        registrar_key=public_key_hex(w.registrar_key),
    )
    with caplog.at_level(logging.WARNING, logger="goldtrail"):
        app = create_app(settings)
    app.state.runtime.store.engine.dispose()
    warnings = [r.getMessage() for r in caplog.records if "fsync" in r.getMessage()]
    if database_url.startswith("postgresql"):
        assert warnings and "PostgreSQL runs with fsync off" in warnings[0], caplog.text
    else:
        assert not warnings


def _ready_gauges(text: str) -> dict[str, float]:
    found = re.findall(r'^goldtrail_ready\{check="([a-z_]+)"\} ([0-9.]+)$', text, re.M)
    return {check: float(value) for check, value in found}


def test_metrics_say_which_readiness_check_fails_and_answer_when_the_database_does_not(
    sqlite_app: tuple[TestClient, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8, /metrics ("must see when something goes wrong"): a Prometheus server that
    scrapes /metrics sees each /readyz check as a gauge, and still gets its metrics when
    the database cannot be read (the log size is then its last known value)."""
    client, key_file, _db = sqlite_app
    sound = client.get("/metrics")
    assert sound.status_code == 200
    assert _ready_gauges(sound.text) == {
        "database": 1.0,
        "log_key": 1.0,
        "integrity": 1.0,
        "audit": 1.0,
    }
    size = client.get("/v1/log").json()["size"]
    assert f"goldtrail_log_size {float(size)}" in sound.text

    original = key_file.read_bytes()
    key_file.unlink()
    assert _ready_gauges(client.get("/metrics").text)["log_key"] == 0.0
    key_file.write_bytes(original)

    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.store, "size", down)
    monkeypatch.setattr(runtime.store.engine, "connect", down)
    blind = client.get("/metrics")
    assert blind.status_code == 200, blind.text
    assert _ready_gauges(blind.text)["database"] == 0.0
    assert f"goldtrail_log_size {float(size)}" in blind.text


def test_the_placeholder_origin_is_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8, settings from the environment: `docker run` without GOLDTRAIL_ORIGIN binds
    the new log to the placeholder origin for ever; the server says so at start (a
    configured origin gives no such line)."""
    for origin, warned in ((Settings.model_fields["origin"].default, True), ("x.org/log", False)):
        folder = tmp_path / origin.replace("/", "_")
        folder.mkdir()
        settings = Settings(
            database_url=f"sqlite:///{folder}/ledger.db",
            origin=origin,
            log_key_file=str(folder / "log.key"),
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="goldtrail"):
            app = create_app(settings)
        app.state.runtime.store.engine.dispose()
        lines = [r.getMessage() for r in caplog.records if "GOLDTRAIL_ORIGIN" in r.getMessage()]
        assert bool(lines) == warned, caplog.text
        if warned:
            assert f"placeholder origin {origin!r}" in lines[0]


def test_metrics_give_the_time_of_the_last_recorded_audit(
    sqlite_app: tuple[TestClient, Path, Path],
) -> None:
    """Issue 8, /metrics and `admin audit`: the README asks for a nightly audit; a
    Prometheus rule can only see that it stopped running (a broken cron job, a dead
    container) from the time of the last recorded one, and whether it was green."""
    client, _key_file, _db = sqlite_app

    def audited_at(text: str) -> float:
        found = re.search(r"^goldtrail_last_audit_timestamp_seconds (\S+)$", text, re.M)
        assert found is not None, text
        return float(found.group(1))

    assert audited_at(client.get("/metrics").text) == 0.0
    engine = client.app.state.runtime.store.engine  # type: ignore[attr-defined]
    at = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)
    report = audit(
        engine,
        origin=build_world().origin,
        verifier_key=client.get("/v1/log").json()["verifier_key"],
    )
    assert report.ok
    record_audit(engine, report, at=at)
    text = client.get("/metrics").text
    assert audited_at(text) == at.timestamp()
    assert _ready_gauges(text)["audit"] == 1.0
