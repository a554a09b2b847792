"""The offline outbox: chaining, ordering, statuses, refused batches, resuming, no duplicates.

The server is the fake of conftest.py: the real rules engine behind httpx.MockTransport.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clients.outbox import Outbox, OutboxError, sync
from clients.sdk import ApiError, Client, ServerUnreachable
from ledger.protocol import event_id, sign_body

ORIGIN = "test.goldtrail.example/log"


def _signed(world: Any, body: dict[str, Any], signer: Any = None) -> dict[str, Any]:
    return sign_body(body, signer or world.coop_signing, world.fake.origin)


def _client(world: Any) -> Client:
    return Client("http://fake.test", transport=world.fake.transport)


def _queue_registration(world: Any, box: Outbox, lot: str, **extra: Any) -> dict[str, Any]:
    envelope = _signed(world, world.lot_body(lot, **extra))
    box.enqueue(envelope, ORIGIN)
    return envelope


def _queue_on_lot(
    world: Any, box: Outbox, lot: str, body: dict[str, Any], signer: Any = None
) -> dict[str, Any]:
    """Queue an event on ``lot`` chained by the outbox itself (offline: no server view)."""
    state = box.chain(ORIGIN, lot)
    assert state.head is not None
    full = {"v": 1, "time": world.lot_body(lot)["time"], "lot": lot, "prev": state.head, **body}
    if full["type"] in ("lot.transfer_accepted", "lot.transfer_rejected", "lot.transfer_cancelled"):
        full["offer"] = state.offer
    envelope = _signed(world, full, signer)
    box.enqueue(envelope, ORIGIN)
    return envelope


def _offer(world: Any) -> dict[str, Any]:
    return {
        "type": "lot.transfer_offered",
        "actor": world.coop,
        "to": world.trader,
        "mass_mg": 38200,
    }


def _cancel(world: Any) -> dict[str, Any]:
    return {"type": "lot.transfer_cancelled", "actor": world.coop, "reason": "Buyer late"}


# ---------------------------------------------------------------------------
# Chaining


def test_prev_is_chained_from_the_outbox(world: Any, tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        reg = _queue_registration(world, box, "MAK-2026-0001")
        state = box.chain(ORIGIN, "MAK-2026-0001")
        assert state.head == event_id(reg["body"]) and state.pending == 1
        assert state.offer is None and state.source == "outbox"
        offer = _queue_on_lot(world, box, "MAK-2026-0001", _offer(world))
        assert offer["body"]["prev"] == event_id(reg["body"])
        state = box.chain(ORIGIN, "MAK-2026-0001")
        assert state.offer == event_id(offer["body"]) and state.offer_to == world.trader
        cancel = _queue_on_lot(world, box, "MAK-2026-0001", _cancel(world))
        assert cancel["body"]["prev"] == cancel["body"]["offer"] == event_id(offer["body"])
        assert box.chain(ORIGIN, "MAK-2026-0001").offer is None
        # unknown lots have no head offline
        assert box.chain(ORIGIN, "MAK-2026-0999").head is None
        report = sync(box, _client(world), ORIGIN)
    assert report.ok and len(report.sent) == 3
    lot = world.fake.ledger.state.lots["MAK-2026-0001"]
    assert lot.head == event_id(cancel["body"]) and lot.offer is None


def test_server_view_then_pending_events(world: Any, tmp_path: Path) -> None:
    registered = world.fake.append(_signed(world, world.lot_body("MAK-2026-0002")))
    client = _client(world)
    with Outbox(tmp_path / "o.db") as box:
        view = client.lot("MAK-2026-0002")
        state = box.chain(ORIGIN, "MAK-2026-0002", view)
        assert state.head == registered["event_id"] and state.source == "server"
        # the view is cached: offline, the head is still known
        assert box.chain(ORIGIN, "MAK-2026-0002").head == registered["event_id"]
        offer = _queue_on_lot(world, box, "MAK-2026-0002", _offer(world))
        # the server has not seen the offer: the pending event wins over the server's head
        state = box.chain(ORIGIN, "MAK-2026-0002", client.lot("MAK-2026-0002"))
        assert state.head == event_id(offer["body"]) and state.pending == 1
        sync(box, client, ORIGIN)
        # once sent, the cache follows the log
        assert box.chain(ORIGIN, "MAK-2026-0002").head == event_id(offer["body"])
        assert box.cached_lot(ORIGIN, "MAK-2026-0002")["offer"]["id"] == event_id(offer["body"])


def test_pending_event_already_logged_counts_once(world: Any, tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        reg = _queue_registration(world, box, "MAK-2026-0003")
        world.fake.append(reg)  # sent, but the outbox never heard back
        state = box.chain(ORIGIN, "MAK-2026-0003", _client(world).lot("MAK-2026-0003"))
        assert state.head == event_id(reg["body"]) and state.pending == 0


# ---------------------------------------------------------------------------
# Ordering and statuses


def test_sync_sends_in_order_in_batches_and_marks_receipts(world: Any, tmp_path: Path) -> None:
    size_before = len(world.fake.log)
    with Outbox(tmp_path / "o.db") as box:
        queued = []
        for n in range(7):
            queued.append(_queue_registration(world, box, f"MAK-2026-01{n:02d}"))
        assert [e.status for e in box.events()] == ["pending"] * 7
        progress: list[tuple[int, int]] = []
        report = sync(
            box, _client(world), ORIGIN, batch_size=3, progress=lambda d, t: progress.append((d, t))
        )
        assert report.ok and report.batches == 3
        assert progress[0] == (0, 7) and progress[-1] == (7, 7)
        logged = world.fake.event_ids()[size_before:]
        assert logged == [event_id(e["body"]) for e in queued]
        for event in box.events():
            assert event.status == "sent"
            assert event.receipt is not None and event.receipt["event_id"] == event.event_id
            assert event.seq == world.fake.log[event.seq]["seq"]
            assert world.fake.log[event.seq]["event_id"] == event.event_id
        assert box.counts() == {"pending": 0, "sent": 7, "failed": 0}
        # nothing left: a second sync sends nothing
        again = sync(box, _client(world), ORIGIN)
        assert again.sent == [] and again.batches == 0


def test_refused_event_in_a_batch(world: Any, tmp_path: Path) -> None:
    size_before = len(world.fake.log)
    with Outbox(tmp_path / "o.db") as box:
        ok0 = _queue_registration(world, box, "MAK-2026-0201")
        ok1 = _queue_registration(world, box, "MAK-2026-0202")
        bad = _queue_registration(world, box, "XYZ-2026-0203")  # not the coop's prefix
        dependent = _queue_on_lot(world, box, "XYZ-2026-0203", _offer(world))
        ok4 = _queue_registration(world, box, "MAK-2026-0204")
        report = sync(box, _client(world), ORIGIN)
        by_event = {e.event_id: e for e in box.events()}
        assert by_event[event_id(bad["body"])].status == "failed"
        assert by_event[event_id(bad["body"])].error_code == "wrong_prefix"
        assert by_event[event_id(bad["body"])].error_status == 403
        assert by_event[event_id(bad["body"])].error_detail
        assert by_event[event_id(dependent["body"])].status == "pending"
        for envelope in (ok0, ok1, ok4):
            assert by_event[event_id(envelope["body"])].status == "sent"
        assert [e.event_id for e in report.failed] == [event_id(bad["body"])]
        assert [e.event_id for e in report.blocked] == [event_id(dependent["body"])]
        assert not report.ok
        assert world.fake.event_ids()[size_before:] == [
            event_id(e["body"]) for e in (ok0, ok1, ok4)
        ]
        # a later sync keeps the dependent event back, and never drops anything
        later = sync(box, _client(world), ORIGIN)
        assert later.sent == [] and len(later.blocked) == 1
        assert len(box.events()) == 5
        # new events on the lot are refused until the user decides
        assert box.failed_on(ORIGIN, "XYZ-2026-0203") is not None
        dropped = box.drop(by_event[event_id(bad["body"])].id)
        assert dropped.status == "failed"
        box.drop(by_event[event_id(dependent["body"])].id)
        assert box.counts() == {"pending": 0, "sent": 3, "failed": 0}
        with pytest.raises(OutboxError, match="already in the log"):
            box.drop(by_event[event_id(ok0["body"])].id)
        with pytest.raises(OutboxError, match="no event #999"):
            box.drop(999)


def test_failed_event_can_be_retried(world: Any, tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        body = world.lot_body("MAK-2026-0301", site="site-unknown")
        box.enqueue(_signed(world, body), ORIGIN)
        report = sync(box, _client(world), ORIGIN)
        failed = report.failed[0]
        assert failed.error_code == "unknown_site"
        # the registrar registers the site; the user retries
        world.registrar_event(
            {
                "type": "site.registered",
                "site": "site-unknown",
                "name": "Late site",
                "operator": world.coop,
                "country": "CD",
                "region": "Ituri",
                "location": {"lat": "1.00000", "lon": "29.00000"},
            }
        )
        assert box.retry(failed.id).status == "pending"
        with pytest.raises(OutboxError, match="not failed"):
            box.retry(failed.id)
        assert sync(box, _client(world), ORIGIN).ok
        assert box.get(failed.id).status == "sent"


def test_enqueue_is_idempotent(world: Any, tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        envelope = _signed(world, world.lot_body("MAK-2026-0401"))
        first = box.enqueue(envelope, ORIGIN)
        assert box.enqueue(envelope, ORIGIN).id == first.id
        assert box.counts()["pending"] == 1


# ---------------------------------------------------------------------------
# Interruptions


def test_lost_answer_then_resend_never_duplicates(world: Any, tmp_path: Path) -> None:
    size_before = len(world.fake.log)
    with Outbox(tmp_path / "o.db") as box:
        queued = [_queue_registration(world, box, f"MAK-2026-05{n:02d}") for n in range(6)]
        world.fake.drop_answer_after = 1  # the 2nd batch is applied, its answer lost
        report = sync(box, _client(world), ORIGIN, batch_size=2)
        assert isinstance(report.stopped, ServerUnreachable)
        assert box.counts() == {"pending": 4, "sent": 2, "failed": 0}
        assert len(world.fake.log) == size_before + 4  # the server has 4 of them
        report = sync(box, _client(world), ORIGIN, batch_size=2)
        assert report.ok and box.counts() == {"pending": 0, "sent": 6, "failed": 0}
        logged = world.fake.event_ids()[size_before:]
        assert logged == [event_id(e["body"]) for e in queued]  # each exactly once
        for event in box.events():
            assert world.fake.log[event.seq]["event_id"] == event.event_id


def test_server_gone_midway_resumes(world: Any, tmp_path: Path) -> None:
    size_before = len(world.fake.log)
    with Outbox(tmp_path / "o.db") as box:
        queued = [_queue_registration(world, box, f"MAK-2026-06{n:02d}") for n in range(5)]
        world.fake.down_after_batches = 1
        report = sync(box, _client(world), ORIGIN, batch_size=2)
        assert isinstance(report.stopped, ServerUnreachable)
        assert report.remaining == 3 and len(report.sent) == 2
        world.fake.down_after_batches = None
        report = sync(box, _client(world), ORIGIN, batch_size=2)
        assert report.ok and len(report.sent) == 3
        assert world.fake.event_ids()[size_before:] == [event_id(e["body"]) for e in queued]


def test_too_large_batches_are_split(world: Any, tmp_path: Path) -> None:
    world.fake.max_batch = 2
    with Outbox(tmp_path / "o.db") as box:
        for n in range(5):
            _queue_registration(world, box, f"MAK-2026-07{n:02d}")
        report = sync(box, _client(world), ORIGIN, batch_size=100)
        assert report.ok and len(report.sent) == 5


def test_server_error_keeps_events_pending(world: Any, tmp_path: Path) -> None:
    import httpx

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="maintenance")

    with Outbox(tmp_path / "o.db") as box:
        _queue_registration(world, box, "MAK-2026-0801")
        client = Client("http://fake.test", transport=httpx.MockTransport(broken))
        report = sync(box, client, ORIGIN)
        assert isinstance(report.stopped, ApiError) and report.stopped.status == 503
        assert box.counts() == {"pending": 1, "sent": 0, "failed": 0}


def test_events_for_another_log_are_left_alone(world: Any, tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        other = sign_body(world.lot_body("MAK-2026-0901"), world.coop_signing, "other.example/log")
        box.enqueue(other, "other.example/log")
        _queue_registration(world, box, "MAK-2026-0902")
        report = sync(box, _client(world), ORIGIN)
        assert report.other_logs == 1 and len(report.sent) == 1
        assert box.counts("other.example/log")["pending"] == 1


def test_outbox_survives_reopening_and_is_private(world: Any, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "o.db"
    with Outbox(path) as box:
        envelope = _queue_registration(world, box, "MAK-2026-1001")
    assert (path.stat().st_mode & 0o077) == 0
    with Outbox(path) as box:
        assert box.pending()[0].envelope == envelope
    not_db = tmp_path / "not.db"
    not_db.write_text("this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="not a goldtrail outbox"):
        Outbox(not_db)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
