"""The event-id index (``ledger.tables``: ``recent_event_ids`` merged into ``event_ids`` at
each multiple of ``store.MERGE_EVERY``) on SQLite and PostgreSQL: every entry's id is in
exactly one part, found in either; the audit checks it and a rebuild mends it; a database
made before it (revision 0001) is migrated with its ids indexed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy.exc
from alembic import command
from sqlalchemy import Connection, Engine, select, text

from ledger import store, tables
from ledger.admin import rebuild_projections
from ledger.audit import audit
from ledger.errors import LedgerError
from ledger.protocol import event_id
from ledger.store import Ledger, alembic_config, migrate, open_ledger, write_transaction
from tests.ledger.test_store import NOW, ORIGIN, REGISTRAR_HEX, auditor, seq0


@pytest.fixture
def merge_every_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MERGE_EVERY", 4)


def opened(url: str, key_file: Path) -> Ledger:
    return open_ledger(
        url, origin=ORIGIN, log_key_file=key_file, registrar_key=REGISTRAR_HEX, clock=lambda: NOW
    )


@pytest.fixture
def ledger(database_url: str, tmp_path: Path, merge_every_4: None) -> Iterator[Ledger]:
    led = opened(database_url, tmp_path / "log.key")
    try:
        yield led
    finally:
        led.engine.dispose()


def parts(engine: Engine) -> tuple[dict[str, int], dict[str, int]]:
    """(event_ids, recent_event_ids) as {event id: seq}."""
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            {bytes(k).hex(): s for k, s in conn.execute(select(t.c.event_id, t.c.seq))}
            for t in (tables.event_ids, tables.recent_event_ids)
        )


def log_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            (r.event_id, r.seq)
            for r in conn.execute(select(tables.log.c.event_id, tables.log.c.seq))
        )


def audit_of(ledger: Ledger) -> list[str]:
    report = audit(
        ledger.engine,
        origin=ORIGIN,
        verifier_key=ledger.verifier_key,
        registrar_key=REGISTRAR_HEX,
    )
    return [p.detail for p in report.problems]


@contextmanager
def doubling_allowed(engine: Engine) -> Iterator[Connection]:
    """A transaction in which ``recent_event_ids`` takes an id ``event_ids`` holds (its
    trigger dropped and made again on SQLite, disabled on PostgreSQL): to damage the index
    as only someone with the database's own rights could."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'event_id_new'")
            ).scalar_one()
            conn.execute(text("DROP TRIGGER event_id_new"))
            yield conn
            conn.execute(text(sql))
        else:
            conn.execute(text("ALTER TABLE recent_event_ids DISABLE TRIGGER event_id_new"))
            yield conn
            conn.execute(text("ALTER TABLE recent_event_ids ENABLE TRIGGER event_id_new"))


def test_ids_move_to_the_big_part_each_time_the_log_passes_a_multiple(ledger: Ledger) -> None:
    ledger.append_one(seq0())
    ledger.append([auditor(1), auditor(2)])  # size 3
    merged, recent = parts(ledger.engine)
    assert merged == {} and recent == log_ids(ledger.engine)
    ledger.append([auditor(3), auditor(4)])  # size 5: passes 4
    merged, recent = parts(ledger.engine)
    assert merged == log_ids(ledger.engine) and recent == {}
    ledger.append_one(auditor(5))  # size 6
    ledger.append([auditor(n) for n in range(6, 12)])  # size 12: exactly a multiple
    merged, recent = parts(ledger.engine)
    assert recent == {} and merged == log_ids(ledger.engine) and len(merged) == 12
    ledger.append_one(auditor(12))
    merged, recent = parts(ledger.engine)
    assert recent == {event_id(auditor(12)["body"]): 12}
    assert audit_of(ledger) == []


def test_an_event_is_found_in_either_part(ledger: Ledger) -> None:
    ledger.append_one(seq0())
    first = ledger.append([auditor(n) for n in range(1, 5)])  # merged at size 5
    later = ledger.append_one(auditor(5))  # in the recent part
    size = ledger.size()
    for envelope, receipt in ((auditor(2), first.receipts[1]), (auditor(5), later)):
        # a re-post is the same event: the receipt as first issued, nothing appended
        again = ledger.append_one(envelope)
        assert (again["seq"], again["event_id"]) == (receipt["seq"], receipt["event_id"])
        entry = ledger.entry_by_id(receipt["event_id"])
        assert entry is not None and entry["seq"] == receipt["seq"]
    assert ledger.size() == size
    # a batch naming events of both parts, and one id twice
    again = ledger.append([auditor(5), auditor(1), auditor(5), auditor(6)])
    assert [r["seq"] for r in again.receipts] == [5, 1, 5, 6]
    assert again.new == [False, False, False, True]


def test_only_the_lowercase_hex_id_names_an_event(ledger: Ledger) -> None:
    receipt = ledger.append_one(seq0())
    assert ledger.entry_by_id(receipt["event_id"]) is not None
    for other in (receipt["event_id"].upper(), receipt["event_id"][:63], "zz" * 32, ""):
        assert ledger.entry_by_id(other) is None


def test_the_audit_finds_a_damaged_index_and_a_rebuild_mends_it(ledger: Ledger) -> None:
    ledger.append_one(seq0())
    ledger.append([auditor(n) for n in range(1, 5)])  # 0..4 merged
    ledger.append([auditor(5), auditor(6)])  # 5..6 recent
    merged, recent = parts(ledger.engine)
    lost, moved = sorted(merged)[0], sorted(recent)[0]
    twice = sorted(merged)[1]
    with doubling_allowed(ledger.engine) as conn:
        conn.execute(
            tables.event_ids.delete().where(tables.event_ids.c.event_id == bytes.fromhex(lost))
        )
        conn.execute(
            tables.recent_event_ids.update()
            .where(tables.recent_event_ids.c.event_id == bytes.fromhex(moved))
            .values(seq=0)
        )
        conn.execute(
            tables.recent_event_ids.insert().values(
                event_id=bytes.fromhex(twice), seq=merged[twice]
            )
        )
    problems = audit_of(ledger)
    assert sorted(problems) == sorted(
        [
            f"event id index entry {twice!r} is in both event_ids and recent_event_ids",
            f"event id index entry {lost!r} is missing from the store",
            f"event id index entry {moved!r} differs from a replay of the log",
        ]
    )
    assert rebuild_projections(ledger.engine, ORIGIN, REGISTRAR_HEX) == 7
    assert audit_of(ledger) == []
    merged, recent = parts(ledger.engine)
    assert merged == log_ids(ledger.engine) and recent == {}
    # and appending goes on from the rebuilt index
    assert ledger.append_one(auditor(2))["seq"] == 2
    assert ledger.append_one(auditor(7))["seq"] == 7


def test_a_database_of_revision_0001_is_migrated_with_its_ids(
    database_url: str, tmp_path: Path
) -> None:
    led = opened(database_url, tmp_path / "log.key")
    try:
        led.append_one(seq0())
        led.append([auditor(n) for n in range(1, 6)])
        ids = log_ids(led.engine)
        config = alembic_config()
        with write_transaction(led.engine) as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0001_initial")
        with led.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            names = set(sqlalchemy.inspect(conn).get_table_names())
        assert version == "0001_initial" and "event_ids" not in names
        migrate(led.engine)
        merged, recent = parts(led.engine)
        assert merged == ids and recent == {}
        # the log is still append-only, and its ids no longer need a unique index of its own
        with (
            pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"),
            write_transaction(led.engine) as conn,
        ):
            conn.execute(text("UPDATE log SET type = 'x' WHERE seq = 0"))
        with (
            pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"),
            write_transaction(led.engine) as conn,
        ):
            conn.execute(text("DELETE FROM log WHERE seq = 5"))
    finally:
        led.engine.dispose()
    again = opened(database_url, tmp_path / "log.key")
    try:
        assert again.append_one(auditor(3))["seq"] == 3
        assert again.append_one(auditor(6))["seq"] == 6
        assert audit_of(again) == []
    finally:
        again.engine.dispose()


def test_a_wrong_index_row_never_names_another_event(ledger: Ledger) -> None:
    """The index is a projection: an id whose row holds another entry's seq (a damaged
    store, which the audit names) finds no event rather than that other entry."""
    ledger.append_one(seq0())
    ledger.append([auditor(1), auditor(2)])
    wrong, other = event_id(auditor(2)["body"]), event_id(auditor(1)["body"])
    with write_transaction(ledger.engine) as conn:
        conn.execute(
            tables.recent_event_ids.update()
            .where(tables.recent_event_ids.c.event_id == bytes.fromhex(wrong))
            .values(seq=1)
        )
    assert ledger.entry_by_id(wrong) is None
    entry = ledger.entry_by_id(other)
    assert entry is not None and entry["event_id"] == other
    with ledger.engine.connect() as conn:
        reader = store.SqlLogReader(conn, ledger.size())
        assert reader.event_at(wrong) is None
        found = reader.event_at(other)
        assert found is not None and found[0] == 1


@pytest.mark.parametrize("wrong_in", ["event_ids", "recent_event_ids"])
def test_the_audit_names_a_wrong_seq_in_either_copy_of_a_doubled_id(
    ledger: Ledger, wrong_in: str
) -> None:
    ledger.append_one(seq0())
    ledger.append([auditor(n) for n in range(1, 5)])  # 0..4 merged
    merged, _ = parts(ledger.engine)
    twice = sorted(merged)[0]
    with doubling_allowed(ledger.engine) as conn:
        right, wrong = merged[twice], (merged[twice] + 1) % 5
        conn.execute(
            tables.event_ids.update()
            .where(tables.event_ids.c.event_id == bytes.fromhex(twice))
            .values(seq=wrong if wrong_in == "event_ids" else right)
        )
        conn.execute(
            tables.recent_event_ids.insert().values(
                event_id=bytes.fromhex(twice), seq=wrong if wrong_in != "event_ids" else right
            )
        )
    assert sorted(audit_of(ledger)) == [
        f"event id index entry {twice!r} differs from a replay of the log",
        f"event id index entry {twice!r} is in both event_ids and recent_event_ids",
    ]


def test_the_database_keeps_event_ids_unique_and_indexed(ledger: Ledger) -> None:
    """As the log's UNIQUE index did: a log row whose id the index does not hold at its seq
    (a writer that does not index, such as a server of an older version) and an id the
    index already holds are refused by the database itself; nothing is written."""
    ledger.append_one(seq0())
    ledger.append([auditor(n) for n in range(1, 5)])  # 0..4 merged
    ledger.append_one(auditor(5))  # 5 recent
    before = (log_ids(ledger.engine), parts(ledger.engine))
    with ledger.engine.connect() as conn:
        row = conn.execute(select(tables.log).where(tables.log.c.seq == 5)).one()._asdict()
    merged_id, recent_id = event_id(auditor(1)["body"]), event_id(auditor(5)["body"])
    fresh = event_id(auditor(9)["body"])

    def refused(why: str, *statements: tuple[object, dict[str, object]]) -> None:
        with (
            pytest.raises(sqlalchemy.exc.DBAPIError, match=why),
            write_transaction(ledger.engine) as conn,
        ):
            for statement, values in statements:
                conn.execute(statement, values)  # type: ignore[call-overload]

    log_row = tables.log.insert()
    index_row = tables.recent_event_ids.insert()
    not_indexed = "a log entry is written only after its event id is indexed at its seq"
    # not indexed at all; indexed at another seq; another id indexed at its seq
    refused(not_indexed, (log_row, {**row, "seq": 6, "event_id": fresh}))
    refused(
        not_indexed,
        (index_row, {"event_id": bytes.fromhex(fresh), "seq": 7}),
        (log_row, {**row, "seq": 6, "event_id": fresh}),
    )
    refused(
        not_indexed,
        (index_row, {"event_id": bytes.fromhex(fresh), "seq": 6}),
        (log_row, {**row, "seq": 6, "event_id": recent_id}),
    )
    # an id already logged, in either part, cannot be indexed again
    for logged, why in (
        (merged_id, "this event id is already in the log"),
        (recent_id, "UNIQUE constraint failed|duplicate key value"),
    ):
        refused(
            why,
            (index_row, {"event_id": bytes.fromhex(logged), "seq": 6}),
            (log_row, {**row, "seq": 6, "event_id": logged}),
        )
    assert (log_ids(ledger.engine), parts(ledger.engine)) == before
    # the store's own appends go on
    assert ledger.append_one(auditor(9))["seq"] == 6
    assert audit_of(ledger) == []


def test_an_append_that_fails_leaves_the_index_as_it_was(ledger: Ledger) -> None:
    """A batch that would pass a multiple (and merge) but is refused, in its last
    envelope, leaves both parts untouched; the next append merges as due."""
    ledger.append_one(seq0())
    ledger.append([auditor(1), auditor(2)])  # size 3, all in the recent part
    before = parts(ledger.engine)
    bad = auditor(4)
    bad = {**bad, "signature": {**bad["signature"], "value": auditor(5)["signature"]["value"]}}
    with pytest.raises(LedgerError):
        ledger.append([auditor(3), bad])
    assert parts(ledger.engine) == before and ledger.size() == 3
    ledger.append([auditor(3), auditor(4)])
    merged, recent = parts(ledger.engine)
    assert merged == log_ids(ledger.engine) and recent == {}
    assert audit_of(ledger) == []
