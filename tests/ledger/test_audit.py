"""Tests of ledger.audit on SQLite and PostgreSQL: green on a sound log, and the exact entry,
tree node, checkpoint or projection named when someone changes the database behind the
store's back (dropping or disabling the append-only triggers, as only an intruder could)."""

from __future__ import annotations

import datetime as dt
import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, Text, select, text

from ledger import tables
from ledger.audit import AuditReport, audit
from ledger.checkpoint import LogSigner
from ledger.errors import LedgerError
from ledger.protocol import public_key_hex
from ledger.store import DocText, Ledger, doc_text, open_ledger
from tests import factories

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


@cache
def build_world() -> Any:
    """A log with lots, transfers, a split, a merge, flags and an offer (built once, read only)."""
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
def logged(database_url: str, tmp_path: Path) -> Iterator[tuple[Ledger, Any, Path]]:
    """A ledger holding the world's log, appended in a few batches; and its key file."""
    w = build_world()
    key_file = tmp_path / "log.key"
    led = world_ledger(w, database_url, key_file)
    try:
        envelopes = w.envelopes()
        for at in range(0, len(envelopes), 7):
            led.append(envelopes[at : at + 7], check_time=False)
        yield led, w, key_file
    finally:
        led.engine.dispose()


def world_ledger(w: Any, database_url: str, key_file: Path) -> Ledger:
    """An empty ledger for the world's log."""
    return open_ledger(
        database_url,
        origin=w.origin,
        log_key_file=key_file,
        registrar_key=public_key_hex(w.registrar_key),
        clock=lambda: NOW,
    )


def run_audit(led: Ledger, **kwargs: Any) -> AuditReport:
    return audit(
        led.engine,
        origin=led.origin,
        verifier_key=kwargs.pop("verifier_key", led.verifier_key),
        registrar_key=led.registrar_key,
        **kwargs,
    )


@contextmanager
def behind_the_stores_back(engine: Engine, table: str) -> Iterator[Connection]:
    """A transaction in which ``table``'s append-only triggers do not fire."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        else:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER ALL"))
        yield conn
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER ALL"))


def envelope_at(engine: Engine, seq: int) -> tuple[str, bytes]:
    with engine.connect() as conn:
        row = conn.execute(
            select(tables.log.c.event_id, tables.log.c.envelope).where(tables.log.c.seq == seq)
        ).one()
    return str(row.event_id), bytes(row.envelope)


def set_envelope(engine: Engine, seq: int, data: bytes) -> None:
    with behind_the_stores_back(engine, "log") as conn:
        conn.execute(tables.log.update().where(tables.log.c.seq == seq).values(envelope=data))


# ---------------------------------------------------------------------------


def test_a_sound_log_is_green(logged: tuple[Ledger, Any, Path]) -> None:
    led, w, _ = logged
    calls: list[tuple[int, int]] = []
    report = run_audit(led, progress=lambda done, total: calls.append((done, total)))
    assert report.ok, report.problems
    size = len(w.ledger.leaves)
    assert report.size == size
    assert report.projections_compared
    assert report.checkpoints == -(-size // 7)
    assert report.tree_nodes == len(w.ledger.tree.hashes)
    assert calls and calls[-1] == (size, size)
    assert "sound" in report.summary()
    # the triggers are still there after an audit
    with pytest.raises(sqlalchemy.exc.DBAPIError), led.engine.begin() as conn:
        conn.execute(text("DELETE FROM log"))


def test_an_empty_log_is_green(database_url: str, tmp_path: Path) -> None:
    led = open_ledger(database_url, origin="empty.example/log", log_key_file=tmp_path / "k")
    try:
        report = run_audit(led)
    finally:
        led.engine.dispose()
    assert report.ok and report.size == 0


@pytest.mark.parametrize("how", ["digit", "not_json", "reencoded"])
def test_one_changed_envelope_byte_is_named(logged: tuple[Ledger, Any, Path], how: str) -> None:
    led, _, _ = logged
    seq = 17
    eid, data = envelope_at(led.engine, seq)
    if how == "digit":  # still canonical JSON: only the hashes and the signature tell
        at = data.index(b'"mass_mg":') + len(b'"mass_mg":')
        changed = data[:at] + (b"2" if data[at : at + 1] != b"2" else b"3") + data[at + 1 :]
    elif how == "not_json":
        changed = b" " + data[1:]
    else:  # the same JSON, not in canonical form: a space after the first colon
        at = data.index(b":") + 1
        changed = data[:at] + b" " + data[at:]
    assert changed != data
    set_envelope(led.engine, seq, changed)

    report = run_audit(led)
    assert not report.ok
    first = report.first_bad_entry
    assert first is not None and report.first == first
    assert (first.seq, first.event_id) == (seq, eid)
    assert str(seq) in report.summary() and eid in report.summary()
    assert all(p.seq is None or p.seq >= seq for p in report.problems if p.kind == "entry")
    assert not report.projections_compared


def test_a_changed_tree_node_is_named(logged: tuple[Ledger, Any, Path]) -> None:
    led, _, _ = logged
    with behind_the_stores_back(led.engine, "tree_nodes") as conn:
        t = tables.tree_nodes
        conn.execute(t.update().where(t.c.level == 2, t.c.idx == 1).values(hash=b"\x00" * 32))
    report = run_audit(led)
    assert not report.ok
    assert report.first_bad_entry is None
    first = report.first
    assert first is not None and first.kind == "tree" and first.seq == 4
    assert "(level 2, index 1)" in first.detail
    assert report.projections_compared  # the entries themselves are sound


def test_a_missing_tree_node_is_named(logged: tuple[Ledger, Any, Path]) -> None:
    led, _, _ = logged
    with behind_the_stores_back(led.engine, "tree_nodes") as conn:
        t = tables.tree_nodes
        conn.execute(t.delete().where(t.c.level == 0, t.c.idx == 9))
    report = run_audit(led)
    assert not report.ok
    assert report.first is not None and report.first.kind == "tree"
    assert "missing" in report.first.detail and "(level 0, index 9)" in report.first.detail


def test_a_forged_checkpoint_is_named(logged: tuple[Ledger, Any, Path]) -> None:
    led, _, key_file = logged
    size = 14
    c = tables.checkpoints
    with behind_the_stores_back(led.engine, "checkpoints") as conn:
        # signed by someone else
        stranger = LogSigner(led.origin, b"\x09" * 32).sign(size, b"\x01" * 32)
        conn.execute(c.update().where(c.c.size == size).values(note=stranger.note))
    report = run_audit(led)
    assert not report.ok
    assert [p.kind for p in report.problems] == ["checkpoint"]
    assert "size 14" in report.problems[0].detail

    # signed with the log's own key, over a root the entries do not give
    seed = bytes.fromhex(key_file.read_text().strip())
    forged = LogSigner(led.origin, seed).sign(7, b"\x02" * 32)
    with behind_the_stores_back(led.engine, "checkpoints") as conn:
        conn.execute(c.update().where(c.c.size == 7).values(note=forged.note, root=forged.root))
    report = run_audit(led)
    assert [p.kind for p in report.problems] == ["checkpoint", "checkpoint"]
    assert "size 7" in report.problems[0].detail
    assert "the entries give" in report.problems[0].detail


def test_another_log_key_fails_every_checkpoint(logged: tuple[Ledger, Any, Path]) -> None:
    led, _, _ = logged
    other = LogSigner(led.origin, b"\x03" * 32).verifier_key
    report = run_audit(led, verifier_key=other)
    assert not report.ok
    assert {p.kind for p in report.problems} == {"checkpoint", "meta"}


def test_a_gap_in_seq_is_named(logged: tuple[Ledger, Any, Path]) -> None:
    led, _, _ = logged
    with behind_the_stores_back(led.engine, "log") as conn:
        conn.execute(tables.log.delete().where(tables.log.c.seq == 5))
    report = run_audit(led)
    assert not report.ok
    first = report.first_bad_entry
    assert first is not None and first.seq == 5 and "no entry 5" in first.detail


def test_projection_drift_is_named(logged: tuple[Ledger, Any, Path]) -> None:
    led, w, _ = logged
    consumed = next(x for x in w.ledger.state.lots.values() if x.status == "consumed")
    with led.engine.begin() as conn:
        lots = tables.lots
        conn.execute(lots.update().where(lots.c.lot == consumed.lot).values(status="active"))
        conn.execute(tables.actor_keys.delete().where(tables.actor_keys.c.actor == "trader"))
    report = run_audit(led)
    assert not report.ok
    assert report.first_bad_entry is None
    details = [p.detail for p in report.problems]
    assert all(p.kind == "projection" for p in report.problems)
    assert f"lot {consumed.lot!r} differs from a replay of the log" in details
    assert any(d.startswith("key ") and "missing" in d for d in details)


def test_an_audit_leaves_no_reference_cycle(logged: tuple[Ledger, Any, Path]) -> None:
    """The audit runs with the collector paused and frees its replayed state before it
    resumes; that is only cheap if the audit makes no reference cycles."""
    led, _, _ = logged
    assert run_audit(led).ok  # imports, caches and the connection pool are warm now
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        assert run_audit(led).ok
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_projection_docs_are_the_states_json(logged: tuple[Ledger, Any, Path]) -> None:
    """The store writes each doc as pydantic's JSON text of the state, whose value is the
    state's ``model_dump(mode="json")``."""
    led, w, _ = logged
    st = w.ledger.state
    with led.engine.connect() as conn:
        stored = {
            kind: {
                str(r[0]): str(r[1])
                for r in conn.execute(select(table.c[key], sqlalchemy.cast(table.c.doc, Text)))
            }
            for kind, table, key in (
                ("actor", tables.actors, "id"),
                ("site", tables.sites, "id"),
                ("lot", tables.lots, "lot"),
            )
        }
    states = {"actor": st.actors, "site": st.sites, "lot": st.lots}
    for kind, models in states.items():
        assert set(stored[kind]) == set(models)
        for key, model in models.items():
            assert stored[kind][key] == doc_text(model).text
            assert json.loads(stored[kind][key]) == model.model_dump(mode="json", by_alias=True)


def test_docs_written_as_plain_json_audit_alike(logged: tuple[Ledger, Any, Path]) -> None:
    """A database whose docs were written by ``json.dumps`` (as before ``DocText``) audits
    green, and a changed value in such a doc is still named."""
    led, w, _ = logged
    lots = tables.lots
    with led.engine.begin() as conn:
        for table, key in ((tables.actors, "id"), (tables.sites, "id"), (lots, "lot")):
            for row in conn.execute(select(table.c[key], table.c.doc)).all():
                # a dict goes through the engine's serializer as json.dumps
                conn.execute(table.update().where(table.c[key] == row[0]).values(doc=dict(row[1])))
        text_form = conn.execute(select(sqlalchemy.cast(lots.c.doc, Text))).scalars().first()
    assert text_form is not None and '", "' in text_form  # json.dumps's separators
    assert run_audit(led).ok

    lot = next(iter(w.ledger.state.lots))
    with led.engine.begin() as conn:
        doc = conn.execute(select(lots.c.doc).where(lots.c.lot == lot)).scalar_one()
        conn.execute(lots.update().where(lots.c.lot == lot).values(doc={**doc, "mass_mg": 1}))
    report = run_audit(led)
    assert [p.detail for p in report.problems] == [f"lot {lot!r} differs from a replay of the log"]


def test_one_doc_in_another_form_leaves_the_others_alone(logged: tuple[Ledger, Any, Path]) -> None:
    """One doc whose text is not the replay's (its keys in another order, as a body posted
    in another key order leaves them) is compared as a JSON value, and the docs whose text
    is exactly the replay's are not named for it; a changed value is named alone."""
    led, w, _ = logged
    actors = tables.actors
    first, second = sorted(w.ledger.state.actors)[:2]
    with led.engine.begin() as conn:
        doc = conn.execute(select(actors.c.doc).where(actors.c.id == first)).scalar_one()
        reordered = dict(reversed(doc.items()))
        conn.execute(actors.update().where(actors.c.id == first).values(doc=reordered))
    assert run_audit(led).ok

    with led.engine.begin() as conn:
        doc = conn.execute(select(actors.c.doc).where(actors.c.id == second)).scalar_one()
        conn.execute(
            actors.update().where(actors.c.id == second).values(doc={**doc, "name": "Other"})
        )
    report = run_audit(led)
    assert [p.detail for p in report.problems] == [
        f"actor {second!r} differs from a replay of the log"
    ]


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_a_log_posted_in_another_key_order_audits_green(database_url: str, tmp_path: Path) -> None:
    """Clients may send an event's objects with their keys in any order (the signature is
    over the canonical body): the projections then hold the posted order, the log the
    canonical one, and the audit finds them equal."""
    w = build_world()
    led = world_ledger(w, database_url, tmp_path / "log.key")
    try:
        envelopes = [_reversed_keys(e) for e in w.envelopes()]
        half = len(envelopes) // 2
        led.append(envelopes[:half], check_time=False)
        for e in envelopes[half:]:
            outcome = led.append_each([e], check_time=False)[0]
            assert not isinstance(outcome, LedgerError), outcome
        st = w.ledger.state
        replayed = {
            doc_text(x).text for x in (*st.actors.values(), *st.sites.values(), *st.lots.values())
        }
        with led.engine.connect() as conn:
            docs = [
                str(d)
                for table in (tables.actors, tables.sites, tables.lots)
                for d in conn.execute(select(sqlalchemy.cast(table.c.doc, Text))).scalars()
            ]
        assert len(docs) == len(replayed)
        assert any(d not in replayed for d in docs)  # the posted order is what was stored
        report = run_audit(led)
        assert report.ok, report.problems
    finally:
        led.engine.dispose()


def test_an_engine_without_the_serializer_refuses_a_doc_text(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/plain.db")
    tables.metadata.create_all(engine)
    with pytest.raises(sqlalchemy.exc.StatementError), engine.begin() as conn:
        conn.execute(
            tables.sites.insert().values(id="s", operator="o", registered_seq=0, doc=DocText("{}"))
        )
