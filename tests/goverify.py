"""Go's independent checker for checkpoints and proofs (../shared/tools/goverify), for tests.

``build`` compiles it once (the ``goverify`` fixture does so per session, with the folder
that tests/conftest.py's ``require_shared_tool`` finds) and ``Goverify.run`` feeds it one JSON
document. When Go or Go's x/mod sources are missing the tests that need it are skipped,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

# Debian's golang-golang-x-mod-dev puts golang.org/x/mod here; goverify builds in GOPATH mode.
GOPATH = Path("/usr/share/gocode")


def unavailable(reason: str) -> NoReturn:
    """Skip the test that needs goverify, or fail it when CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"goverify is required when CI=true: {reason}", pytrace=False)
    pytest.skip(f"goverify unavailable: {reason}")


class Goverify:
    """A built goverify binary."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, payload: dict[str, Any]) -> str:
        """Run goverify on one JSON input; return its output line, 'ok …' or 'FAIL …'."""
        result = subprocess.run(
            [str(self.binary)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        line = result.stdout.strip()
        # goverify exits 0 exactly when it prints "ok"; anything else is a broken run.
        assert (result.returncode == 0) == line.startswith("ok "), (result, line)
        return line


def build(source: Path, out_dir: Path) -> Goverify:
    """Compile goverify from ``source`` into ``out_dir`` (with a Go build cache there too).

    Skips (or fails under CI=true) when Go or x/mod is missing; fails if it does not compile.
    """
    go = shutil.which("go")
    if go is None:
        unavailable("the go command is not installed (apt-get install golang-go)")
    if not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir():
        unavailable(
            f"golang.org/x/mod is not under {GOPATH} (apt-get install golang-golang-x-mod-dev)"
        )
    binary = out_dir / "goverify"
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOCACHE": str(out_dir / "gocache"),
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"goverify does not build in {source}:\n{result.stdout}{result.stderr}")
    return Goverify(binary)
