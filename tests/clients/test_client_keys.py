"""Key files: encrypted at rest, mode 0600, never overwritten, tampering detected."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from clients.keys import (
    FORMAT,
    MIN_LIMITS,
    MODERATE,
    KeyFileError,
    create_key_file,
    load_key_file,
    load_signing_key,
    read_public,
    write_key_file,
)

PASS = "correct horse battery staple"


def _make(path: Path, actor: str = "coop-mambasa-femmes") -> Any:
    return create_key_file(path, actor, PASS, limits=MIN_LIMITS)


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None], *, fix_checksum: bool) -> None:
    document = json.loads(path.read_text())
    change(document)
    if fix_checksum:
        rest = {k: v for k, v in document.items() if k != "checksum"}
        text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        document["checksum"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(document))


def _flip_hex(value: str, at: int = 10) -> str:
    digit = "0" if value[at] != "0" else "1"
    return value[:at] + digit + value[at + 1 :]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    made = _make(path)
    opened = load_key_file(path, PASS)
    assert opened.actor == "coop-mambasa-femmes"
    assert opened.public_key == made.public_key == bytes(opened.signing_key.verify_key).hex()
    assert bytes(opened.signing_key) == bytes(made.signing_key)
    document = json.loads(path.read_text())
    assert document["format"] == FORMAT
    assert set(document) == {"format", "actor", "public_key", "kdf", "box", "checksum"}
    assert set(document["kdf"]) >= {"salt", "opslimit", "memlimit"}
    # the seed is not in the file in clear
    assert bytes(made.signing_key).hex() not in path.read_text()


def test_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key.json"
    old = os.umask(0)  # even with a permissive umask
    try:
        _make(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    _make(path)
    with pytest.raises(KeyFileError, match=r"^wrong passphrase for key file "):
        load_key_file(path, "not the passphrase")


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    path = folder / "key.json"
    first = _make(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        _make(path)
    assert path.read_bytes() == before
    second = create_key_file(path, "coop-mambasa-femmes", PASS, force=True, limits=MIN_LIMITS)
    assert second.public_key != first.public_key
    assert load_key_file(path, PASS).public_key == second.public_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in folder.iterdir()] == ["key.json"]  # no temporary file left


def test_short_passphrase_and_bad_actor_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    with pytest.raises(KeyFileError, match="at least 8"):
        create_key_file(folder / "a.json", "coop-x", "short", limits=MIN_LIMITS)
    with pytest.raises(KeyFileError, match="not an actor id"):
        create_key_file(folder / "b.json", "Coop X", PASS, limits=MIN_LIMITS)
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize("field", ["box", "salt", "public_key"])
def test_changed_byte_is_reported_as_damage(tmp_path: Path, field: str) -> None:
    path = tmp_path / "key.json"
    _make(path)

    def change(document: dict[str, Any]) -> None:
        if field == "salt":
            document["kdf"]["salt"] = _flip_hex(document["kdf"]["salt"])
        else:
            document[field] = _flip_hex(document[field])

    _rewrite(path, change, fix_checksum=False)
    with pytest.raises(KeyFileError, match="damaged or was edited") as info:
        load_key_file(path, PASS)
    assert "wrong passphrase" not in str(info.value)


def test_public_key_not_matching_the_seed(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    _make(path)
    other = nacl.signing.SigningKey.generate().verify_key
    _rewrite(path, lambda d: d.update(public_key=bytes(other).hex()), fix_checksum=True)
    with pytest.raises(KeyFileError, match="tampered with: its public_key is not"):
        load_key_file(path, PASS)


def test_actor_changed_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    _make(path)
    _rewrite(path, lambda d: d.update(actor="registrar-ituri"), fix_checksum=True)
    with pytest.raises(KeyFileError, match="made for 'coop-mambasa-femmes'"):
        load_key_file(path, PASS)


def test_box_changed_with_checksum_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    _make(path)
    _rewrite(path, lambda d: d.update(box=_flip_hex(d["box"], 60)), fix_checksum=True)
    with pytest.raises(KeyFileError):
        load_key_file(path, PASS)


def test_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text("{}")
    with pytest.raises(KeyFileError, match="not a goldtrail key file"):
        load_key_file(path, PASS)
    with pytest.raises(KeyFileError, match="no key file"):
        load_key_file(tmp_path / "missing.json", PASS)


def test_limits_out_of_range_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    _make(path)
    _rewrite(path, lambda d: d["kdf"].update(memlimit=2**40), fix_checksum=True)
    with pytest.raises(KeyFileError, match="out of range"):
        load_key_file(path, PASS)


def test_read_public_needs_no_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    made = _make(path)
    assert read_public(path) == ("coop-mambasa-femmes", made.public_key)


def test_default_limits_are_moderate() -> None:
    for function in (create_key_file, write_key_file):
        assert inspect.signature(function).parameters["limits"].default == MODERATE
    assert MODERATE.memlimit == 256 * 1024 * 1024


def test_load_signing_key_raw_seed_or_encrypted(tmp_path: Path) -> None:
    seed = nacl.signing.SigningKey.generate()
    raw = tmp_path / "registrar.key"
    raw.write_text(bytes(seed).hex() + "\n")
    key, actor = load_signing_key(raw, lambda: pytest.fail("no passphrase for a raw seed"))
    assert bytes(key) == bytes(seed) and actor is None
    encrypted = tmp_path / "enc.json"
    write_key_file(encrypted, "registrar-x", seed, PASS, limits=MIN_LIMITS)
    key, actor = load_signing_key(encrypted, lambda: PASS)
    assert bytes(key) == bytes(seed) and actor == "registrar-x"


# ---------------------------------------------------------------------------
# The keys commands


def test_cli_keys_new_show_export(tmp_path: Path, runner: Callable[..., Any]) -> None:
    path = tmp_path / "k" / "coop.json"
    made = runner(["--key", str(path), "keys", "new", "--actor", "coop-mambasa-femmes"])
    assert made.code == 0, made.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public_key = read_public(path)[1]
    assert public_key in made.stdout
    exported = runner(["--key", str(path), "keys", "export-public"])
    assert exported.code == 0 and exported.stdout.strip() == public_key
    shown = runner(["keys", "show", str(path), "--check"])
    assert shown.code == 0 and "passphrase: correct" in shown.stdout
    again = runner(["--key", str(path), "keys", "new", "--actor", "coop-mambasa-femmes"])
    assert again.code == 1
    assert again.error_lines == [line for line in again.stderr.splitlines() if line]
    assert len(again.error_lines) == 1 and "already exists" in again.error_lines[0]
    assert read_public(path)[1] == public_key


def test_cli_wrong_passphrase_is_one_line(tmp_path: Path, runner: Callable[..., Any]) -> None:
    path = tmp_path / "coop.json"
    _make(path)
    result = runner(
        ["--key", str(path), "keys", "show", "--check"],
        env={"GOLDTRAIL_PASSPHRASE": "wrong passphrase!"},
    )
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: wrong passphrase for key file {path} (key_file)"
    ]


def test_cli_passphrase_prompt_confirms_on_creation(
    tmp_path: Path, runner: Callable[..., Any]
) -> None:
    path = tmp_path / "coop.json"
    result = runner(
        ["--key", str(path), "keys", "new", "--actor", "coop-abc"],
        env={"GOLDTRAIL_PASSPHRASE": ""},
        input=f"{PASS}\n{PASS}\n",
    )
    assert result.code == 0, result.stderr
    assert PASS not in result.stdout  # hidden input
    assert load_key_file(path, PASS).actor == "coop-abc"
    mismatch = runner(
        ["--key", str(tmp_path / "other.json"), "keys", "new", "--actor", "coop-abc"],
        env={"GOLDTRAIL_PASSPHRASE": ""},
        input=f"{PASS}\nsomething else\n",
    )
    assert mismatch.code != 0
    assert not (tmp_path / "other.json").exists()
