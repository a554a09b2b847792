"""Shared test fixtures.

- ``database_url``: a fresh, empty database per test, parametrised over SQLite and
  PostgreSQL, so the same suite runs on both engines.
- ``postgres_url``: one throwaway PostgreSQL server for the session (initdb in a temporary
  directory, fsync off, trust authentication on 127.0.0.1 and a private unix socket).
- ``shared_dir`` / ``require_shared_tool``: the ``../shared`` folder beside the repository
  (or ``$GOLDTRAIL_SHARED``) and the tools in it.
- ``goverify``: Go's own checker of checkpoints and proofs (``../shared/tools/goverify``),
  built once per session with tests/goverify.py.
- ``browser`` / ``page``: Playwright driving the system Chromium (never a downloaded one).

What a test needs from the machine and cannot find makes it skip with the reason; under
``CI=true`` the same absence is a failure, so CI cannot go green by skipping.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("GOLDTRAIL_CHROMIUM", "/usr/bin/chromium"))


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing prerequisite; in CI, fail instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# Markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long_run = os.environ.get("GOLDTRAIL_LONG") == "1"
    skip_slow = pytest.mark.skip(reason="slow test; run with GOLDTRAIL_LONG=1 (make test-long)")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if "page" in getattr(item, "fixturenames", ()) or "browser" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.browser)
        if not long_run and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


# ---------------------------------------------------------------------------
# ../shared and its tools


def find_shared_dir() -> Path:
    env = os.environ.get("GOLDTRAIL_SHARED")
    return Path(env).resolve() if env else (REPO_ROOT.parent / "shared").resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = find_shared_dir()
    if not path.is_dir():
        unavailable(
            f"shared folder not found at {path} "
            "(put it beside the repository or set GOLDTRAIL_SHARED)"
        )
    return path


def _require_shared_tool(name: str) -> Path:
    path = find_shared_dir() / "tools" / name
    if not path.exists():
        unavailable(
            f"shared tool {name!r} not found at {path} "
            "(put ../shared beside the repository or set GOLDTRAIL_SHARED)"
        )
    return path


@pytest.fixture(scope="session")
def require_shared_tool() -> Callable[[str], Path]:
    """``require_shared_tool("goverify")`` gives the tool's folder, or skips (fails in CI)."""
    return _require_shared_tool


@pytest.fixture(scope="session")
def goverify(
    tmp_path_factory: pytest.TempPathFactory, require_shared_tool: Callable[[str], Path]
) -> Any:
    """The goverify binary (a ``tests.goverify.Goverify``), built once; skips (fails in CI)
    if it cannot be."""
    from tests import goverify as goverify_tool

    source = require_shared_tool("goverify")
    return goverify_tool.build(source, tmp_path_factory.mktemp("goverify"))


# ---------------------------------------------------------------------------
# PostgreSQL


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def find_postgres_bindir() -> Path | None:
    """pg_config --bindir, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _admin_connect(port: int) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session; yields the URL of one database on it.

    As root the server runs as the ``postgres`` user (initdb refuses root) through
    ``runuser``; otherwise as the current user.
    """
    bindir = find_postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries not found: no initdb via pg_config --bindir, "
            "/usr/lib/postgresql/*/bin or PATH (apt-get install postgresql)"
        )
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            unavailable("running as root and runuser is missing to start PostgreSQL as postgres")
        as_user = [runuser, "-u", "postgres", "--"]

    base = Path(tempfile.mkdtemp(prefix="goldtrail-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"

    def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*as_user, *map(str, args)], capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{Path(args[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done

    started = False
    try:
        run(
            bindir / "initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        conf = data / "postgresql.conf"
        base_conf = conf.read_text()
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = _free_port()
            conf.write_text(
                base_conf
                + "\n# goldtrail test server\n"
                + "listen_addresses = '127.0.0.1'\n"
                + f"port = {port}\n"
                + f"unix_socket_directories = '{base}'\n"
                + "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                + "max_connections = 200\n"
            )
            start = run(
                bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start", check=False
            )
            if start.returncode == 0:
                started = True
                break
        if not started:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"pg_ctl start failed:\n{start.stdout}{start.stderr}\n{server_log}", pytrace=False
            )
        with _admin_connect(port) as conn:
            conn.execute("CREATE DATABASE goldtrail")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/goldtrail"
    finally:
        if started:
            stop = run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
            if stop.returncode != 0:
                run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return

    from sqlalchemy.engine import make_url

    server = make_url(request.getfixturevalue("postgres_url"))
    assert server.port is not None
    name = f"t_{uuid.uuid4().hex[:20]}"
    with _admin_connect(server.port) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect(server.port) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# ---------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium through Playwright (no browser download, ever).

    One per test module, not per session: Playwright's sync API keeps an asyncio loop
    running in the main thread while it is open, and tests in later modules call
    ``asyncio.run``, which refuses to start inside a running loop."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
