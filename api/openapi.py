"""Write the app's OpenAPI document to ``openapi/openapi.json`` (``make openapi``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the app, built without opening any database."""
    from api.app import build_app

    document: dict[str, Any] = build_app().openapi()
    return document


def render() -> str:
    """The committed form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Regenerate the committed document."""
    OPENAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
