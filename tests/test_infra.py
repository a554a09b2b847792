"""The test and CI machinery itself: databases, the Makefile, .ci/run, shared tools, Chromium."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Databases


def test_database_url_gives_a_fresh_working_database(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            conn.execute(sa.text("CREATE TABLE lots (id INTEGER PRIMARY KEY, mass_mg BIGINT)"))
            conn.execute(
                sa.text("INSERT INTO lots (id, mass_mg) VALUES (:id, :mass)"),
                [{"id": 1, "mass": 12_500}, {"id": 2, "mass": 2**53 - 1}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, mass_mg FROM lots ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, 12_500), (2, 2**53 - 1)]
    finally:
        engine.dispose()


def test_database_url_engines(database_url: str, request: pytest.FixtureRequest) -> None:
    engine = sa.create_engine(database_url)
    try:
        expected = request.node.callspec.params["database_url"]
        assert engine.dialect.name == expected
    finally:
        engine.dispose()


def test_postgres_server_is_throwaway_and_fast(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW fsync")).scalar_one() == "off"
            assert conn.execute(sa.text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "goldtrail"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# Makefile and .ci/run

TARGETS = ["venv", "sysdeps", "run", "test", "test-long", "lint", "openapi", "bench", "clean"]


def test_makefile_has_the_documented_targets() -> None:
    text = (REPO_ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))
    assert set(TARGETS) <= defined
    phony = re.search(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    assert phony is not None
    assert set(TARGETS) <= set(phony.group(1).split())


def test_ci_run_is_an_executable_bash_script() -> None:
    script = REPO_ROOT / ".ci" / "run"
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


def _write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


FAKE_MAKE = """#!/usr/bin/env bash
[ "$1" = test ] || exit 97
for arg in "$@"; do
  case "$arg" in PYTEST_STATUS_FILE=*) status="${arg#PYTEST_STATUS_FILE=}" ;; esac
done
if [ -n "${FAKE_PYTEST_RC:-}" ]; then echo "$FAKE_PYTEST_RC" > "$status"; fi
exit "$FAKE_MAKE_RC"
"""


@pytest.mark.parametrize(
    ("pytest_rc", "make_rc", "expected"),
    [
        ("0", "0", 0),  # all passed
        ("5", "2", 0),  # no tests collected: success
        ("1", "2", 1),  # test failures propagate with pytest's code
        ("4", "2", 4),  # usage error
        ("", "2", 2),  # make failed before pytest ran (apt, pip): make's code
    ],
    ids=["passed", "no-tests", "failed", "usage-error", "make-failed"],
)
def test_ci_run_exit_codes(tmp_path: Path, pytest_rc: str, make_rc: str, expected: int) -> None:
    """.ci/run against a fake make, to pin down how exit codes map."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / ".ci" / "run", repo / ".ci" / "run")
    _write_executable(tmp_path / "bin" / "make", FAKE_MAKE)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_PYTEST_RC": pytest_rc,
        "FAKE_MAKE_RC": make_rc,
    }
    done = subprocess.run(
        ["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == expected, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize(("pytest_rc", "expected"), [(0, 0), (5, 0), (1, 1), (3, 3)])
def test_ci_run_through_the_real_makefile(tmp_path: Path, pytest_rc: int, expected: int) -> None:
    """The real Makefile and .ci/run, with a stand-in .venv whose pytest exits as told."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "Makefile", repo / "Makefile")
    shutil.copy2(REPO_ROOT / ".ci" / "run", repo / ".ci" / "run")
    (repo / "pyproject.toml").write_text("")
    _write_executable(repo / ".venv" / "bin" / "pip", "#!/bin/sh\nexit 99\n")
    _write_executable(repo / ".venv" / "bin" / "pytest", f"#!/bin/sh\nexit {pytest_rc}\n")
    stamp = repo / ".venv" / ".goldtrail-installed"
    stamp.write_text("")
    newer = (repo / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (newer, newer))
    env = {**os.environ, "GOLDTRAIL_SKIP_SYSDEPS": "1"}
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    done = subprocess.run(
        ["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == expected, done.stdout + done.stderr
    assert "pip" not in done.stdout + done.stderr  # the stamp is up to date: no reinstall


# ---------------------------------------------------------------------------
# ../shared and the browser


def test_require_shared_tool(require_shared_tool: Callable[[str], Path], shared_dir: Path) -> None:
    assert require_shared_tool("goverify") == shared_dir / "tools" / "goverify"
    assert (shared_dir / "PROTOCOL.md").is_file()


def test_chromium_renders_a_page(page: Page) -> None:
    page.set_content("<title>goldtrail</title><h1>Lot GT-0001</h1>")
    assert page.title() == "goldtrail"
    assert page.inner_text("h1") == "Lot GT-0001"
