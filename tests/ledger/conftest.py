"""Fixtures for the ledger tests: Go's independent checker, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import goverify as goverify_tool


@pytest.fixture(scope="session")
def goverify(
    tmp_path_factory: pytest.TempPathFactory, require_shared_tool: Callable[[str], Path]
) -> Any:
    """The goverify binary (a ``Goverify``), built once; skips or fails if it cannot be."""
    source = require_shared_tool("goverify")
    return goverify_tool.build(source, tmp_path_factory.mktemp("goverify"))
