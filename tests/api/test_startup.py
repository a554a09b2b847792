"""Running a server (PROTOCOL.md section 8): first start, restarts, refusals to start.

- the log key file is created (mode 0600) only for an empty log; without
  ``GOLDTRAIL_REGISTRAR_KEY`` a registrar key file is generated next to it (mode 0600) and
  signs seq 0;
- a restart with another origin, another registrar key, or the log key file missing or
  replaced is refused with a plain message: ``create_app`` raises IntegrityError, and
  ``goldtrail serve`` (``api.server.serve``) exits with code 2 and one sentence on stderr;
- with ``GOLDTRAIL_REGISTRAR_KEY`` on an empty log every event is 409 ``log_not_started``
  until that key's self-registration is posted; another key's is 401 ``unknown_key``.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from fastapi.testclient import TestClient

import api.server
from api.runtime import REGISTRAR_KEY_NAME
from ledger.checkpoint import LogSigner
from ledger.errors import IntegrityError
from ledger.protocol import public_key_hex, signing_key_from_seed

from .conftest import ORIGIN, Api, check_problem, factories, open_api, refusal


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _seed(path: Path) -> str:
    return path.read_text().strip()


def test_first_start_creates_the_keys_and_signs_seq_0(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    api = make_api(database_url, folder=folder)
    log_key, registrar_file = folder / "log.key", folder / REGISTRAR_KEY_NAME
    assert _mode(log_key) == 0o600 and _mode(registrar_file) == 0o600
    registrar = signing_key_from_seed(_seed(registrar_file))
    assert api.registrar is not None and bytes(api.registrar) == bytes(registrar)
    # seq 0: the generated registrar registering itself, signed by the generated key
    log = api.log()
    assert log["size"] == 1 and log["registrar_key"] == public_key_hex(registrar)
    entry = api.client.get("/v1/log/entries").json()["items"][0]
    body, signature = entry["envelope"]["body"], entry["envelope"]["signature"]
    assert signature["key"] == body["key"] == public_key_hex(registrar)
    assert body["type"] == "actor.registered" and body["actor"] == body["subject"]
    assert body["roles"] == ["registrar"]
    # the log key in the file is the one whose verifier key the server gives out
    signer = LogSigner(ORIGIN, bytes.fromhex(_seed(log_key)))
    assert log["verifier_key"] == signer.verifier_key
    # a restart with the same settings starts, with the same keys, and signs no new seq 0
    api.close()
    before = (_seed(log_key), _seed(registrar_file))
    again = make_api(database_url, folder=folder)
    assert again.log() == log
    assert (_seed(log_key), _seed(registrar_file)) == before


def test_an_existing_key_file_is_used_for_an_empty_log(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    seed = "11" * 32
    (folder / "log.key").write_text(seed + "\n")
    api = make_api(folder=folder)
    assert api.log()["verifier_key"] == LogSigner(ORIGIN, bytes.fromhex(seed)).verifier_key


def test_restarts_with_other_settings_are_refused(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    first = make_api(database_url, folder=folder)
    first.close()
    log_key = folder / "log.key"
    other_key = public_key_hex(nacl.signing.SigningKey.generate())

    def refused(code: str, **options: Any) -> str:
        with pytest.raises(IntegrityError) as caught:
            open_api(database_url, folder, **options)
        assert caught.value.code == code
        return caught.value.detail

    detail = refused("origin_mismatch", origin="other.example/log")
    assert "GOLDTRAIL_ORIGIN" in detail
    detail = refused("registrar_key_mismatch", registrar_key=other_key)
    assert "GOLDTRAIL_REGISTRAR_KEY" in detail
    saved = log_key.read_text()
    log_key.unlink()
    assert "GOLDTRAIL_LOG_KEY_FILE" in refused("log_key_missing")
    assert not log_key.exists(), "a key file was created for a log that has entries"
    log_key.write_text("22" * 32 + "\n")
    assert "GOLDTRAIL_LOG_KEY_FILE" in refused("log_key_mismatch")
    log_key.write_text("not a key\n")
    refused("log_key_unreadable")
    # back to the right settings (and the right registrar key, given explicitly): it starts
    log_key.write_text(saved)
    registrar = signing_key_from_seed(_seed(folder / REGISTRAR_KEY_NAME))
    again = make_api(database_url, folder=folder, registrar_key=public_key_hex(registrar))
    assert again.log()["size"] == 1


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, list[Any]]]:
    """Run ``api.server.serve`` with these GOLDTRAIL_* variables; uvicorn is not started."""
    started: list[Any] = []
    monkeypatch.setattr(api.server.uvicorn, "run", lambda app, **kw: started.append(app))
    monkeypatch.setattr(api.server, "configure_logging", lambda *a, **k: None)

    def run(capsys: pytest.CaptureFixture[str], **env: str) -> tuple[int, str, list[Any]]:
        for name in list(os.environ):
            if name.startswith("GOLDTRAIL_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(f"GOLDTRAIL_{name.upper()}", value)
        capsys.readouterr()
        code = api.server.serve(port=0)
        err = capsys.readouterr().err
        for app in started:
            app.state.runtime.store.engine.dispose()
        return code, err, started

    return run


def test_serve_refuses_to_start_with_a_plain_message(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    key_file = tmp_path / "log.key"
    settings = {"database_url": url, "log_key_file": str(key_file), "origin": ORIGIN}
    code, err, started = serve(capsys, **settings)
    assert code == 0 and len(started) == 1, err
    assert key_file.exists() and (tmp_path / REGISTRAR_KEY_NAME).exists()

    def refused(expected: str, **changes: str) -> None:
        count = len(started)
        code, err, _ = serve(capsys, **{**settings, **changes})
        assert code == 2, err
        assert err.startswith("goldtrail: cannot start: "), err
        assert expected in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert len(started) == count, "uvicorn was started"

    refused("GOLDTRAIL_ORIGIN", origin="another.example/log")
    refused("GOLDTRAIL_REGISTRAR_KEY", registrar_key="ab" * 32)
    refused("GOLDTRAIL_REGISTRAR_KEY", registrar_key="not-hex")  # a bad setting
    # 64 hex characters that no signing key has (y ≥ p): refused even before an empty log
    refused(
        "not an Ed25519 public key",
        registrar_key="ff" * 32,
        database_url=f"sqlite:///{tmp_path}/empty.db",
    )
    refused("GOLDTRAIL_ORIGIN", origin="has space/log")
    saved = key_file.read_text()
    key_file.unlink()
    refused("missing")
    key_file.write_text("33" * 32 + "\n")
    refused("another key")
    key_file.write_text(saved)
    code, err, started = serve(capsys, **settings)
    assert code == 0, err


def test_configured_registrar_key_waits_for_seq_0(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> None:
    key = nacl.signing.SigningKey.generate()
    api = make_api(database_url, registrar_key=public_key_hex(key))
    assert not (api.folder / REGISTRAR_KEY_NAME).exists(), "a registrar key was generated"
    log = api.log()
    assert (log["size"], log["registrar_key"]) == (0, None)
    checkpoint = api.client.get("/v1/log/checkpoint")
    assert checkpoint.status_code == 200 and checkpoint.text.split("\n")[1] == "0"

    def self_registration(signer: nacl.signing.SigningKey, **changes: Any) -> dict[str, Any]:
        return factories.registry_self_registration(signer, api.settings.origin, **changes)

    # anything else first: 409 log_not_started
    other = factories.World.standard()
    lot = other.register_lot(post=False)
    refusal(api, lambda: api.post(lot), 409, "log_not_started")
    # a registration of another actor signed by the right key is not seq 0 either
    refusal(
        api,
        lambda: api.post(self_registration(key, subject="someone-else")),
        409,
        "log_not_started",
    )
    # a self-registration signed by another key: 401 unknown_key
    stranger = nacl.signing.SigningKey.generate()
    refusal(api, lambda: api.post(self_registration(stranger)), 401, "unknown_key")
    # signed by the right key but registering another key: 401 unknown_key
    refusal(
        api,
        lambda: api.post(self_registration(key, key=public_key_hex(stranger))),
        401,
        "unknown_key",
    )
    # the right one: 201, and then the log runs
    seq0 = self_registration(key)
    response = api.post(seq0)
    assert response.status_code == 201, response.text
    assert response.json()["seq"] == 0
    assert api.log()["registrar_key"] == public_key_hex(key)
    check_problem(
        api.post(self_registration(stranger, actor="x-reg", subject="x-reg")), 401, "unknown_key"
    )
    registered = factories.auditor_onboarding(key, api.settings.origin)
    assert api.post(registered).status_code == 201
    assert api.post(seq0).status_code == 200  # seq 0 re-posted: its receipt


def test_serve_with_no_settings_uses_the_defaults_of_section_8(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No GOLDTRAIL_* variable at all: every default of the table of section 8."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO")
    code, err, started = serve(capsys)
    assert code == 0 and len(started) == 1, err
    # GOLDTRAIL_DATABASE_URL sqlite:///./goldtrail.db, GOLDTRAIL_LOG_KEY_FILE
    # ./goldtrail-log.key (created, mode 0600, for the empty log)
    assert (tmp_path / "goldtrail.db").is_file()
    log_key = tmp_path / "goldtrail-log.key"
    assert _mode(log_key) == 0o600
    # GOLDTRAIL_REGISTRAR_KEY unset on an empty log: a registrar key next to the log key
    # (mode 0600) signed seq 0, and the server said where the key file is
    registrar_file = tmp_path / REGISTRAR_KEY_NAME
    assert _mode(registrar_file) == 0o600
    assert any(str(registrar_file) in r.getMessage() for r in caplog.records), caplog.text
    app = started[0]
    try:
        with TestClient(app) as client:
            log = client.get("/v1/log").json()
            # GOLDTRAIL_ORIGIN goldtrail.localhost/log: the origin and the checkpoints' key name
            assert log["origin"] == "goldtrail.localhost/log"
            assert (
                log["verifier_key"]
                == LogSigner("goldtrail.localhost/log", bytes.fromhex(_seed(log_key))).verifier_key
            )
            checkpoint = client.get("/v1/log/checkpoint").text
            assert checkpoint.startswith("goldtrail.localhost/log\n1\n")
            registrar = signing_key_from_seed(_seed(registrar_file))
            assert log["registrar_key"] == public_key_hex(registrar)
            # GOLDTRAIL_PUBLIC_URL http://127.0.0.1:8000: the base of the URLs in QR codes
            assert log["public_url"] == "http://127.0.0.1:8000"
    finally:
        app.state.runtime.store.engine.dispose()


def test_the_registrar_key_setting_is_hex_in_either_case(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Section 8: ``GOLDTRAIL_REGISTRAR_KEY`` is a "hex public key" (an environment
    variable, not JSON, where section 1 asks for lowercase hex): the same key in capitals is
    the same key, for a new log and for a restart of a log it started."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    settings = {"database_url": url, "log_key_file": str(tmp_path / "log.key"), "origin": ORIGIN}
    code, err, started = serve(capsys, **settings)  # a generated registrar signs seq 0
    assert code == 0, err
    seq0_key = public_key_hex(signing_key_from_seed(_seed(tmp_path / REGISTRAR_KEY_NAME)))
    code, err, started = serve(capsys, **settings, registrar_key=seq0_key.upper())
    assert code == 0, err
    assert started[-1].state.runtime.store.registrar_key == seq0_key
    # and another key, in capitals or not, is still refused
    other = public_key_hex(nacl.signing.SigningKey.generate()).upper()
    code, err, _ = serve(capsys, **settings, registrar_key=other)
    assert code == 2 and "GOLDTRAIL_REGISTRAR_KEY" in err, err


def test_a_registrar_key_in_capitals_starts_an_empty_log(make_api: Callable[..., Api]) -> None:
    key = nacl.signing.SigningKey.generate()
    api = make_api(registrar_key=public_key_hex(key).upper())
    assert api.settings.registrar_key == public_key_hex(key)
    response = api.post(factories.registry_self_registration(key, api.settings.origin))
    assert response.status_code == 201, response.text
    assert api.log()["registrar_key"] == public_key_hex(key)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("database_url", "nonsense"),
        ("database_url", "sqlite:/goldtrail.db"),
        ("database_url", "postgresql+nosuchdriver://gold:s3cret@127.0.0.1/goldtrail"),
        # a driver SQLAlchemy knows, but that is not installed (psycopg is goldtrail's)
        ("database_url", "postgresql+pg8000://gold:s3cret@127.0.0.1/goldtrail"),
        ("database_url", "mysql://gold:s3cret@127.0.0.1/goldtrail"),
        ("migrate_database_url", "nonsense"),
        ("migrate_database_url", "postgresql+pg8000://owner:s3cret@127.0.0.1/goldtrail"),
    ],
)
def test_serve_refuses_a_database_url_it_cannot_use_in_one_plain_line(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
) -> None:
    """Section 8: GOLDTRAIL_DATABASE_URL is a SQLAlchemy URL, ``sqlite:///…`` or
    ``postgresql+psycopg://…``. Anything else (not a URL, a driver that is not installed)
    was a Python traceback and exit code 1: it is one plain line naming the variable, exit
    code 2, and no password."""
    if "pg8000" in value and importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here")
    settings = {
        "database_url": f"sqlite:///{tmp_path}/ledger.db",
        "log_key_file": str(tmp_path / "log.key"),
        "origin": ORIGIN,
        variable: value,
    }
    code, err, started = serve(capsys, **settings)
    assert code == 2, err
    assert err.startswith("goldtrail: cannot start: "), err
    assert f"GOLDTRAIL_{variable.upper()}" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "s3cret" not in err
    assert started == []


def test_serve_refuses_a_log_key_file_it_cannot_create_in_one_plain_line(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Section 8: the log key file is created for an empty log; where it cannot be (a
    folder nobody may write in), the server says so in one plain line naming the file and
    the variable, exit code 2 (was the command line's generic OS error naming a temporary
    file, exit code 1)."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no file can be created")
    key_file = "/proc/goldtrail-test-log.key"
    settings = {
        "database_url": f"sqlite:///{tmp_path}/ledger.db",
        "log_key_file": key_file,
        "origin": ORIGIN,
    }
    code, err, started = serve(capsys, **settings)
    assert code == 2, err
    assert err.startswith("goldtrail: cannot start: "), err
    assert "GOLDTRAIL_LOG_KEY_FILE" in err and key_file in err and ".tmp" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert started == []


def test_serve_refuses_a_registrar_key_file_it_cannot_create_in_one_plain_line(
    serve: Callable[..., tuple[int, str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Section 8: without GOLDTRAIL_REGISTRAR_KEY the server writes a generated registrar
    key next to the log key; where that name cannot be created (here a dangling link takes
    it), one plain line says which file and what to set, and the log stays empty."""
    (tmp_path / REGISTRAR_KEY_NAME).symlink_to(tmp_path / "nowhere" / "key")
    settings = {
        "database_url": f"sqlite:///{tmp_path}/ledger.db",
        "log_key_file": str(tmp_path / "log.key"),
        "origin": ORIGIN,
    }
    code, err, started = serve(capsys, **settings)
    assert code == 2, err
    assert err.startswith("goldtrail: cannot start: "), err
    assert str(tmp_path / REGISTRAR_KEY_NAME) in err and "GOLDTRAIL_REGISTRAR_KEY" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert started == []


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "0"])
def test_serve_refuses_a_port_no_socket_can_have(
    port: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Section 8: ``goldtrail serve --port P``. A port outside 1..65535 was taken as it
    was: the server said it served on :70000 while the socket listened on another port
    (70000 mod 65536), and port 0 on one the system chose and nobody was told. It is a
    usage error in one line, exit code 2, before anything is opened."""
    from clients.cli import main

    started: list[Any] = []
    monkeypatch.setattr(api.server, "serve", lambda *a, **k: started.append(a) or 0)
    with pytest.raises(SystemExit) as ended:
        main(["serve", "--port", port])
    err = capsys.readouterr().err
    assert ended.value.code == 2, err
    assert err.startswith("error: ") and "--port" in err and "(usage" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert started == []
