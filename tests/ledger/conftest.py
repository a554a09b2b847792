"""Fixtures for the ledger tests: Go's independent checker, built once per session."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_goverify() -> ModuleType:
    """Import tests/goverify.py by path (tests/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "goverify.py"
    spec = importlib.util.spec_from_file_location("goldtrail_tests_goverify", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def goverify(
    tmp_path_factory: pytest.TempPathFactory, require_shared_tool: Callable[[str], Path]
) -> Any:
    """The goverify binary (a ``Goverify``), built once; skips or fails if it cannot be."""
    source = require_shared_tool("goverify")
    return _load_goverify().build(source, tmp_path_factory.mktemp("goverify"))
