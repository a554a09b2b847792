"""``ledger.admin`` and ``goldtrail admin`` on SQLite and PostgreSQL: export and import give
the same root, rebuilding the projections repairs them, the audit command names the first
bad entry, and ``/readyz`` stays honest about a damaged log."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from api.app import create_app
from api.settings import Settings
from clients.admin import admin_app
from ledger import tables
from ledger.admin import (
    ImportRefused,
    export_log,
    import_log,
    last_audit,
    quick_check,
    rebuild_projections,
    root_of_lines,
)
from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.errors import ConflictError, IntegrityError, LedgerError
from ledger.protocol import public_key_hex
from ledger.store import Ledger, make_engine, open_ledger
from tests.ops.conftest import (
    GOLDTRAIL,
    behind_the_stores_back,
    build_world,
    flip_a_digit,
    open_world_ledger,
)


def audit_of(led: Ledger) -> Any:
    return audit(
        led.engine,
        origin=led.origin,
        verifier_key=led.verifier_key,
        registrar_key=led.registrar_key,
    )


def env_of(led: Ledger, url: str, key_file: Path) -> dict[str, str]:
    return {
        "GOLDTRAIL_DATABASE_URL": url,
        "GOLDTRAIL_ORIGIN": led.origin,
        "GOLDTRAIL_LOG_KEY_FILE": str(key_file),
        "GOLDTRAIL_REGISTRAR_KEY": str(led.registrar_key),
        "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
    }


def admin(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(admin_app, args, env=env)


# ---------------------------------------------------------------------------
# Export and import


def test_export_then_import_gives_the_same_root(
    logged: Ledger, another_database: Callable[[], str], tmp_path: Path
) -> None:
    lines = list(export_log(logged.engine))
    size = len(build_world().envelopes())
    assert len(lines) == size
    assert [json.loads(line) for line in lines] == build_world().envelopes()
    source = logged.log_info()
    assert root_of_lines(lines) == (size, bytes.fromhex(source["root"]))

    target = open_world_ledger(another_database(), tmp_path / "log.key")  # the same log key
    try:
        progress: list[int] = []
        root = import_log(target, iter(lines), progress.append, batch_size=10)
        assert root.hex() == source["root"]
        assert progress == [*range(10, size, 10), size]
        assert target.log_info() == source
        # the same key over the same tree head: the very same checkpoint
        assert target.latest_checkpoint() == logged.latest_checkpoint()
        cp = open_checkpoint(target.latest_checkpoint(), logged.verifier_key)
        assert (cp.size, cp.root.hex()) == (size, source["root"])
        assert audit_of(target).ok
        with pytest.raises(ConflictError) as refused:
            import_log(target, lines)
        assert refused.value.code == "log_not_empty"
    finally:
        target.engine.dispose()


def test_import_names_the_line_that_fails(logged: Ledger, tmp_path: Path) -> None:
    lines = list(export_log(logged.engine))
    seq = 15
    lines[seq] = flip_a_digit(lines[seq].encode()).decode()
    lines.insert(3, "")  # blank lines are skipped, but count as lines
    target = open_world_ledger(f"sqlite:///{tmp_path}/t.db", tmp_path / "other.key")
    try:
        with pytest.raises(ImportRefused) as refused:
            import_log(target, lines, batch_size=5)
        assert refused.value.code == "bad_signature"
        assert (refused.value.line, refused.value.seq) == (seq + 2, seq)
        assert f"line {seq + 2} (seq {seq})" in refused.value.detail
    finally:
        target.engine.dispose()


def test_an_import_skips_the_future_time_rule(tmp_path: Path) -> None:
    """PROTOCOL.md section 2: the server refuses a time more than 5 minutes ahead of its
    clock, "the only rule that reads the server's clock; an import of an existing log
    skips it". An export made elsewhere imports whole into a server whose clock is behind
    every event of it, though that server refuses the same events posted one by one."""
    envelopes = build_world().envelopes()
    source = open_world_ledger(f"sqlite:///{tmp_path}/source.db", tmp_path / "log.key")
    try:
        source.append(envelopes, check_time=False)
        lines = list(export_log(source.engine))
        root = source.log_info()["root"]
    finally:
        source.engine.dispose()
    behind = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)  # a month before the world's first event
    target = open_ledger(
        f"sqlite:///{tmp_path}/target.db",
        origin=build_world().origin,
        log_key_file=tmp_path / "log.key",
        registrar_key=public_key_hex(build_world().registrar_key),
        clock=lambda: behind,
    )
    try:
        with pytest.raises(LedgerError) as refused:
            target.append_one(envelopes[0])
        assert refused.value.code == "future_time"
        assert target.size() == 0
        assert import_log(target, lines).hex() == root
        assert target.size() == len(envelopes)
    finally:
        target.engine.dispose()


def test_admin_export_and_import_commands(
    logged: Ledger,
    another_database: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = tmp_path / "log.key"
    out = tmp_path / "export" / "log.jsonl"
    out.parent.mkdir()
    synced: list[tuple[int, int]] = []  # a backup survives a power cut: file and folder
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        found = os.fstat(fd)
        synced.append((found.st_dev, found.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    done = admin(
        ["export", "--out", str(out)],
        env_of(logged, str(logged.engine.url.render_as_string(hide_password=False)), key_file),
    )
    root = logged.log_info()["root"]
    assert done.exit_code == 0, done.output
    assert f"root {root}" in done.stderr
    assert out.read_text().splitlines() == list(export_log(logged.engine))
    assert not list(out.parent.glob("*.partial"))
    folder, written = out.parent.stat(), out.stat()
    assert (written.st_dev, written.st_ino) in synced
    assert synced[-1] == (folder.st_dev, folder.st_ino)

    to_stdout = admin(
        ["export"],
        env_of(logged, logged.engine.url.render_as_string(hide_password=False), key_file),
    )
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout == out.read_text()

    target = another_database()
    imported = admin(["import", str(out)], env_of(logged, target, key_file))
    assert imported.exit_code == 0, imported.output
    assert f"root {root}" in imported.stdout
    assert f"imported {len(build_world().envelopes())} entries" in imported.stdout
    again = admin(["import", str(out)], env_of(logged, target, key_file))
    assert again.exit_code == 1
    assert "(log_not_empty)" in again.stderr


# ---------------------------------------------------------------------------
# Rebuilding the projections


def test_rebuild_repairs_the_projections(logged: Ledger) -> None:
    engine = logged.engine
    lot = build_world().ledger.state.lots
    some_lot = sorted(lot)[0]
    with engine.begin() as conn:  # projections are not append-only: anyone with DML can drift
        conn.execute(tables.lots.delete().where(tables.lots.c.lot == some_lot))
        conn.execute(update(tables.actors).where(tables.actors.c.id == "coop").values(status="x"))
        conn.execute(tables.event_lots.delete())
    drifted = audit_of(logged)
    assert not drifted.ok
    assert {p.kind for p in drifted.problems} == {"projection"}

    assert rebuild_projections(engine, logged.origin, logged.registrar_key) == logged.size()
    assert audit_of(logged).ok
    lot_view = logged.lot(some_lot)
    assert lot_view is not None and lot_view.lot == some_lot


def test_rebuild_refuses_a_damaged_log_and_changes_nothing(logged: Ledger) -> None:
    engine = logged.engine
    with engine.begin() as conn:
        conn.execute(tables.actors.delete().where(tables.actors.c.id == "assayer"))
    seq = 9
    with behind_the_stores_back(engine, "log") as conn:
        data = conn.execute(select(tables.log.c.envelope).where(tables.log.c.seq == seq)).scalar()
        changed = bytes(data).replace(b'"name":"', b'"name":"X', 1)
        assert changed != bytes(data)
        conn.execute(update(tables.log).where(tables.log.c.seq == seq).values(envelope=changed))
    with pytest.raises(IntegrityError) as refused:
        rebuild_projections(engine, logged.origin, logged.registrar_key)
    assert f"seq {seq}" in refused.value.detail
    assert logged.actor("assayer") is None  # the transaction was rolled back
    assert logged.actor("coop") is not None


def test_admin_rebuild_and_migrate_commands(logged: Ledger, tmp_path: Path) -> None:
    url = logged.engine.url.render_as_string(hide_password=False)
    env = env_of(logged, url, tmp_path / "log.key")
    with logged.engine.begin() as conn:
        conn.execute(tables.lot_sites.delete())
    done = admin(["rebuild"], env)
    assert done.exit_code == 0, done.output
    assert f"from {logged.size()} log entries" in done.stdout
    assert audit_of(logged).ok
    migrated = admin(["migrate"], env)
    assert migrated.exit_code == 0, migrated.output
    assert "revision 0001_initial" in migrated.stdout or "revision 0002" in migrated.stdout


def test_admin_migrate_creates_the_schema(database_url: str, tmp_path: Path) -> None:
    env = {"GOLDTRAIL_DATABASE_URL": database_url, "GOLDTRAIL_MIGRATE_DATABASE_URL": ""}
    done = admin(["migrate"], env)
    assert done.exit_code == 0, done.output
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM log")).scalar() == 0
    finally:
        engine.dispose()
    bad = admin(["audit"], {**env, "GOLDTRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"})
    assert bad.exit_code == 1
    assert "(no_schema)" in bad.stderr


# ---------------------------------------------------------------------------
# A damaged log: the audit command names it, /readyz is honest about it


def damage(led: Ledger, seq: int) -> str:
    """Change one byte of the envelope at ``seq`` as the owner could; return its event id."""
    with behind_the_stores_back(led.engine, "log") as conn:
        row = conn.execute(
            select(tables.log.c.event_id, tables.log.c.envelope).where(tables.log.c.seq == seq)
        ).one()
        conn.execute(
            update(tables.log)
            .where(tables.log.c.seq == seq)
            .values(envelope=flip_a_digit(bytes(row.envelope)))
        )
    return str(row.event_id)


def readyz(led: Ledger, key_file: Path) -> tuple[int, dict[str, Any]]:
    settings = Settings(
        database_url=led.engine.url.render_as_string(hide_password=False),
        origin=led.origin,
        log_key_file=str(key_file),
        registrar_key=led.registrar_key,
    )
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            response = client.get("/readyz")
    finally:
        app.state.runtime.store.engine.dispose()
    return response.status_code, response.json()


def test_the_audit_command_names_the_first_bad_entry_and_readyz_reports_it(
    logged: Ledger, tmp_path: Path
) -> None:
    key_file = tmp_path / "log.key"
    env = env_of(logged, logged.engine.url.render_as_string(hide_password=False), key_file)
    green = admin(["audit"], env)
    assert green.exit_code == 0, green.output
    assert "The log is sound" in green.stdout
    status, body = readyz(logged, key_file)
    assert status == 200, body
    assert body["checks"]["last_audit"]["ok"] is True

    seq = 17
    event = damage(logged, seq)
    # the quick check reads only the head of the log: it cannot see this
    assert quick_check(logged.engine, logged.verifier_key).ok
    status, body = readyz(logged, key_file)
    assert status == 200  # the last audit was green, and the head is sound

    # through the installed command line, as an operator runs it
    red = subprocess.run(
        [str(GOLDTRAIL), "admin", "audit"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert red.returncode == 1, red.stdout + red.stderr
    assert "NOT sound" in red.stdout
    assert f"first bad entry: seq {seq} (event {event})" in red.stdout
    verdict = last_audit(logged.engine)
    assert verdict is not None and verdict["ok"] is False and verdict["seq"] == seq

    status, body = readyz(logged, key_file)
    assert status == 503
    assert body["status"] == "unavailable"
    checks = body["checks"]
    assert checks["database"] is True and checks["integrity"] is True
    assert checks["audit"] is False
    assert checks["last_audit"]["seq"] == seq
    assert f"seq {seq}" in checks["last_audit"]["first"]

    not_recorded = admin(["audit", "--no-record"], env)
    assert not_recorded.exit_code == 1


def test_readyz_sees_a_damaged_head_without_an_audit(logged: Ledger, tmp_path: Path) -> None:
    last = logged.size() - 1
    damage(logged, last)
    check = quick_check(logged.engine, logged.verifier_key)
    assert not check.ok and f"seq {last}" in check.detail
    status, body = readyz(logged, tmp_path / "log.key")
    assert status == 503
    assert body["checks"]["integrity"] is False
    assert f"seq {last}" in body["checks"]["integrity_problem"]
    assert body["checks"]["last_audit"] is None


def test_readyz_sees_a_checkpoint_signed_by_another_key(logged: Ledger, tmp_path: Path) -> None:
    other = open_world_ledger(f"sqlite:///{tmp_path}/other.db", tmp_path / "other.key")
    try:
        forged = other.log_signer.sign(logged.size(), bytes(32)).note
    finally:
        other.engine.dispose()
    with behind_the_stores_back(logged.engine, "checkpoints") as conn:
        conn.execute(
            update(tables.checkpoints)
            .where(tables.checkpoints.c.size == logged.size())
            .values(note=forged)
        )
    check = quick_check(logged.engine, logged.verifier_key)
    assert not check.ok and "does not open with the log key" in check.detail


@pytest.mark.parametrize("origin", [None, "another.example/log"], ids=["unset", "another"])
def test_an_audit_run_with_another_logs_origin_is_refused_and_records_nothing(
    logged: Ledger, tmp_path: Path, origin: str | None
) -> None:
    """Issue 8, `admin audit` ("exit 0 only when ... verify; names the first bad entry
    otherwise") and /readyz's honesty: an audit run from a shell or a cron job that lacks
    the server's GOLDTRAIL_ORIGIN (None: the default origin) would find every signature
    bad and record a damaged log, turning /readyz red over a sound log. It is a settings
    error instead, as it is for the server: one line, exit 2, nothing recorded."""
    key_file = tmp_path / "log.key"
    url = logged.engine.url.render_as_string(hide_password=False)
    env: dict[str, str | None] = {**env_of(logged, url, key_file), "GOLDTRAIL_ORIGIN": origin}
    refused = CliRunner().invoke(admin_app, ["audit"], env=env)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.endswith("(origin_mismatch)\n")
    assert f"holds the log {logged.origin!r}" in refused.stderr
    assert "GOLDTRAIL_ORIGIN" in refused.stderr
    assert last_audit(logged.engine) is None
    assert readyz(logged, key_file)[0] == 200

    # log_meta changed instead (the entries are signed for the configured origin): this
    # is damage, and the audit runs and names it
    with logged.engine.begin() as conn:
        conn.execute(
            update(tables.log_meta)
            .where(tables.log_meta.c.key == "origin")
            .values(value="another.example/log")
        )
    damaged = CliRunner().invoke(admin_app, ["audit"], env=env_of(logged, url, key_file))
    assert damaged.exit_code == 1, damaged.output
    assert "log_meta says the origin is 'another.example/log'" in damaged.stdout


def test_import_with_the_expected_root_refuses_an_export_cut_at_a_line_end(
    logged: Ledger, tmp_path: Path
) -> None:
    """Issue 8, `admin import` ("ending with the identical root"): an export cut short at
    the end of a line is a valid, shorter log, which imports whole. `--root`, the root that
    the export printed, makes the import refuse it before writing anything."""
    key_file = tmp_path / "log.key"
    url = logged.engine.url.render_as_string(hide_password=False)
    full = tmp_path / "log.jsonl"
    assert admin(["export", "--out", str(full)], env_of(logged, url, key_file)).exit_code == 0
    root = logged.log_info()["root"]
    cut = tmp_path / "cut.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:-3]))

    target = tmp_path / "target.db"
    env = env_of(logged, f"sqlite:///{target}", key_file)
    refused = admin(["import", str(cut), "--root", root], env)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.endswith("(root_mismatch)\n")
    assert f"{len(lines) - 3} entries" in refused.stderr and root in refused.stderr
    assert not target.exists()  # nothing written, not even a schema

    bad = admin(["import", str(full), "--root", "xyz"], env)
    assert bad.exit_code == 2 and "(usage)" in bad.stderr
    done = admin(["import", str(full), "--root", root.upper()], env)
    assert done.exit_code == 0, done.output
    assert f"root {root}" in done.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GOLDTRAIL_DATABASE_URL", "postgresql+nosuchdriver://gold:s3cret@127.0.0.1/goldtrail"),
        ("GOLDTRAIL_DATABASE_URL", "nonsense"),
        ("GOLDTRAIL_REGISTRAR_KEY", "s3cret"),
    ],
)
def test_admin_names_a_bad_setting_in_one_line_without_its_value(
    tmp_path: Path, variable: str, value: str
) -> None:
    """The same GOLDTRAIL_* settings as ``goldtrail serve`` (PROTOCOL.md section 8): a bad
    one is one line naming the variable, exit code 2, never the value (a database URL may
    hold a password); it was pydantic's report with ``input_value='…'``."""
    env = {
        "GOLDTRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db",
        "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
        variable: value,
    }
    refused = admin(["audit"], env)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith("error: bad settings: "), refused.stderr
    assert variable in refused.stderr and "s3cret" not in refused.stderr, refused.stderr
    assert "input_value" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
