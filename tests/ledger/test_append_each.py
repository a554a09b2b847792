"""``Ledger.append_each`` (group commit of single appends), on SQLite and PostgreSQL.

One group holds events that build on each other, refusals of every kind, repeats and
re-posts. Each outcome must be the one ``append_one`` gives for the same envelopes one at a
time, in the same order (checked against ``MemoryLedger``, the reference replay): same
receipt fields, same error class, code and detail, no batch index. The group shares one
checkpoint that includes all its events; a refusal leaves no trace (the projections are
the sequential ones and the audit finds nothing wrong); a failed transaction writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

from ledger import merkle, rules
from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.errors import ConflictError, LedgerError
from ledger.protocol import public_key_hex
from ledger.replay import MemoryLedger
from ledger.store import AppendResult, Ledger, open_ledger
from tests import factories

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def world_ledger(database_url: str, tmp_path: Path) -> Iterator[tuple[Ledger, factories.World]]:
    """The standard world's log in a fresh database, and the world (to build more events)."""
    w = factories.World.standard()
    led = open_ledger(
        database_url,
        origin=w.origin,
        log_key_file=tmp_path / "log.key",
        registrar_key=public_key_hex(w.registrar_key),
        clock=lambda: NOW,
    )
    try:
        led.append(w.envelopes())
        yield led, w
    finally:
        led.engine.dispose()


def mixed_group(w: factories.World) -> list[dict[str, Any]]:
    """Events for one group, in order: a chain, refusals, repeats, re-posts.

    ``w`` admits the accepted ones into its mirror as they are built (``post=True``), so
    the next ones can name them.
    """
    header = w.envelopes()
    lot = w.register_lot()  # accepted
    offer = w.offer(lot.body["lot"], "trader")  # accepted: builds on the registration
    stale = w.offer(lot.body["lot"], "trader2", prev=lot.id, post=False)  # 409 stale_prev
    twin = factories.alt_signature(lot, w.key_of("coop"))  # 409 duplicate_event
    forged = factories.tamper(w.register_lot(post=False), mass_mg=1)  # 401 bad_signature
    unknown_site = w.register_lot(site="site-z", actor="coop", post=False)  # 404
    wrong_prefix = w.register_lot(lot="PRC-0001", post=False)  # 403 wrong_prefix
    future = w.register_lot(post=False, time=NOW + dt.timedelta(hours=1))  # 422 future_time
    w.at(NOW - dt.timedelta(days=1))
    second = w.register_lot(site="site-b")  # accepted after the refusals
    accept = w.accept(lot.body["lot"])  # accepted: answers the offer of this group
    duplicate_lot = w.register_lot(lot=second.body["lot"], site="site-b", post=False)  # 409
    return [
        lot.envelope,
        offer.envelope,
        stale.envelope,
        lot.envelope,  # the same envelope again in the same group: its receipt again
        twin.envelope,
        forged.envelope,
        {"body": lot.body},  # 422 schema (no signature)
        unknown_site.envelope,
        wrong_prefix.envelope,
        future.envelope,
        header[3],  # logged before the group: its receipt as first issued
        second.envelope,
        accept.envelope,
        duplicate_lot.envelope,
        offer.envelope,
    ]


def sequential_outcomes(
    w: factories.World, header: list[dict[str, Any]], envelopes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What ``append_one`` answers for each envelope, one at a time after ``header``: the
    reference replay."""
    ref = MemoryLedger(w.origin, public_key_hex(w.registrar_key))
    ref.append_batch(header)
    answers: list[dict[str, Any]] = []
    for envelope in envelopes:
        try:
            admitted = ref.append(envelope, now=NOW)
        except LedgerError as e:
            answers.append({"error": (type(e), e.code, e.detail, e.index)})
            continue
        seq = ref.seq_by_id[admitted.event_id]
        answers.append(
            {"event_id": admitted.event_id, "seq": seq, "new": admitted.existing is None}
        )
    return answers


def test_each_envelope_gets_its_sequential_outcome(
    world_ledger: tuple[Ledger, factories.World],
) -> None:
    led, w = world_ledger
    start = led.size()
    header = w.envelopes()
    old_receipt = led.append_one(header[3])  # a re-post before the group
    envelopes = mixed_group(w)
    expected = sequential_outcomes(w, header, envelopes)

    results = led.append_each(envelopes)

    assert len(results) == len(envelopes)
    assert [e["error"][1] for e in expected if "error" in e] == [
        "stale_prev",
        "duplicate_event",
        "bad_signature",
        "schema",
        "unknown_site",
        "wrong_prefix",
        "future_time",
        "duplicate_lot",
    ]
    new = sum(1 for e in expected if e.get("new"))
    assert new == 4
    size = start + new
    assert led.size() == size
    note = led.latest_checkpoint()
    checkpoint = open_checkpoint(note, led.verifier_key)
    assert checkpoint.size == size
    for envelope, result, want in zip(envelopes, results, expected, strict=True):
        if "error" in want:
            assert isinstance(result, LedgerError), (want, result)
            assert (type(result), result.code, result.detail, result.index) == want["error"]
            continue
        assert isinstance(result, AppendResult), (want, result)
        (receipt,) = result.receipts
        assert (receipt["event_id"], receipt["seq"]) == (want["event_id"], want["seq"])
        assert result.created is want["new"] and result.new == [want["new"]]
        if receipt["seq"] < start:  # logged before: the receipt as first issued
            assert receipt == old_receipt
            continue
        # one checkpoint for the group, and it includes the event
        assert receipt["checkpoint"] == note == result.checkpoint
        leaf = merkle.leaf_hash(rules.prepare(envelope).leaf_data)
        assert receipt["leaf_hash"] == leaf.hex()
        proof = led.inclusion_proof(receipt["seq"], size)
        merkle.verify_inclusion(leaf, receipt["seq"], size, proof, checkpoint.root)

    # the projections are the sequential ones (``w`` admitted the accepted events one by
    # one as it built them): a refusal left nothing behind
    named = {e["body"]["lot"] for e in envelopes if "lot" in e["body"]}
    assert len(named) == 6  # two accepted, four refused
    for lot_id in named:
        assert led.lot(lot_id) == w.ledger.state.lots.get(lot_id), lot_id
    for actor_id in ("coop", "coop2", "trader", "trader2"):
        assert led.actor(actor_id) == w.actor(actor_id)
    accepted = {want["event_id"] for want in expected if "event_id" in want}
    for envelope, want in zip(envelopes, expected, strict=True):
        if "error" in want and factories.Event(envelope).id not in accepted:
            assert led.entry_by_id(factories.Event(envelope).id) is None
    report = audit(led.engine, origin=w.origin, verifier_key=led.verifier_key)
    assert report.ok, report.summary()


def test_a_refusal_after_staging_leaves_no_trace(
    world_ledger: tuple[Ledger, factories.World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that fails after staging changes (none does today, the nesting must not
    rely on it) leaves the group's state as it was; the others are appended."""
    led, w = world_ledger
    doomed = w.register_lot(post=False)
    handler = rules._HANDLERS["lot.registered"]

    def stage_then_refuse(state: Any, ev: Any, lenient: bool) -> None:
        handler(state, ev, lenient)  # stages the lot and the coop's held_lots
        if ev.body["lot"] == doomed.body["lot"]:
            raise ConflictError("duplicate_lot", "Refused after staging, for the test.")

    monkeypatch.setitem(rules._HANDLERS, "lot.registered", stage_then_refuse)
    before = led.actor("coop")
    assert before is not None
    first = w.register_lot(post=False, lot="COOP-0100")
    last = w.register_lot(post=False, lot="COOP-0101")
    results = led.append_each([first.envelope, doomed.envelope, last.envelope])

    assert isinstance(results[1], ConflictError)
    assert [r.receipts[0]["event_id"] for r in results if isinstance(r, AppendResult)] == [
        first.id,
        last.id,
    ]
    assert led.lot(doomed.body["lot"]) is None
    assert led.entry_by_id(doomed.id) is None
    coop = led.actor("coop")
    assert coop is not None and coop.held_lots == before.held_lots + 2
    assert [r.receipts[0]["seq"] for r in results if isinstance(r, AppendResult)] == [
        led.size() - 2,
        led.size() - 1,
    ]


def test_all_refused_writes_nothing(world_ledger: tuple[Ledger, factories.World]) -> None:
    led, w = world_ledger
    size, note = led.size(), led.latest_checkpoint()
    forged = factories.tamper(w.register_lot(post=False), mass_mg=1)
    results = led.append_each([forged.envelope, "not an envelope"])
    assert [r.code for r in results if isinstance(r, LedgerError)] == ["bad_signature", "schema"]
    assert (led.size(), led.latest_checkpoint()) == (size, note)
    assert led.append_each([]) == []


def test_a_failed_transaction_writes_nothing(
    world_ledger: tuple[Ledger, factories.World], monkeypatch: pytest.MonkeyPatch
) -> None:
    led, w = world_ledger
    size, note = led.size(), led.latest_checkpoint()
    envelopes = [w.register_lot(post=False).envelope for _ in range(3)]
    write = led._write

    def write_then_fail(*args: Any, **kwargs: Any) -> str:
        write(*args, **kwargs)  # log rows, tree, projections and checkpoint, uncommitted
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(led, "_write", write_then_fail)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        led.append_each(envelopes)
    assert (led.size(), led.latest_checkpoint()) == (size, note)
    assert all(led.entry_by_id(factories.Event(e).id) is None for e in envelopes)
    assert led.lot(envelopes[0]["body"]["lot"]) is None

    monkeypatch.undo()
    results = led.append_each(envelopes)
    assert [r.created for r in results if isinstance(r, AppendResult)] == [True] * 3
    report = audit(led.engine, origin=w.origin, verifier_key=led.verifier_key)
    assert report.ok, report.summary()
