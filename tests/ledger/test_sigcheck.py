"""Signatures checked on another core give exactly the answers of the plain path.

``Ledger.append`` hands the signatures of a big batch (``sigcheck.MIN_BATCH`` or more) to a
worker process while the rules run; a bad signature anywhere, alone or together with a rule
failure before or after it, must give the same error, index and untouched ledger as when
every signature is checked in turn.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger import sigcheck
from ledger.errors import LedgerError
from ledger.protocol import body_digest, canonical, sign_body, signing_key_from_seed
from ledger.sigcheck import SignatureChecker, first_bad
from ledger.store import Ledger, open_ledger
from tests.ledger.test_store import NOW, ORIGIN, REGISTRAR_HEX, auditor, seq0

N = sigcheck.MIN_BATCH + 36


@pytest.fixture
def started(database_url: str, tmp_path: Path) -> Iterator[Ledger]:
    led = open_ledger(
        database_url,
        origin=ORIGIN,
        log_key_file=tmp_path / "keys" / "log.key",
        registrar_key=REGISTRAR_HEX,
        clock=lambda: NOW,
    )
    led.append_one(seq0())
    try:
        yield led
    finally:
        led.engine.dispose()


def _tamper_signature(env: dict[str, Any]) -> dict[str, Any]:
    env = copy.deepcopy(env)
    value = env["signature"]["value"]
    env["signature"]["value"] = ("0" if value[0] != "0" else "1") + value[1:]
    return env


def _outcome(ledger: Ledger, batch: list[dict[str, Any]]) -> tuple[str, int | None, str] | str:
    before = ledger.size()
    try:
        ledger.append(batch)
    except LedgerError as e:
        assert ledger.size() == before
        return (e.code, e.index, e.detail)
    return "ok"


def _bad_sig(at: int) -> Callable[[list[dict[str, Any]]], None]:
    def change(batch: list[dict[str, Any]]) -> None:
        batch[at] = _tamper_signature(batch[at])

    return change


def _rule_error_then_bad_sig(batch: list[dict[str, Any]]) -> None:
    batch[70] = _tamper_signature(batch[70])
    batch[20] = auditor(10, "2026-11-01T08:00:01Z")  # auditor 10 again: refused by the rules


def _bad_sig_then_rule_error(batch: list[dict[str, Any]]) -> None:
    batch[20] = _tamper_signature(batch[20])
    batch[70] = auditor(10, "2026-11-01T08:00:01Z")


CASES: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "bad signature in the middle": _bad_sig(50),
    "bad signature first": _bad_sig(0),
    "bad signature last": _bad_sig(-1),
    "rule error before a bad signature": _rule_error_then_bad_sig,
    "bad signature before a rule error": _bad_sig_then_rule_error,
}


EXPECTED = {
    "bad signature in the middle": ("bad_signature", 50),
    "bad signature first": ("bad_signature", 0),
    "bad signature last": ("bad_signature", N - 1),
    "rule error before a bad signature": ("duplicate_actor", 20),
    "bad signature before a rule error": ("bad_signature", 20),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_worker_gives_the_plain_answer(
    case: str, started: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [auditor(i) for i in range(N)]
    CASES[case](batch)
    monkeypatch.setattr(sigcheck.CHECKER, "enabled", True)
    with_worker = _outcome(started, batch)
    monkeypatch.setattr(sigcheck.CHECKER, "enabled", False)
    plain = _outcome(started, batch)
    assert with_worker == plain
    assert plain != "ok"
    assert plain[:2] == EXPECTED[case]


def _count_submits(monkeypatch: pytest.MonkeyPatch, method: str = "submit") -> list[int]:
    """Turn the worker on and record, per ``submit`` (or ``submit_entries``), how many
    items it took (0: it took none, the caller checked them itself)."""
    monkeypatch.setattr(sigcheck.CHECKER, "enabled", True)
    calls: list[int] = []
    submit = getattr(sigcheck.CHECKER, method)

    def counted(origin: str, items: Sequence[Any]) -> sigcheck.Pending | None:
        pending = submit(origin, items)
        calls.append(len(items) if pending is not None else 0)
        return pending

    monkeypatch.setattr(sigcheck.CHECKER, method, counted)
    return calls


def test_a_good_batch_is_appended_with_the_worker(
    started: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_submits(monkeypatch)
    receipts = started.append([auditor(i) for i in range(N)]).receipts
    assert calls == [N]  # the worker checked them
    assert [r["seq"] for r in receipts] == list(range(1, N + 1))
    assert started.size() == N + 1


def test_the_worker_and_the_plain_loop_agree() -> None:
    key = signing_key_from_seed("11" * 32)
    envs = [sign_body({"n": i}, key, "o.example/log") for i in range(80)]
    items = [(body_digest(e["body"]), e["signature"]["key"], e["signature"]["value"]) for e in envs]
    checker = SignatureChecker()
    checker.enabled = True
    try:
        for bad in (None, 0, 41, 79):
            trial = list(items)
            if bad is not None:
                trial[bad] = (trial[bad][0], trial[bad][1], "00" * 64)
            pending = checker.submit("o.example/log", trial)
            assert pending is not None
            assert pending.first_bad() == first_bad("o.example/log", trial) == bad
        # another log's origin: every signature fails at once
        pending = checker.submit("other.example/log", items)
        assert pending is not None and pending.first_bad() == 0
    finally:
        checker.close()


def _damaged_entries(origin: str) -> tuple[list[sigcheck.Entry], list[bool]]:
    """Stored entries (envelope bytes, event id), some damaged; and which are sound."""
    key = signing_key_from_seed("33" * 32)
    entries = []
    for i in range(80):
        env = sign_body({"n": i, "text": "café"}, key, origin)
        entries.append((canonical(env), body_digest(env["body"]).hex()))
    good = entries[0]
    other = entries[1][1]
    damaged = {
        3: (good[0], other),  # another event's id
        4: (b" " + good[0], good[1]),  # not canonical: a leading space
        5: (good[0][:-1], good[1]),  # not JSON
        6: (canonical(_tamper_signature(json.loads(good[0]))), good[1]),  # bad signature
        7: (good[0].replace(b'"body":{', b'"body":{"n":1,', 1), good[1]),  # duplicate key
        8: (canonical({"body": {"n": 1}, "signature": {"key": "ab"}}), good[1]),  # bad shape
        9: (good[0].replace(b"caf\xc3\xa9", b"cafe\xcc\x81"), good[1]),  # not NFC
    }
    for at, entry in damaged.items():
        entries[at] = entry
    return entries, [i not in damaged for i in range(len(entries))]


def test_stored_entries_are_sound_only_when_every_check_passes() -> None:
    origin = "o.example/log"
    entries, sound = _damaged_entries(origin)
    assert [sigcheck.stored_entry_ok(origin, d, i) for d, i in entries] == sound
    assert not any(sigcheck.stored_entry_ok("other.example/log", d, i) for d, i in entries)
    # sound means the reference checks pass: canonical form, id and signature
    for (data, event_id), ok in zip(entries, sound, strict=True):
        if ok:
            env = json.loads(data)
            assert canonical(env) == data and body_digest(env["body"]).hex() == event_id
            assert sigcheck.canonical_body(data) == canonical(env["body"])


def test_the_worker_checks_stored_entries_as_the_plain_loop_does() -> None:
    origin = "o.example/log"
    entries, sound = _damaged_entries(origin)
    checker = SignatureChecker()
    checker.enabled = True
    try:
        for start in (0, 4, 5, 6, 7, 8, 9, 10):
            trial = entries[start:] + entries[:start]
            pending = checker.submit_entries(origin, trial)
            assert pending is not None
            first = pending.first_bad()
            assert first == sigcheck.first_bad_entry(origin, trial)
            rotated = sound[start:] + sound[:start]
            assert first == (rotated.index(False) if False in rotated else None)
    finally:
        checker.close()


def _items_bad_at(bad: int, seed: str) -> list[tuple[bytes, str, str]]:
    """Signature items of 70 events for ``o.example/log``, the one at ``bad`` not valid."""
    key = signing_key_from_seed(seed * 32)
    envs = [sign_body({"n": i}, key, "o.example/log") for i in range(70)]
    items = [(body_digest(e["body"]), e["signature"]["key"], e["signature"]["value"]) for e in envs]
    items[bad] = (items[bad][0], items[bad][1], "ab" * 64)
    return items


def _enabled_checker() -> SignatureChecker:
    checker = SignatureChecker()
    checker.enabled = True
    return checker


def test_a_dead_worker_is_replaced_by_local_checks() -> None:
    items = _items_bad_at(33, "22")
    checker = _enabled_checker()
    try:
        pending = checker.submit("o.example/log", items)
        assert pending is not None
        proc = checker._proc
        assert proc is not None
        proc.kill()
        proc.wait()
        assert pending.first_bad() == 33  # checked here instead
        again = checker.submit("o.example/log", items)  # a new worker starts
        assert again is not None and again.first_bad() == 33
    finally:
        checker.close()


def test_the_audit_with_the_worker_reports_what_it_reports_alone(
    started: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import audit as audit_module
    from tests.ledger.test_audit import envelope_at, run_audit, set_envelope

    started.append([auditor(i) for i in range(3 * N)])
    for seq in (30, 31, 2 * N + 5):  # two in one chunk, one in another
        _, data = envelope_at(started.engine, seq)
        env = json.loads(data)
        set_envelope(started.engine, seq, canonical(_tamper_signature(env)))
    monkeypatch.setattr(audit_module, "CHUNK", N)
    calls = _count_submits(monkeypatch, "submit_entries")
    with_worker = run_audit(started)
    # every full chunk went to the worker, all or most of it (see next_share); 1 left over
    assert calls[0] == N and calls[-1] == 0 and len(calls) == 4, calls
    assert all(sigcheck.MIN_BATCH <= c <= N for c in calls[:-1]), calls
    monkeypatch.setattr(sigcheck.CHECKER, "enabled", False)
    plain = run_audit(started)
    assert with_worker == plain
    signature_problems = [p.seq for p in plain.problems if "signature" in p.detail]
    assert signature_problems == [30, 31, 2 * N + 5]


@pytest.mark.parametrize("share", [N, 70])
def test_the_audit_names_damage_the_same_with_and_without_the_worker(
    started: Ledger, monkeypatch: pytest.MonkeyPatch, share: int
) -> None:
    """Entries the worker does not find sound, and those beyond its share of a chunk, are
    checked by the audit itself, in its own words: non-canonical bytes, another id, bytes
    that are not JSON, a bad signature."""
    from ledger import audit as audit_module
    from tests.ledger.test_audit import envelope_at, run_audit, set_envelope

    started.append([auditor(i) for i in range(3 * N)])
    _, data = envelope_at(started.engine, 40)
    set_envelope(started.engine, 40, data.replace(b":", b": ", 1))  # not canonical
    _, data = envelope_at(started.engine, 41)
    at = data.index(b'"time":"') + len(b'"time":"2026-11-01T08:0')
    set_envelope(started.engine, 41, data[:at] + b"9" + data[at + 1 :])  # another body
    _, data = envelope_at(started.engine, N + 3)
    set_envelope(started.engine, N + 3, data[:-2])  # not JSON
    _, data = envelope_at(started.engine, 2 * N + 80)
    set_envelope(started.engine, 2 * N + 80, data.replace(b":", b": ", 1))  # not canonical
    _, data = envelope_at(started.engine, 2 * N + 9)
    set_envelope(started.engine, 2 * N + 9, canonical(_tamper_signature(json.loads(data))))
    _, data = envelope_at(started.engine, 2 * N + 90)
    set_envelope(started.engine, 2 * N + 90, canonical(_tamper_signature(json.loads(data))))
    monkeypatch.setattr(audit_module, "CHUNK", N)
    monkeypatch.setattr(audit_module, "next_share", lambda _share, _ready: share)
    calls = _count_submits(monkeypatch, "submit_entries")
    with_worker = run_audit(started)
    assert calls == [N, N, share, 0], calls  # the first answer moves nothing
    monkeypatch.setattr(sigcheck.CHECKER, "enabled", False)
    plain = run_audit(started)
    assert with_worker == plain
    named = {p.seq: p.detail for p in plain.problems if p.kind == "entry"}
    assert "canonical" in named[40]
    assert "hashes to" in named[41]
    assert "not a valid event" in named[N + 3]
    assert "canonical" in named[2 * N + 80]
    assert "signature" in named[2 * N + 9] and "signature" in named[2 * N + 90]


def test_the_worker_share_follows_who_waits() -> None:
    from ledger.audit import CHUNK, next_share

    assert next_share(CHUNK, ready=True) == CHUNK
    assert next_share(CHUNK, ready=False) < CHUNK
    assert next_share(next_share(CHUNK, ready=False), ready=True) == CHUNK
    share = CHUNK
    for _ in range(10 * CHUNK):
        share = next_share(share, ready=False)
    assert share == sigcheck.MIN_BATCH


def test_the_worker_leaves_quietly_when_the_server_is_gone() -> None:
    """Issue 8, structured JSON logs: the worker shares the server's stderr. When the server
    dies (SIGKILL, the crash test's kill) while the worker answers it, the answer meets a
    closed pipe: the worker exits without writing a Python traceback among the JSON lines."""
    import os
    import signal
    import struct
    import subprocess
    import sys
    import time

    repo = str(Path(__file__).resolve().parents[2])

    def worker() -> subprocess.Popen[bytes]:
        """A worker started as SignatureChecker starts it, with stderr to read."""
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "ledger.sigcheck"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": repo},
        )

    proc = worker()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the server is gone: nobody reads the answer
    origin = ORIGIN.encode()
    proc.stdin.write(struct.pack(">BHI", 0, len(origin), 0) + origin)  # check no signature
    proc.stdin.flush()
    time.sleep(0.5)
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""

    # Ctrl-C on `goldtrail serve` in a terminal reaches the worker too
    waiting = worker()
    time.sleep(1)  # started, reading its input
    waiting.send_signal(signal.SIGINT)
    _out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0
    assert err == b""


def test_the_worker_is_this_ledger_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m`` would put the working directory first on the worker's import path:
    started from a directory holding another ``ledger`` package (a checkout of another
    version, or anything planted there), the worker must still be this one."""
    planted = tmp_path / "ledger"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    marker = tmp_path / "planted-code-ran"
    (planted / "sigcheck.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n"
    )
    monkeypatch.chdir(tmp_path)
    items = _items_bad_at(12, "33")
    checker = _enabled_checker()
    try:
        pending = checker.submit("o.example/log", items)
        assert pending is not None and pending.first_bad() == 12
        proc = checker._proc
        assert proc is not None and proc.poll() is None  # the real worker answered
        assert not marker.exists()
    finally:
        checker.close()
