"""The server's logs are JSON lines, each with the request id of the request it belongs to
(echoed in ``X-Request-ID``), and hold no secrets and no personal data: no private key, no
database password, no event body."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import make_url

from api.observability import JsonFormatter
from ledger import tables
from ledger.protocol import public_key_hex
from ledger.store import make_engine, read_seed_file
from tests import factories
from tests.api.conftest import open_api
from tests.ops.conftest import REPO, Server, behind_the_stores_back

CANARY_NAME = "Amani Canary-Kahindo"
PASSWORD = "s3cret-Pw-9f2c"


@contextmanager
def json_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The ``goldtrail`` logger's lines, formatted by JsonFormatter as they are logged
    (the request id is read then), at INFO for the duration."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(JsonFormatter())
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("goldtrail")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="goldtrail"):  # setLevel: no stale cache
            yield lines
    finally:
        logger.removeHandler(handler)


def test_request_logs_are_json_with_the_request_id_and_no_secrets(
    database_url: str, server_factory: Callable[[dict[str, str]], Server], tmp_path: Path
) -> None:
    w = factories.World.standard()
    w.register_actor("canary", ["auditor"], name=CANARY_NAME)
    url = database_url
    if url.startswith("postgresql"):  # trust authentication ignores it; the logs must too
        url = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
    key_file = tmp_path / "keys" / "log.key"
    server = server_factory(
        {
            "GOLDTRAIL_DATABASE_URL": url,
            "GOLDTRAIL_MIGRATE_DATABASE_URL": "",
            "GOLDTRAIL_ORIGIN": w.origin,
            "GOLDTRAIL_REGISTRAR_KEY": public_key_hex(w.registrar_key),
            "GOLDTRAIL_LOG_KEY_FILE": str(key_file),
        }
    )
    envelopes = w.envelopes()
    server.start()
    with httpx.Client(base_url=server.base, timeout=30) as client:
        posted = client.post(
            "/v1/events/batch", json={"events": envelopes}, headers={"X-Request-ID": "ops-1"}
        )
        assert posted.status_code == 201, posted.text
        assert posted.headers["x-request-id"] == "ops-1"

        forged = factories.tamper(factories.Event(envelopes[-1]), name="Someone Else")
        refused = client.post("/v1/events", json=forged.envelope, headers={"X-Request-ID": "ops-2"})
        assert (refused.status_code, refused.json()["code"]) == (401, "bad_signature")
        assert refused.headers["x-request-id"] == "ops-2"

        anonymous = client.get("/v1/log")
        generated = anonymous.headers["x-request-id"]
        assert generated

        # a damaged store makes the server log an error inside a request
        engine = make_engine(database_url)
        try:
            with behind_the_stores_back(engine, "checkpoints") as conn:
                conn.execute(
                    update(tables.checkpoints)
                    .where(tables.checkpoints.c.size == len(envelopes))
                    .values(size=len(envelopes) + 1000)
                )
        finally:
            engine.dispose()
        broken = client.post("/v1/events", json=envelopes[3], headers={"X-Request-ID": "ops-3"})
        assert broken.status_code == 500
        assert broken.json()["code"] == "checkpoint_missing"
    server.stop()

    lines = server.log().splitlines()
    assert lines
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = json.loads(line)  # every line, start-up and shutdown included
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry), line
        entries.append(entry)

    def of(request_id: str) -> list[dict[str, Any]]:
        return [e for e in entries if e["request_id"] == request_id]

    assert [(e["path"], e["status"]) for e in of("ops-1")] == [("/v1/events/batch", 201)]
    assert [(e["status"], e.get("code")) for e in of("ops-2")] == [(401, "bad_signature")]
    assert [(e["path"], e["status"]) for e in of(generated)] == [("/v1/log", 200)]
    damaged = of("ops-3")  # the error logged while serving it, then its access line
    errors = [e for e in damaged if e["level"] == "error"]
    assert errors and "checkpoint" in errors[0]["message"]
    assert (damaged[-1]["status"], damaged[-1]["code"]) == (500, "checkpoint_missing")

    text = server.log()
    seed = read_seed_file(key_file)
    assert seed is not None
    secrets = [seed.hex(), PASSWORD, bytes(w.registrar_key).hex()]
    secrets += [bytes(key).hex() for key in w.keys.values()]
    for secret in secrets:
        assert secret not in text
        assert secret.upper() not in text
    personal = [CANARY_NAME, "Someone Else"]
    personal += [e["signature"]["value"] for e in envelopes]
    personal += [e["body"]["name"] for e in envelopes if "name" in e["body"]]
    for value in personal:
        assert value not in text, value
    assert '"body"' not in text


def test_an_unexpected_error_is_logged_counted_and_answered_under_its_request_id(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 8, "a request id on every line" and "request latency histograms": the line
    that matters most, a 500 nobody foresaw, carries the request id of its request, is
    followed by its access line, is timed and counted, and its answer echoes the id."""
    api = open_api(f"sqlite:///{tmp_path}/ledger.db", tmp_path)
    request.addfinalizer(api.close)

    def boom() -> Any:
        raise RuntimeError("the disk said no")

    monkeypatch.setattr(api.app.state.runtime.store, "log_info", boom)
    client = TestClient(api.app, raise_server_exceptions=False)
    with json_lines(caplog) as lines:
        broken = client.get("/v1/log", headers={"X-Request-ID": "ops-500"})
    assert broken.status_code == 500
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert broken.json()["code"] == "internal"
    assert broken.headers["x-request-id"] == "ops-500"

    entries = [json.loads(line) for line in lines]
    mine = [e for e in entries if e["request_id"] == "ops-500"]
    errors = [e for e in mine if e["level"] == "error"]
    assert errors, entries
    assert errors[0]["error"] == "RuntimeError: the disk said no"
    # where it failed (the innermost frame), for a bug report: no values, no traceback
    assert errors[0]["where"].startswith("ops/test_logs.py:")
    assert errors[0]["where"].endswith(" in boom")
    assert [(e["path"], e["status"], e.get("code")) for e in mine if "status" in e] == [
        ("/v1/log", 500, "internal")
    ]
    assert not [e for e in entries if e["request_id"] == "-"], entries

    text = client.get("/metrics").text
    assert 'goldtrail_events_refused_total{code="internal"} 1.0' in text
    assert 'goldtrail_request_seconds_count{method="GET",route="/v1/log"} 1.0' in text


LIBRARY_LINES = """
import logging, warnings
from api.observability import configure_logging
configure_logging()
logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception during reset or similar")
logging.getLogger("asyncio").error("Task exception was never retrieved")
logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001_initial")
warnings.warn("something is deprecated", UserWarning, stacklevel=1)
"""


def test_what_libraries_log_is_json_lines_too(tmp_path: Path) -> None:
    """Issue 8, "structured JSON logs ... on every line": the errors SQLAlchemy's pool and
    asyncio log (a PostgreSQL connection lost, a task that failed) and Python's warnings
    reach stderr as JSON lines like goldtrail's own, not as bare text."""
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY_LINES],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON
    messages = {e["logger"]: e["message"] for e in entries}
    assert messages["sqlalchemy.pool.impl.QueuePool"] == "Exception during reset or similar"
    assert messages["asyncio"] == "Task exception was never retrieved"
    assert "something is deprecated" in messages["py.warnings"]
    assert all(e["request_id"] == "-" and e["level"] in ("error", "warning") for e in entries)


def test_a_request_id_that_is_not_an_identifier_is_replaced(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8, "no personal data" in the logs: X-Request-ID is echoed into every line of
    its request, so only an identifier is taken (up to 64 letters, digits and ``._:-``,
    as UUIDs and trace ids are); a name, or text with spaces or quotes, gets a generated id
    instead, never written to the logs."""
    api = open_api(f"sqlite:///{tmp_path}/ledger.db", tmp_path)
    request.addfinalizer(api.close)
    with json_lines(caplog) as lines:
        kept = [
            "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ops.7:retry_2",
        ]
        for rid in kept:
            got = api.client.get("/healthz", headers={"X-Request-ID": rid})
            assert got.headers["x-request-id"] == rid
        for rid in ("Amani Kahindo", "x" * 65, 'a"b', "é"):
            got = api.client.get("/healthz", headers={"X-Request-ID": rid.encode()})
            assert got.status_code == 200
            assert re.fullmatch(r"[0-9a-f]{16}", got.headers["x-request-id"]), rid
    text = "\n".join(lines)
    assert "Amani" not in text and "x" * 65 not in text
    assert [json.loads(line)["request_id"] for line in lines][: len(kept)] == kept
