"""Tests of ledger.store on SQLite and PostgreSQL: appends, receipts, proofs, locking,
append-only enforcement by the database, O(log n) tree I/O, queries and start-up checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text

from ledger import merkle, tables
from ledger.audit import audit
from ledger.checkpoint import Checkpoint, LogSigner, open_checkpoint
from ledger.errors import ConflictError, IntegrityError, LedgerError, RuleError, SchemaError
from ledger.protocol import event_id, public_key_hex, sign_body
from ledger.store import (
    Ledger,
    Receipt,
    make_engine,
    migrate,
    open_ledger,
    postgresql_fsync_off,
    write_transaction,
)
from ledger.verify import verify_bundle
from tests import factories

ORIGIN = "test.goldtrail.example/log"
T = "2026-11-01T08:00:00Z"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
REGISTRAR = nacl.signing.SigningKey(hashlib.sha256(b"registrar").digest())
REGISTRAR_HEX = public_key_hex(REGISTRAR)


# ---------------------------------------------------------------------------
# Events


def seq0(time: str = T) -> dict[str, Any]:
    """The registrar's self-registration, signed by the configured registrar key."""
    body = {
        "v": 1,
        "type": "actor.registered",
        "actor": "registrar",
        "subject": "registrar",
        "name": "Test registry",
        "roles": ["registrar"],
        "key": REGISTRAR_HEX,
        "country": "CD",
        "time": time,
    }
    return sign_body(body, REGISTRAR, ORIGIN)


@cache
def auditor(i: int, time: str = T) -> dict[str, Any]:
    """The registration of auditor ``i`` (no custody role, no lot prefix) by the registrar."""
    key = nacl.signing.SigningKey(hashlib.sha256(b"auditor-%d" % i).digest())
    body = {
        "v": 1,
        "type": "actor.registered",
        "actor": "registrar",
        "subject": f"auditor-{i:05d}",
        "name": f"Audit firm {i}",
        "roles": ["auditor"],
        "key": public_key_hex(key),
        "country": "UG",
        "time": time,
    }
    return sign_body(body, REGISTRAR, ORIGIN)


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "log.key"


@pytest.fixture
def ledger(database_url: str, key_file: Path) -> Iterator[Ledger]:
    """An empty ledger on a fresh database, configured with REGISTRAR."""
    led = open_ledger(
        database_url,
        origin=ORIGIN,
        log_key_file=key_file,
        registrar_key=REGISTRAR_HEX,
        clock=lambda: NOW,
    )
    try:
        yield led
    finally:
        led.engine.dispose()


@pytest.fixture
def started(ledger: Ledger) -> Ledger:
    """A ledger whose seq 0 is the registrar's self-registration."""
    ledger.append_one(seq0())
    return ledger


def opened(ledger: Ledger, note: str) -> Checkpoint:
    return open_checkpoint(note, ledger.verifier_key)


def check_receipt(ledger: Ledger, receipt: Receipt, envelope: dict[str, Any]) -> Checkpoint:
    """The receipt names the envelope and its checkpoint proves the envelope is included."""
    assert receipt["event_id"] == event_id(envelope["body"])
    cp = opened(ledger, receipt["checkpoint"])
    assert cp.size > receipt["seq"]
    entry = ledger.entry_by_id(receipt["event_id"])
    assert entry is not None and entry["seq"] == receipt["seq"]
    assert entry["envelope"] == envelope
    assert entry["leaf_hash"] == receipt["leaf_hash"]
    proof = ledger.inclusion_proof(receipt["seq"], cp.size)
    merkle.verify_inclusion(
        bytes.fromhex(receipt["leaf_hash"]), receipt["seq"], cp.size, proof, cp.root
    )
    return cp


def stored_checkpoint_sizes(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(select(tables.checkpoints.c.size).order_by(tables.checkpoints.c.size))
            .scalars()
            .all()
        )


def all_leaves(engine: Engine) -> list[tuple[int, bytes]]:
    with engine.connect() as conn:
        rows = conn.execute(select(tables.log.c.seq, tables.log.c.envelope).order_by("seq"))
        return [(r.seq, merkle.leaf_hash(bytes(r.envelope))) for r in rows]


# ---------------------------------------------------------------------------
# Schema


def test_migrations_agree_with_metadata(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert diff == []
        assert version == "0002_event_id_index"
    finally:
        engine.dispose()


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # FULL (issue 8: never lose a signed event): with NORMAL a power cut may drop
            # commits already acknowledged with a signed checkpoint, and the log would then
            # sign another root for the same size
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_postgresql_sessions_never_commit_asynchronously(postgres_url: str) -> None:
    """Issue 8, never lose a signed event: the throwaway test server sets
    synchronous_commit off, as a careless production one might; the store's sessions turn
    it on, and the fsync check says what goldtrail cannot change."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(postgres_url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    ) as raw:
        assert raw.execute("SHOW synchronous_commit").fetchone() == ("off",)
    engine = make_engine(postgres_url)
    try:
        for _ in range(2):  # a fresh connection, then one from the pool
            with engine.begin() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        assert postgresql_fsync_off(engine)  # the test server runs without fsync
    finally:
        engine.dispose()


APPEND_ONLY_STATEMENTS = [
    "UPDATE log SET type = 'x'",
    "DELETE FROM log",
    "UPDATE tree_nodes SET hash = hash",
    "DELETE FROM tree_nodes",
    "UPDATE checkpoints SET note = 'x'",
    "DELETE FROM checkpoints",
]


def test_database_refuses_changes_to_the_log(started: Ledger) -> None:
    started.append([auditor(1), auditor(2)])
    engine = started.engine
    statements = list(APPEND_ONLY_STATEMENTS)
    if engine.dialect.name == "postgresql":
        statements += ["TRUNCATE log", "TRUNCATE tree_nodes", "TRUNCATE checkpoints"]
    for statement in statements:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):  # noqa: SIM117
            with engine.begin() as conn:
                conn.execute(text(statement))
    assert started.size() == 3
    assert len(stored_checkpoint_sizes(engine)) == 2


# ---------------------------------------------------------------------------
# Appending


def test_log_not_started(ledger: Ledger) -> None:
    with pytest.raises(ConflictError) as info:
        ledger.append_one(auditor(1))
    assert info.value.code == "log_not_started"
    assert ledger.size() == 0
    assert opened(ledger, ledger.latest_checkpoint()).size == 0
    assert ledger.log_info()["registrar_key"] is None


def test_appends_are_gapless_with_checkpoints_that_include_them(ledger: Ledger) -> None:
    envelopes = [seq0()] + [auditor(i) for i in range(1, 30)]
    groups = [envelopes[0:1], envelopes[1:2], envelopes[2:5], envelopes[5:6], envelopes[6:30]]
    published: list[Checkpoint] = []
    expected_seq = 0
    for group in groups:
        result = ledger.append(group)
        assert result.created
        assert result.size == expected_seq + len(group)
        assert result.new == [True] * len(group)
        for receipt, envelope in zip(result.receipts, group, strict=True):
            assert receipt["seq"] == expected_seq
            cp = check_receipt(ledger, receipt, envelope)
            assert cp.size == result.size
            expected_seq += 1
        published.append(opened(ledger, result.checkpoint))
    sizes = [cp.size for cp in published]
    assert stored_checkpoint_sizes(ledger.engine) == sizes
    for cp in published:
        assert ledger.checkpoint_at(cp.size) == cp.note
    # every published checkpoint is consistent with every later one
    for i, first in enumerate(published):
        for second in published[i:]:
            proof = ledger.consistency_proof(first.size, second.size)
            merkle.verify_consistency(first.size, second.size, first.root, second.root, proof)
    info = ledger.log_info()
    assert info == {
        "origin": ORIGIN,
        "verifier_key": ledger.verifier_key,
        "registrar_key": REGISTRAR_HEX,
        "size": 30,
        "root": merkle.root_from_leaves([h for _, h in all_leaves(ledger.engine)]).hex(),
    }
    assert ledger.latest_checkpoint() == published[-1].note
    assert [seq for seq, _ in all_leaves(ledger.engine)] == list(range(30))


def test_repost_gets_the_original_receipt(started: Ledger) -> None:
    first = started.append([auditor(1), auditor(2)])
    started.append([auditor(3)])
    later = started.append([auditor(4)])

    again = started.append_one(auditor(1))
    assert again == first.receipts[0]
    assert again["checkpoint"] == first.checkpoint
    assert started.size() == 5
    assert stored_checkpoint_sizes(started.engine) == [1, 3, 4, 5]

    # a whole batch already logged: 200, the current checkpoint, nothing signed
    old = started.append([auditor(2), auditor(4)])
    assert not old.created
    assert [r["checkpoint"] for r in old.receipts] == [first.checkpoint, later.checkpoint]
    assert old.checkpoint == later.checkpoint

    # new events, repeats inside the batch and old events mixed
    mixed = started.append([auditor(5), auditor(5), auditor(3), auditor(6)])
    assert mixed.created and mixed.size == 7
    assert [r["seq"] for r in mixed.receipts] == [5, 5, 3, 6]
    assert mixed.new == [True, False, False, True]
    assert mixed.receipts[1]["checkpoint"] == mixed.checkpoint
    assert opened(started, mixed.receipts[2]["checkpoint"]).size == 4
    envs = [auditor(5), auditor(5), auditor(3), auditor(6)]
    for receipt, env in zip(mixed.receipts, envs, strict=True):
        check_receipt(started, receipt, env)
    assert stored_checkpoint_sizes(started.engine) == [1, 3, 4, 5, 7]


def test_same_body_other_signature_is_a_conflict(started: Ledger) -> None:
    started.append_one(auditor(1))
    other = factories.alt_signature(factories.Event(auditor(1)), REGISTRAR, ORIGIN).envelope
    assert other != auditor(1)
    with pytest.raises(ConflictError) as info:
        started.append([auditor(2), other])
    assert (info.value.code, info.value.index) == ("duplicate_event", 1)
    assert started.size() == 2


def test_a_refused_batch_changes_nothing(started: Ledger) -> None:
    started.append_one(auditor(1))
    stranger = nacl.signing.SigningKey(b"\x07" * 32)
    bad = sign_body(dict(auditor(9)["body"]), stranger, ORIGIN)
    before = (started.log_info(), started.actors(limit=1000))
    with pytest.raises(LedgerError) as info:
        started.append([auditor(2), auditor(3), bad])
    assert (info.value.code, info.value.index) == ("unknown_key", 2)
    with pytest.raises(LedgerError) as single:
        started.append_one(bad)
    assert single.value.index is None
    with pytest.raises(SchemaError):
        started.append([])
    assert (started.log_info(), started.actors(limit=1000)) == before
    assert stored_checkpoint_sizes(started.engine) == [1, 2]


def test_future_time_only_when_checking_time(started: Ledger) -> None:
    ahead = auditor(1, "2026-11-01T09:06:00Z")  # 6 minutes after the clock
    with pytest.raises(RuleError) as info:
        started.append_one(ahead)
    assert info.value.code == "future_time"
    assert started.append([ahead], check_time=False).created


def test_concurrent_writers_give_a_gapless_log(started: Ledger) -> None:
    writers, rounds = 8, 4
    barrier = threading.Barrier(writers)
    receipts: list[tuple[Receipt, dict[str, Any]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(w: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                base = 1000 + w * 100 + r * 10
                group = [auditor(base)] if r % 2 else [auditor(base), auditor(base + 1)]
                result = started.append(group)
                with lock:
                    receipts.extend(zip(result.receipts, group, strict=True))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = 1 + writers * (rounds + rounds // 2)
    assert started.size() == total
    assert sorted(r["seq"] for r, _ in receipts) == list(range(1, total))
    leaves = all_leaves(started.engine)
    assert [seq for seq, _ in leaves] == list(range(total))
    root = merkle.root_from_leaves([h for _, h in leaves])
    assert started.log_info()["root"] == root.hex()
    sizes = stored_checkpoint_sizes(started.engine)
    assert sizes[-1] == total and len(sizes) == len(set(sizes)) == 1 + writers * rounds
    for receipt, envelope in receipts:
        check_receipt(started, receipt, envelope)


def test_reads_do_not_wait_for_a_writer(started: Ledger) -> None:
    started.append_one(auditor(1))
    answers: list[Any] = []
    with write_transaction(started.engine) as conn:  # holds the write lock
        conn.execute(text("SELECT 1"))
        reader = threading.Thread(
            target=lambda: answers.append((started.log_info()["size"], started.entries()[0]))
        )
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive(), "a read waited for the write lock"
    assert answers[0][0] == 2 and len(answers[0][1]) == 2


def another_ledger(ledger: Ledger, key_file: Path) -> Ledger:
    """A second ledger over the same database and log key (another process would be)."""
    return open_ledger(
        str(ledger.engine.url.render_as_string(hide_password=False)),
        origin=ORIGIN,
        log_key_file=key_file,
        registrar_key=REGISTRAR_HEX,
        clock=lambda: NOW,
    )


def sound(ledger: Ledger) -> bool:
    from tests.ledger.test_audit import run_audit

    return run_audit(ledger).ok


def test_a_rolled_back_append_leaves_no_right_edge_behind(
    started: Ledger, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tree's right edge is kept only once its transaction committed: an append that
    rolls back after writing its tree nodes must not leave its edge behind, for the log
    may reach that size again with other leaves (here through another ledger) before this
    one appends from it."""
    started.append([auditor(i) for i in range(1, 6)], check_time=False)
    sign = started.log_signer.sign

    def failing(size: int, root: bytes) -> Any:
        raise OSError("the disk is full")

    monkeypatch.setattr(started.log_signer, "sign", failing)
    with pytest.raises(OSError):
        started.append([auditor(i) for i in range(6, 9)], check_time=False)
    with pytest.raises(OSError):
        started.append_each([auditor(i) for i in range(6, 9)], check_time=False)
    monkeypatch.setattr(started.log_signer, "sign", sign)
    other = another_ledger(started, key_file)
    try:  # the same size as the rolled-back appends reached, with other leaves
        other.append([auditor(i) for i in range(9, 12)], check_time=False)
    finally:
        other.engine.dispose()
    receipt = started.append_one(auditor(12), check_time=False)
    assert receipt["seq"] == 9
    assert sound(started)  # every checkpoint's root is the recomputed one


def auditor_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"auditor-%d" % i).digest())


def revoke(i: int, time: str = T) -> dict[str, Any]:
    """The registrar revokes auditor ``i``."""
    body = {
        "v": 1,
        "type": "actor.revoked",
        "actor": "registrar",
        "subject": f"auditor-{i:05d}",
        "reason": "Licence withdrawn",
        "time": time,
    }
    return sign_body(body, REGISTRAR, ORIGIN)


def own_profile(i: int, members: int, time: str = T) -> dict[str, Any]:
    """Auditor ``i`` updates its own profile (allowed while it is active)."""
    body = {
        "v": 1,
        "type": "actor.updated",
        "actor": f"auditor-{i:05d}",
        "subject": f"auditor-{i:05d}",
        "profile": {
            "women_led": True,
            "members": {"women": 1, "total": members},
            "leaders": {"women": 1, "total": 3},
        },
        "time": time,
    }
    return sign_body(body, auditor_key(i), ORIGIN)


def test_an_append_sees_what_another_ledger_changed(started: Ledger, key_file: Path) -> None:
    """A ledger takes the actors and sites its last committed append read from memory only
    while the log is at the size that append left: a revocation appended by another ledger
    (another process) in between is seen, and so is one of its own."""
    started.append([auditor(1), auditor(2)], check_time=False)
    started.append_one(own_profile(1, 5), check_time=False)  # read and kept: auditor 1
    other = another_ledger(started, key_file)
    try:
        other.append_one(revoke(1), check_time=False)
    finally:
        other.engine.dispose()
    for append in (started.append_one, lambda e, **kw: started.append_each([e], **kw)[0]):
        outcome: Any
        try:
            outcome = append(own_profile(1, 6), check_time=False)
        except LedgerError as e:
            outcome = e
        assert isinstance(outcome, LedgerError) and outcome.code == "key_inactive"
    started.append_one(own_profile(2, 5), check_time=False)
    started.append_each([revoke(2)], check_time=False)
    with pytest.raises(LedgerError) as refused:
        started.append_one(own_profile(2, 6), check_time=False)
    assert refused.value.code == "key_inactive"
    assert sound(started)


def test_a_rolled_back_append_leaves_no_reads_behind(
    started: Ledger, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an append read and wrote is kept only once its transaction committed: a
    revocation rolled back must not be taken as the actor's state when the log reaches
    that size again through another ledger."""
    started.append([auditor(1)], check_time=False)
    started.append_one(own_profile(1, 5), check_time=False)
    sign = started.log_signer.sign

    def failing(size: int, root: bytes) -> Any:
        raise OSError("the disk is full")

    monkeypatch.setattr(started.log_signer, "sign", failing)
    for append in (started.append, started.append_each):
        with pytest.raises(OSError):
            append([revoke(1)], check_time=False)
    monkeypatch.setattr(started.log_signer, "sign", sign)
    other = another_ledger(started, key_file)
    try:  # the size the rolled-back revocation reached, with another event
        other.append_one(auditor(9), check_time=False)
    finally:
        other.engine.dispose()
    receipt = started.append_one(own_profile(1, 6), check_time=False)
    assert receipt["seq"] == 4
    assert sound(started)


def test_an_append_after_a_rebuild_reads_the_rebuilt_rows(started: Ledger, key_file: Path) -> None:
    """A rebuild rewrites the projections without appending: a ledger that kept the rows
    its last append read or wrote (here one made from a damaged row) reads them again."""
    from ledger.admin import rebuild_projections

    started.append([auditor(1)], check_time=False)
    actors = tables.actors
    with started.engine.begin() as conn:  # damage: a name the log never gave
        doc = conn.execute(select(actors.c.doc).where(actors.c.id == "auditor-00001")).scalar_one()
        conn.execute(
            actors.update().where(actors.c.id == "auditor-00001").values(doc={**doc, "name": "X"})
        )
    other = another_ledger(started, key_file)
    try:  # so that the first ledger reads the damaged row, not what it wrote
        other.append_one(auditor(2), check_time=False)
    finally:
        other.engine.dispose()
    started.append_one(own_profile(1, 5), check_time=False)  # keeps the damaged actor
    assert not sound(started)
    rebuild_projections(started.engine, ORIGIN, REGISTRAR_HEX)
    assert sound(started)
    started.append_one(own_profile(1, 6), check_time=False)
    assert sound(started)
    rebuild_projections(started.engine, ORIGIN, REGISTRAR_HEX)  # the mark moves on
    started.append_one(own_profile(1, 7), check_time=False)
    assert sound(started)


def _count(ledger: Ledger) -> tuple[int, int, int]:
    store = ledger.last_hash_store
    assert store is not None
    return store.reads, store.writes, store.read_calls


def test_tree_io_grows_logarithmically(started: Ledger, key_file: Path) -> None:
    size = 1
    next_id = 1
    measured = {}
    for target in (2**6, 2**10, 2**13):
        while size < target - 1:
            n = min(1000, target - 1 - size)
            started.append([auditor(i) for i in range(next_id, next_id + n)], check_time=False)
            next_id += n
            size += n
        started.append_one(auditor(next_id))
        next_id += 1
        size += 1
        append_io = _count(started)
        assert size == target
        started.inclusion_proof(target // 3, size)
        inclusion_io = _count(started)
        started.consistency_proof(target // 3 + 1, size)
        consistency_io = _count(started)
        measured[target] = (append_io, inclusion_io, consistency_io)

    for target, (append_io, *proof_ios) in measured.items():
        log_n = target.bit_length()
        for reads, writes, calls in proof_ios:
            assert calls == 1  # one batched query per operation
            assert reads <= 2 * log_n
            assert writes <= log_n + 1
        # an append after this ledger's own reads the tree's right edge from memory
        reads, writes, calls = append_io
        assert (reads, calls) == (0, 0) and writes <= log_n + 1
    # the last append completed a 2^13 subtree: it wrote 14 nodes
    assert measured[2**13][0][:2] == (0, 14)

    # another ledger over the same database reads the right edge once (one subtree of
    # 2^13 leaves), in one query, and then no more
    other = another_ledger(started, key_file)
    try:
        other.append_one(auditor(next_id))
        assert _count(other) == (1, 1, 1)
        other.append_one(auditor(next_id + 1))
        assert _count(other) == (0, 2, 0)
        # and the first ledger, whose edge is now out of date, reads it again
        started.append_one(auditor(next_id + 2))
        assert _count(started)[2] == 1
    finally:
        other.engine.dispose()
    assert sound(started)


def test_proof_ranges_are_schema_errors(started: Ledger) -> None:
    started.append([auditor(1), auditor(2)])
    for index, size in [(-1, 2), (2, 2), (0, 0), (0, 4)]:
        with pytest.raises(SchemaError):
            started.inclusion_proof(index, size)
    for first, second in [(0, 1), (2, 1), (1, 4)]:
        with pytest.raises(SchemaError):
            started.consistency_proof(first, second)
    assert started.consistency_proof(3, 3) == []
    with pytest.raises(SchemaError):
        started.entries(-1)
    with pytest.raises(SchemaError):
        started.actors(cursor="not a cursor!")
    with pytest.raises(SchemaError):
        started.lots(status="lost")
    with pytest.raises(SchemaError):
        started.entries(0, 0)


# ---------------------------------------------------------------------------
# Queries over a realistic log


def standard_world() -> Any:
    """A log with actors, sites, lots, transfers, a split, a merge, flags and an export."""
    w = factories.World.standard()
    a = w.register_lot(mass_mg=200_000).body["lot"]
    b = w.register_lot(site="site-b", mass_mg=150_000).body["lot"]
    c = w.register_lot(declarations={"child_labour": "non_wfcl"}).body["lot"]
    w.transfer(a, "trader")
    w.split(a, [100_000, 100_000])
    w.flag(c, "bribery")
    w.transfer(b, "trader")
    parts = [lot for lot in w.ledger.state.lots if lot.startswith("TRD-")]
    w.merge([parts[0], b])
    w.offer(parts[1], "exporter")
    return w


@pytest.fixture
def world_ledger(database_url: str, key_file: Path) -> Iterator[tuple[Ledger, Any]]:
    w = standard_world()
    led = open_ledger(
        database_url,
        origin=w.origin,
        log_key_file=key_file,
        registrar_key=factories.public_key_hex(w.registrar_key),
        clock=lambda: NOW,
    )
    try:
        envelopes = w.envelopes()
        led.append(envelopes[:5], check_time=False)
        for envelope in envelopes[5:8]:
            led.append([envelope], check_time=False)
        led.append(envelopes[8:], check_time=False)
        yield led, w
    finally:
        led.engine.dispose()


def test_projections_equal_the_in_memory_rules(world_ledger: tuple[Ledger, Any]) -> None:
    led, w = world_ledger
    state = w.ledger.state
    for actor_id, actor in state.actors.items():
        assert led.actor(actor_id) == actor
    for site_id, site in state.sites.items():
        assert led.site(site_id) == site
    for lot_id, lot in state.lots.items():
        assert led.lot(lot_id) == lot
    assert led.actor("nobody") is None and led.lot("NOPE-1") is None
    with led.reader() as reader:
        assert reader.key_owner(factories.public_key_hex(w.registrar_key)) == "registrar"
        assert reader.prefix_owner("COOP-") == "coop"
        assert reader.active_registrars() == ["registrar"]
        assert reader.size() == len(w.ledger.leaves)


def _collect(fetch: Any, limit: int) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page, cursor = fetch(cursor=cursor, limit=limit)
        assert len(page) <= limit
        items += page
        if cursor is None:
            return items


def test_lists_and_filters(world_ledger: tuple[Ledger, Any]) -> None:
    led, w = world_ledger
    state = w.ledger.state
    by_creation = sorted(state.lots.values(), key=lambda x: (x.created_seq, x.lot))
    assert _collect(led.lots, 2) == by_creation
    assert led.lots()[0] == by_creation and led.lots()[1] is None

    def expect(**filters: Any) -> list[Any]:
        def keep(lot: Any) -> bool:
            return all(
                (
                    lot.origins.count(v) > 0
                    if k == "site"
                    else getattr(lot, k if k != "custodian" else "custodian") == v
                )
                for k, v in filters.items()
            )

        return [x for x in by_creation if keep(x)]

    for filters in [
        {"custodian": "trader"},
        {"custodian": "coop"},
        {"site": "site-a"},
        {"site": "site-b"},
        {"status": "consumed"},
        {"status": "offered"},
        {"risk": "high"},
        {"risk": "low"},
        {"site": "site-a", "status": "active"},
    ]:
        found = _collect(
            lambda cursor, limit, f=filters: led.lots(**f, cursor=cursor, limit=limit), 1
        )
        assert found == expect(**filters), filters
        assert found, filters

    actors = _collect(led.actors, 3)
    assert [a.id for a in actors] == [
        a.id for a in sorted(state.actors.values(), key=lambda x: x.registered_seq)
    ]
    assert [s.id for s in _collect(led.sites, 1)] == ["site-a", "site-b"]
    assert [s.id for s in led.sites(operator="coop2")[0]] == ["site-b"]

    entries = _collect(lambda cursor, limit: _entries_page(led, cursor, limit), 4)
    assert [e["envelope"] for e in entries] == w.envelopes()
    assert [e["seq"] for e in entries] == list(range(len(entries)))


def _entries_page(led: Ledger, cursor: Any, limit: int) -> tuple[list[Any], Any]:
    return led.entries(0 if cursor is None else cursor, limit)


def test_lot_events_are_the_lots_own_chain(world_ledger: tuple[Ledger, Any]) -> None:
    led, w = world_ledger
    envelopes = w.envelopes()
    for lot_id in w.ledger.state.lots:
        chain = [
            (seq, env)
            for seq, env in enumerate(envelopes)
            if lot_id
            in {env["body"].get("lot")}
            | {i["lot"] for i in env["body"].get("inputs", [])}
            | {o["lot"] for o in env["body"].get("outputs", [])}
        ]
        found = _collect(lambda cursor, limit, x=lot_id: led.lot_events(x, cursor, limit), 1)
        assert [(e["seq"], e["envelope"]) for e in found] == chain
        assert found[-1]["event_id"] == w.lot(lot_id).head
    assert led.lot_events("NOPE-1") == ([], None)


def test_bundles_verify_offline(world_ledger: tuple[Ledger, Any]) -> None:
    led, w = world_ledger
    for lot_id, lot in w.ledger.state.lots.items():
        bundle = led.bundle(lot_id, label_at=lot.created_event)
        assert bundle is not None
        report = verify_bundle(bundle, led.verifier_key, led.log_info()["registrar_key"])
        assert report.ok, report.failures
    assert led.bundle("NOPE-1") is None
    some_lot = next(iter(w.ledger.state.lots))
    with pytest.raises(LedgerError) as info:
        led.bundle(some_lot, label_at="0" * 64)
    assert info.value.code == "unknown_event"


# ---------------------------------------------------------------------------
# Start-up checks (PROTOCOL.md section 8)


def reopen(url: str, key_file: Path, **overrides: Any) -> Ledger:
    options: dict[str, Any] = {
        "origin": ORIGIN,
        "log_key_file": key_file,
        "registrar_key": REGISTRAR_HEX,
    }
    options.update(overrides)
    led = open_ledger(url, **options)
    led.engine.dispose()
    return led


def test_first_start_creates_a_private_key_file(database_url: str, key_file: Path) -> None:
    led = reopen(database_url, key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    seed = bytes.fromhex(key_file.read_text().strip())
    assert led.log_signer.public_key == LogSigner(ORIGIN, seed).public_key
    # an empty log may be restarted with another key or origin: nothing was published
    key_file.unlink()
    other = reopen(database_url, key_file, origin="other.example/log")
    assert other.origin == "other.example/log"


def test_a_ledger_rebound_by_another_server_on_the_empty_log_does_not_sign(
    database_url: str, key_file: Path
) -> None:
    """Two servers (two containers, each with its own key file) start on one empty
    database: the second rebinds the log to its key (allowed: nothing was published). The
    first must then refuse to append (log_key_mismatch) rather than sign checkpoints under a
    key the log no longer names; the log stays one log, under one key."""
    first = reopen(database_url, key_file)
    second = reopen(database_url, key_file.with_name("other.key"))
    try:
        assert first.verifier_key != second.verifier_key
        with pytest.raises(IntegrityError) as info:
            first.append_one(seq0(), check_time=False)
        assert info.value.code == "log_key_mismatch"
        assert first.size() == 0
        second.append_one(seq0(), check_time=False)
        with pytest.raises(IntegrityError) as info:
            first.append_one(seq0(), check_time=False)  # even a re-post: no receipt signed
        assert info.value.code == "log_key_mismatch"
        report = audit(
            second.engine,
            origin=ORIGIN,
            verifier_key=second.verifier_key,
            registrar_key=REGISTRAR_HEX,
        )
        assert report.ok, report.problems
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_the_log_key_is_never_the_registrars(database_url: str, key_file: Path) -> None:
    """Section 4: the server signs checkpoints "with its own Ed25519 log key (not the
    registrar's)": an empty log whose key file holds the key GOLDTRAIL_REGISTRAR_KEY names
    is refused a start, and nothing is bound to that key."""
    seed = hashlib.sha256(b"one key for two roles").digest()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(seed.hex() + "\n")
    same = public_key_hex(nacl.signing.SigningKey(seed))
    with pytest.raises(IntegrityError) as info:
        reopen(database_url, key_file, registrar_key=same)
    assert info.value.code == "log_key_is_registrar_key"
    assert "GOLDTRAIL_LOG_KEY_FILE" in info.value.detail
    assert "GOLDTRAIL_REGISTRAR_KEY" in info.value.detail
    # another log key file: it starts, and the log is bound to that key
    other = key_file.with_name("other.key")
    assert reopen(database_url, other, registrar_key=same).registrar_key == same


def test_restart_refusals(database_url: str, key_file: Path) -> None:
    led = open_ledger(database_url, origin=ORIGIN, log_key_file=key_file, registrar_key=None)
    try:
        assert led.registrar_key is None
        led.registrar_key = REGISTRAR_HEX  # what the API does after generating the key
        led.append_one(seq0(), check_time=False)
    finally:
        led.engine.dispose()

    again = reopen(database_url, key_file, registrar_key=None)
    assert again.registrar_key == REGISTRAR_HEX

    with pytest.raises(IntegrityError, match="origin") as info:
        reopen(database_url, key_file, origin="elsewhere.example/log")
    assert info.value.code == "origin_mismatch"

    other_registrar = public_key_hex(nacl.signing.SigningKey(b"\x05" * 32))
    with pytest.raises(IntegrityError, match="registrar key") as info:
        reopen(database_url, key_file, registrar_key=other_registrar)
    assert info.value.code == "registrar_key_mismatch"

    wrong_key = key_file.with_name("wrong.key")
    wrong_key.write_text("ab" * 32 + "\n")
    with pytest.raises(IntegrityError, match="another key") as info:
        reopen(database_url, wrong_key)
    assert info.value.code == "log_key_mismatch"

    with pytest.raises(IntegrityError, match="missing") as info:
        reopen(database_url, key_file.with_name("absent.key"))
    assert info.value.code == "log_key_missing"
    assert not key_file.with_name("absent.key").exists()

    garbage = key_file.with_name("garbage.key")
    garbage.write_text("not a key")
    with pytest.raises(IntegrityError) as info:
        reopen(database_url, garbage)
    assert info.value.code == "log_key_unreadable"

    assert reopen(database_url, key_file).log_info()["size"] == 1


# ---------------------------------------------------------------------------
# Key files: durable before anything is signed with them


def test_a_new_key_file_is_synced_with_its_folder_and_never_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8, never lose a signed event: the log key signs every checkpoint and the
    server will not start without it. A new key file reaches the disk (file and folder
    synced) before the seed is used, so a power cut after the first signed commit cannot
    leave it empty or missing; and a write that fails leaves no file at all (a restart
    then makes a fresh one instead of refusing an empty one)."""
    from ledger.store import create_seed_file, read_seed_file

    synced: list[tuple[int, int]] = []  # (device, inode): a file keeps it when linked
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        found = os.fstat(fd)
        synced.append((found.st_dev, found.st_ino))
        real_fsync(fd)

    def inode(path: Path) -> tuple[int, int]:
        found = path.stat()
        return found.st_dev, found.st_ino

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "keys" / "log.key"
    seed = create_seed_file(target)
    assert read_seed_file(target) == seed
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert inode(target) in synced and inode(target.parent) in synced
    assert synced.index(inode(target)) < synced.index(inode(target.parent))
    assert sorted(p.name for p in target.parent.iterdir()) == ["log.key"]
    with pytest.raises(FileExistsError):
        create_seed_file(target)
    assert read_seed_file(target) == seed

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    other = tmp_path / "keys" / "registrar.key"
    with pytest.raises(OSError):
        create_seed_file(other)
    assert sorted(p.name for p in target.parent.iterdir()) == ["log.key"]


def test_a_new_key_file_on_a_file_system_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same guarantees where ``link`` is refused (some mounted volumes)."""
    import errno

    from ledger.store import create_seed_file, read_seed_file

    def no_links(*_args: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "log.key"
    seed = create_seed_file(target)
    assert read_seed_file(target) == seed
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["log.key"]
    with pytest.raises(FileExistsError):
        create_seed_file(target)
    assert read_seed_file(target) == seed
