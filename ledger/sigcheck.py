"""Ed25519 signature checks on another core, for big batches and the audit.

The rules check each signature in turn, in one thread; for a batch of a thousand events
that is ~40 ms of one core while the other waits. ``SignatureChecker`` sends the
signatures of many envelopes to a worker process at once (libsodium there, through the
same ``ledger.protocol.verify_signature`` the rules call) and is asked, later, for the
index of the first one that does not verify. The caller runs the rules meanwhile on those
envelopes marked as checked and decides once the answer is in; it never accepts anything
before (see ``Ledger.append`` and ``ledger.audit``).

The worker is a plain ``python -m ledger.sigcheck`` child speaking a small binary protocol
on its standard input and output (not ``multiprocessing``: its ``spawn`` re-imports the
caller's main module, and forking a threaded server is unsafe). It starts on first use and
lives as long as the process; it exits when its input closes, so it never outlives its
parent, even one killed with SIGKILL. Whenever the worker cannot be used (one core, busy
with another thread's batch, dead), the caller checks the signatures itself.

The worker also checks the audit's stored entries whole (``stored_entry_ok``): strict
JSON, the envelope's shape, canonical form, event id and signature, so that the audit's
own thread only reads what the worker found sound.

Request: ``>BHI`` (kind, origin length, count), the origin in UTF-8, then per item: for
kind 0 (signatures) the 32-byte body digest, the 32-byte key and the 64-byte signature;
for kind 1 (stored entries) ``>IH`` (envelope length, event id length), the envelope's
bytes and the event id in UTF-8. Answer: ``>i``, the index of the first item that fails,
or -1.
"""

from __future__ import annotations

import atexit
import os
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ledger.errors import LedgerError, SignatureError
from ledger.protocol import (
    canonical_parsed,
    parse_strict,
    sha256,
    split_envelope,
    verify_signature,
)

if TYPE_CHECKING:  # the worker itself needs only ledger.protocol
    from ledger.rules import Prepared

#: below this many signatures the hand-off costs more than it saves
MIN_BATCH = 64

#: (SHA-256 of the canonical body, key hex, signature hex), as ``Prepared`` holds them
Item = tuple[bytes, str, str]


def item_of(prepared: Prepared) -> Item:
    """The signature of a prepared envelope, as the worker takes it."""
    return (prepared.digest, prepared.signature["key"], prepared.signature["value"])


#: (the stored envelope's bytes, the stored event id), as the audit reads them
Entry = tuple[bytes, str]

_HEAD = struct.Struct(">BHI")
_ANSWER = struct.Struct(">i")
_RECORD = 32 + 32 + 64
_ENTRY = struct.Struct(">IH")
_SIGNATURES, _ENTRIES = 0, 1

#: a canonical envelope is ``{"body":<canonical body>`` then this, with the key and value
_TAIL_TEMPLATE = b',"signature":{"key":"' + b"0" * 64 + b'","value":"' + b"0" * 128 + b'"}}'
_BODY_AT = len(b'{"body":')


def first_bad(origin: str, items: Sequence[Item]) -> int | None:
    """The index of the first signature that does not verify for ``origin``, or None."""
    for index, (digest, key, value) in enumerate(items):
        try:
            verify_signature(origin, digest, key, value)
        except SignatureError:
            return index
    return None


def entry_problem(
    origin: str, data: bytes, event_id: str
) -> str | tuple[dict[str, Any], dict[str, str]]:
    """The first thing wrong with a stored entry, in the audit's words; or, when it is an
    envelope as the log must hold it (strict JSON of the envelope's shape, in canonical
    form, its body hashing to ``event_id``, its signature verifying for ``origin``), its
    body and signature."""
    try:
        body, sig = split_envelope(parse_strict(data))
    except LedgerError as e:
        return f"the stored envelope is not a valid event: {e.detail}"
    try:
        # the body as the reader returned it, the signature two strings: canonical_parsed
        envelope = canonical_parsed({"body": body, "signature": sig})
    except LedgerError as e:
        return f"the stored envelope cannot be canonicalised: {e.detail}"
    if envelope != data:
        return "the stored envelope is not in canonical (RFC 8785) form"
    digest = sha256(canonical_body(data))
    if digest.hex() != event_id:
        return f"the body hashes to {digest.hex()}, not to the stored event id"
    try:
        verify_signature(origin, digest, sig["key"], sig["value"])
    except SignatureError:
        return f"the signature does not verify for the origin {origin!r}"
    return body, sig


def stored_entry_ok(origin: str, data: bytes, event_id: str) -> bool:
    """True when ``entry_problem`` finds nothing wrong with the stored entry."""
    return not isinstance(entry_problem(origin, data, event_id), str)


def canonical_body(data: bytes) -> bytes:
    """The body's canonical bytes in a canonical envelope: between ``{"body":`` and the
    signature, whose length is fixed."""
    return data[_BODY_AT : len(data) - len(_TAIL_TEMPLATE)]


def first_bad_entry(origin: str, entries: Sequence[Entry]) -> int | None:
    """The index of the first stored entry that is not ``stored_entry_ok``, or None."""
    for index, (data, event_id) in enumerate(entries):
        if not stored_entry_ok(origin, data, event_id):
            return index
    return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Pending:
    """A request the worker is working on; ``first_bad`` waits for its answer."""

    def __init__(
        self, checker: SignatureChecker, count: int, fallback: Callable[[], int | None]
    ) -> None:
        self._checker = checker
        self._count = count
        self._fallback = fallback
        self._answer: int | None = None
        self._done = False

    def ready(self) -> bool:
        """True when the answer can be had without waiting: the worker has given it (or
        cannot, and it is found here)."""
        return self._done or self._checker.answer_ready()

    def first_bad(self) -> int | None:
        """The index of the first item that fails, or None (asks the worker once)."""
        if not self._done:
            self._answer = self._checker.collect(self._count, self._fallback)
            self._done = True
        return self._answer


class SignatureChecker:
    """One worker process that checks signatures while the caller's thread runs the rules.

    Disabled on a single core (nothing would run in parallel) or when the environment sets
    ``GOLDTRAIL_SIGNATURE_WORKER=0``.
    """

    def __init__(self) -> None:
        self._busy = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self.enabled = _cores() > 1 and os.environ.get("GOLDTRAIL_SIGNATURE_WORKER") != "0"

    def submit(self, origin: str, items: Sequence[Item]) -> Pending | None:
        """Start checking the signatures ``items``; None when they are too few or the worker
        is busy or cannot run (the caller then checks them itself). A returned ``Pending``
        must be asked for its answer, which frees the worker."""

        def records() -> bytes:
            return b"".join(d + bytes.fromhex(k) + bytes.fromhex(v) for d, k, v in items)

        return self._submit(
            _SIGNATURES, origin, len(items), records, lambda: first_bad(origin, items)
        )

    def submit_entries(self, origin: str, entries: Sequence[Entry]) -> Pending | None:
        """Start checking stored entries whole (``stored_entry_ok``); as ``submit``."""

        def records() -> bytes:
            parts: list[bytes] = []
            for data, event_id in entries:
                encoded = event_id.encode("utf-8")
                parts += (_ENTRY.pack(len(data), len(encoded)), data, encoded)
            return b"".join(parts)

        return self._submit(
            _ENTRIES, origin, len(entries), records, lambda: first_bad_entry(origin, entries)
        )

    def _submit(
        self,
        kind: int,
        origin: str,
        count: int,
        records: Callable[[], bytes],
        fallback: Callable[[], int | None],
    ) -> Pending | None:
        if not self.enabled or count < MIN_BATCH or not self._busy.acquire(blocking=False):
            return None
        try:
            proc = self._process()
            name = origin.encode("utf-8")
            stdin = _pipe(proc.stdin)
            stdin.write(_HEAD.pack(kind, len(name), count) + name + records())
            stdin.flush()
        except (OSError, ValueError, struct.error):
            self._stop()
            self._busy.release()
            return None
        return Pending(self, count, fallback)

    def collect(self, count: int, fallback: Callable[[], int | None]) -> int | None:
        """The worker's answer for the request in flight (of ``count`` items); ``fallback``
        finds it here if the worker fails."""
        try:
            proc = self._proc
            data = _pipe(proc.stdout if proc is not None else None).read(_ANSWER.size)
            if len(data) != _ANSWER.size:
                raise OSError("the signature worker stopped")
            (index,) = _ANSWER.unpack(data)
            if not -1 <= index < count:
                raise OSError("the signature worker gave a wrong answer")
            return None if index < 0 else int(index)
        except OSError:
            self._stop()
            return fallback()
        finally:
            self._busy.release()

    def answer_ready(self) -> bool:
        """True when the worker's answer is waiting in its pipe (or there is no worker)."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return True
        try:
            readable, _, _ = select.select([proc.stdout], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _process(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # a forked child must not share its parent's pipes
            self._proc, self._pid = None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            here = str(Path(__file__).resolve().parent.parent)
            path = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
            self._proc = subprocess.Popen(
                # -P: not the working directory first on the path (it may hold another
                # `ledger`); the package this one belongs to comes first through PYTHONPATH
                [sys.executable, "-P", "-m", "ledger.sigcheck"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": path},
            )
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        """Stop the worker (it also stops by itself when this process exits)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:
        raise OSError("the signature worker has no pipe")
    return stream


def result(pending: Pending | None, origin: str, items: Sequence[Item]) -> int | None:
    """The index of the first bad signature among ``items``: the worker's answer to
    ``pending``, or checked here when there is no worker."""
    if pending is not None:
        return pending.first_bad()
    return first_bad(origin, items)


#: the process's checker, shared by every ledger and audit in it
CHECKER = SignatureChecker()
atexit.register(CHECKER.close)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: answer requests until the input closes."""
    while True:
        head = _read_exactly(stdin, _HEAD.size)
        if head is None:
            return
        kind, origin_size, count = _HEAD.unpack(head)
        origin_bytes = _read_exactly(stdin, origin_size)
        if origin_bytes is None:
            return
        origin = origin_bytes.decode("utf-8")
        if kind == _SIGNATURES:
            records = _read_exactly(stdin, count * _RECORD)
            if records is None:
                return
            items = [
                (
                    records[at : at + 32],
                    records[at + 32 : at + 64].hex(),
                    records[at + 64 : at + _RECORD].hex(),
                )
                for at in range(0, len(records), _RECORD)
            ]
            bad = first_bad(origin, items)
        else:
            entries = []
            for _ in range(count):
                sizes = _read_exactly(stdin, _ENTRY.size)
                if sizes is None:
                    return
                data_size, id_size = _ENTRY.unpack(sizes)
                record = _read_exactly(stdin, data_size + id_size)
                if record is None:
                    return
                entries.append((record[:data_size], record[data_size:].decode("utf-8")))
            bad = first_bad_entry(origin, entries)
        stdout.write(_ANSWER.pack(-1 if bad is None else bad))
        stdout.flush()


def main() -> None:
    """Serve until the server closes the input; leave quietly when it is gone."""
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        # the server died (or stopped this worker) while it answered: nobody reads the
        # answer, and a traceback would land among the server's JSON log lines. Python
        # flushes stdout again at exit: point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the server stops
        pass


if __name__ == "__main__":
    main()
