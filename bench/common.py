"""Shared pieces of the benchmarks: cheap valid events, the one-core ceiling, servers.

Events. Every benchmark log starts with the same header (a registrar at seq 0, a few
cooperatives with a lot prefix each, one site per cooperative, assessed green until 2099)
and then holds ``lot.registered`` events: the cheapest valid events to make in bulk
(independent of one another, so any number of clients can send them in any order). Keys
are derived from fixed seeds, so any process can make event ``i`` on its own; big runs sign
in a process pool. Event times start on 2025-01-01 and go up one second per event, always in
the past, so the server's future-time rule is on and passes.

Nothing here weakens a check: the servers run ``goldtrail serve`` (uvicorn, the same code
and settings as production), SQLite databases are opened by ``ledger.store.make_engine``
(WAL, ``synchronous=FULL``, the shipped setting), PostgreSQL runs with its default
durability (fsync and synchronous_commit on).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing

REPO = Path(__file__).resolve().parent.parent
#: import ``ledger`` from another tree (e.g. an export of HEAD) to compare before and after
TREE = Path(os.environ.get("GOLDTRAIL_BENCH_TREE") or REPO).resolve()
for _path in (REPO, TREE):
    if str(_path) in sys.path:
        sys.path.remove(str(_path))
    sys.path.insert(0, str(_path))

from ledger.protocol import canonical, sha256, sign_body, signing_message  # noqa: E402

ORIGIN = "bench.goldtrail.example/log"
T0 = dt.datetime(2025, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
LOTS_START = T0 + dt.timedelta(hours=1)
COOPS = 8
BIN = Path(sys.executable).parent
CLEAN = {
    "child_labour": "none",
    "forced_labour": False,
    "armed_groups": "none",
    "security_forces": "none",
}


# ---------------------------------------------------------------------------
# Keys and events


def signing_key(name: str) -> nacl.signing.SigningKey:
    """A fixed Ed25519 key per name (benchmarks only: the seeds are public)."""
    return nacl.signing.SigningKey(hashlib.sha256(b"goldtrail-bench/" + name.encode()).digest())


def public_hex(name: str) -> str:
    return bytes(signing_key(name).verify_key).hex()


def log_seed() -> bytes:
    """The seed of the benchmark log's own key."""
    return bytes(signing_key("log-key"))


def fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def coop_id(c: int) -> str:
    return f"coop-{c:02d}"


def header(coops: int = COOPS, origin: str = ORIGIN) -> list[dict[str, Any]]:
    """Seq 0 (the registrar), the cooperatives, their sites and the sites' assessments."""
    reg = signing_key("registrar")
    out = []
    clock = iter(range(10_000))

    def emit(body: dict[str, Any], key: nacl.signing.SigningKey) -> None:
        full = {"v": 1, **body, "time": fmt(T0 + dt.timedelta(seconds=next(clock)))}
        out.append(sign_body(full, key, origin))

    emit(
        {
            "type": "actor.registered",
            "actor": "registrar",
            "subject": "registrar",
            "name": "Bench registry",
            "roles": ["registrar"],
            "key": public_hex("registrar"),
            "country": "CD",
        },
        reg,
    )
    for c in range(coops):
        emit(
            {
                "type": "actor.registered",
                "actor": "registrar",
                "subject": coop_id(c),
                "name": f"Cooperative {c}",
                "roles": ["cooperative"],
                "key": public_hex(coop_id(c)),
                "country": "CD",
                "lot_prefix": f"C{c:02d}-",
            },
            reg,
        )
    for c in range(coops):
        emit(
            {
                "type": "site.registered",
                "actor": "registrar",
                "site": f"site-{c:02d}",
                "name": f"Site {c}",
                "operator": coop_id(c),
                "country": "CD",
                "region": "Ituri",
                "location": {"lat": "1.23456", "lon": "29.12345"},
            },
            reg,
        )
        emit(
            {
                "type": "site.assessed",
                "actor": "registrar",
                "site": f"site-{c:02d}",
                "status": "green",
                "assessed_on": "2024-12-01",
                "valid_until": "2099-12-31",
            },
            reg,
        )
    return out


_KEYS: dict[str, nacl.signing.SigningKey] = {}


def lot_event(i: int, coops: int = COOPS, origin: str = ORIGIN) -> dict[str, Any]:
    """The ``i``-th lot registration (by cooperative ``i % coops``), signed."""
    c = i % coops
    actor = coop_id(c)
    key = _KEYS.get(actor)
    if key is None:
        key = _KEYS[actor] = signing_key(actor)
    when = LOTS_START + dt.timedelta(seconds=i)
    day = when.date().isoformat()
    # extracted over 30 days by 5 people: plausible, so the lots carry no flag
    since = (when.date() - dt.timedelta(days=29)).isoformat()
    body = {
        "v": 1,
        "type": "lot.registered",
        "actor": actor,
        "time": fmt(when),
        "lot": f"C{c:02d}-{i:010d}",
        "site": f"site-{c:02d}",
        "mass_mg": 100_000 + i % 997,
        "form": "gold",
        "fineness_ppm": 800_000,
        "extracted": {"from": since, "to": day},
        "producers": {"women": 2, "men": 3},
        "recovery": "gravity",
        "declarations": CLEAN,
    }
    return sign_body(body, key, origin)


def _lot_range(args: tuple[int, int, int, str]) -> list[dict[str, Any]]:
    start, count, coops, origin = args
    return [lot_event(i, coops, origin) for i in range(start, start + count)]


def lot_events(
    start: int, count: int, coops: int = COOPS, origin: str = ORIGIN, workers: int = 0
) -> list[dict[str, Any]]:
    """Lot registrations ``start .. start+count-1``; signed in a pool when there are many."""
    if count < 20_000 or workers == 1:
        return _lot_range((start, count, coops, origin))
    chunks = [
        (s, min(5_000, start + count - s), coops, origin)
        for s in range(start, start + count, 5_000)
    ]
    with _pool(workers or os.cpu_count() or 1) as pool:
        return [e for part in pool.map(_lot_range, chunks) for e in part]


def lot_event_chunks(
    start: int, count: int, chunk: int, coops: int = COOPS, origin: str = ORIGIN
) -> Iterator[list[dict[str, Any]]]:
    """Lot registrations in chunks, signed ahead by one worker process while the caller works."""
    chunks = [
        (s, min(chunk, start + count - s), coops, origin)
        for s in range(start, start + count, chunk)
    ]
    with _pool(1) as pool:
        yield from pool.imap(_lot_range, chunks)


def _pool(n: int) -> Any:
    return multiprocessing.get_context("fork").Pool(n)


def batch_bytes(envelopes: Sequence[dict[str, Any]]) -> bytes:
    """A ``POST /v1/events/batch`` body."""
    return json.dumps(
        {"events": list(envelopes)}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def event_bytes(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------
# The ceiling: canonicalise + SHA-256 + Ed25519 verify, one core, tight loop


@dataclass
class Ceiling:
    events_per_s: float
    us_per_event: float
    canonical_us: float
    sha256_us: float
    verify_us: float

    def ratio(self, rate: float) -> float:
        return rate / self.events_per_s


def _best_rate(fn: Callable[[], int], min_seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        done, started = 0, time.perf_counter()
        while True:
            done += fn()
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        best = max(best, done / elapsed)
    return best


def measure_ceiling(
    envelopes: Sequence[dict[str, Any]] | None = None,
    origin: str = ORIGIN,
    min_seconds: float = 1.0,
    rounds: int = 3,
) -> Ceiling:
    """Events/s of the irreducible per-event work on one core: RFC 8785 canonical bytes of
    the body (``ledger.protocol.canonical``, the product's own canonicaliser), SHA-256 of them
    and a strict Ed25519 verify (libsodium through PyNaCl) of the signed message. Best of
    ``rounds`` runs, so the ceiling (and every ratio's denominator) is generous."""
    envs = list(envelopes) if envelopes is not None else lot_events(0, 1000)
    bodies = [e["body"] for e in envs]
    keys = [nacl.signing.VerifyKey(bytes.fromhex(e["signature"]["key"])) for e in envs]
    sigs = [bytes.fromhex(e["signature"]["value"]) for e in envs]
    prefix = signing_message(origin, b"")
    digests = [sha256(canonical(b)) for b in bodies]
    canon = [canonical(b) for b in bodies]

    def full() -> int:
        for body, key, sig in zip(bodies, keys, sigs, strict=True):
            digest = sha256(canonical(body))
            key.verify(prefix + digest, sig)
        return len(bodies)

    def only_canonical() -> int:
        for body in bodies:
            canonical(body)
        return len(bodies)

    def only_sha() -> int:
        for data in canon:
            sha256(data)
        return len(canon)

    def only_verify() -> int:
        for digest, key, sig in zip(digests, keys, sigs, strict=True):
            key.verify(prefix + digest, sig)
        return len(digests)

    rate = _best_rate(full, min_seconds, rounds)
    part = max(0.3, min_seconds / 3)
    return Ceiling(
        events_per_s=rate,
        us_per_event=1e6 / rate,
        canonical_us=1e6 / _best_rate(only_canonical, part, 2),
        sha256_us=1e6 / _best_rate(only_sha, part, 2),
        verify_us=1e6 / _best_rate(only_verify, part, 2),
    )


# ---------------------------------------------------------------------------
# Small helpers


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_disk_gb(path: str | Path) -> float:
    return shutil.disk_usage(path).free / 1e9


@contextlib.contextmanager
def workdir(prefix: str = "goldtrail-bench-") -> Iterator[Path]:
    """A temporary directory (deleted afterwards unless GOLDTRAIL_BENCH_KEEP=1)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get("GOLDTRAIL_BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


def open_bench_ledger(url: str, work: Path) -> Any:
    """``ledger.store.open_ledger`` over ``url`` for the benchmark log (migrates it)."""
    from ledger.store import open_ledger

    key_file = work / "log.key"
    if not key_file.exists():
        key_file.write_text(log_seed().hex() + "\n")
        key_file.chmod(0o600)
    return open_ledger(
        url, origin=ORIGIN, log_key_file=key_file, registrar_key=public_hex("registrar")
    )


def out(line: str = "") -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------
# A real server: ``goldtrail serve`` (uvicorn) on 127.0.0.1


@dataclass
class Server:
    """A running ``goldtrail serve``: its base URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server process and its live children
        (the signature worker) have used so far."""
        return tree_cpu_seconds(self.pid)


def tree_cpu_seconds(pid: int, *, children_only: bool = False) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants, or by
    those descendants alone."""
    pids = _descendants(pid)
    return sum(_cpu_seconds(p) for p in (pids[1:] if children_only else pids))


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError):
            for child in task.read_text().split():
                found += _descendants(int(child))
    return found


@contextlib.contextmanager
def goldtrail_server(database_url: str, work: Path) -> Iterator[Server]:
    """Run ``goldtrail serve`` on a free port over ``database_url``; yield it.

    The log key is the benchmark's fixed one and the registrar key is pinned, so the
    benchmark signs seq 0 itself. The server's JSON logs go to ``work/server.log``.
    """
    import httpx

    key_file = work / "log.key"
    if not key_file.exists():
        key_file.write_text(log_seed().hex() + "\n")
        key_file.chmod(0o600)
    port = free_port()
    env = {
        **os.environ,
        "GOLDTRAIL_DATABASE_URL": database_url,
        "GOLDTRAIL_REGISTRAR_KEY": public_hex("registrar"),
        "GOLDTRAIL_ORIGIN": ORIGIN,
        "GOLDTRAIL_LOG_KEY_FILE": str(key_file),
        "GOLDTRAIL_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    if TREE != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(TREE), env.get("PYTHONPATH", "")]).rstrip(":")
    log = (work / "server.log").open("ab")
    command = [str(BIN / "goldtrail"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    profile = os.environ.get("GOLDTRAIL_BENCH_PROFILE_SERVER")
    if profile:  # the server under py-spy (every thread); collapsed stacks written at the end
        command = [
            str(BIN / "py-spy"),
            "record",
            "--threads",
            "--nonblocking",
            "-r",
            "500",
            "-f",
            "raw",
            "-o",
            profile,
            "--",
            *command,
        ]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=log,
        cwd=work,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"goldtrail serve exited ({proc.returncode}); see {work}/server.log"
                )
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("goldtrail serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield Server(base, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


# ---------------------------------------------------------------------------
# A throwaway PostgreSQL server with its default (durable) settings


def find_postgres_bindir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / t).is_file() for t in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


@contextlib.contextmanager
def postgres_server(work: Path) -> Iterator[str]:
    """Start PostgreSQL in ``work/pg`` (as the ``postgres`` user when we are root, through
    runuser, as tests/conftest.py does) with its default durability: fsync on,
    synchronous_commit on. Yields the URL of an empty database; stops the server after.
    """
    bindir = find_postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_user: list[str] = []
    base = work / "pg"
    base.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(work, 0o755)
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"

    def run(*args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*as_user, *map(str, args)], capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")
        return done

    run(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C")
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# goldtrail benchmark server: default durability\n"
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{base}'\n"
        )
    run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start")
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE goldtrail")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/goldtrail"
    finally:
        stop = run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
        if stop.returncode != 0:
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)


# ---------------------------------------------------------------------------
# Profiles


@contextlib.contextmanager
def maybe_profile(enabled: bool, title: str, path: Path | None = None) -> Iterator[None]:
    """Profile the block with pyinstrument when ``enabled`` (and installed); print a summary."""
    if not enabled:
        yield
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        out(f"  (pyinstrument is not installed: no profile of {title})")
        yield
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        if path is not None:
            path.write_text(text)
        out(f"--- profile: {title} ---")
        out("\n".join(text.splitlines()[:60]))
