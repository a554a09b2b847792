"""Group commit of ``POST /v1/events`` (api.groupcommit), on SQLite and PostgreSQL.

About fifty posts at once, valid ones mixed with refusals of every kind, repeats and
re-posts, go through the app's group commit (the ledger call is slowed down so that they
pile up into groups). Each answer must be the one the same post gets alone: a second app
with the same keys and the same log takes them one at a time, in order. Where the order
decides (two offers naming the same ``prev``, one body under two signatures) exactly one
wins, with the loser's sequential error. Afterwards the log verifies (every receipt's
checkpoint opens and includes its event, the audit finds nothing wrong) and the refused
events left nothing. A group whose transaction fails answers 500 to every request in it
and writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
import sqlalchemy.exc

from api.groupcommit import GroupCommit
from tests import factories

from .conftest import NOW, Api, check_problem
from .test_concurrency import _check_log_intact


def _body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def post_at_once(api: Api, bodies: list[bytes]) -> list[httpx.Response]:
    """Post every body at the same time to the app (one event loop, as uvicorn runs it)."""

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"content-type": "application/json"}
            posts = (client.post("/v1/events", content=b, headers=headers) for b in bodies)
            return list(await asyncio.gather(*posts))

    return asyncio.run(post_all())


class SlowGroups:
    """Wraps ``Runtime.append_each``: each group waits a little (so that the posts pile up
    behind it) and its size is recorded."""

    def __init__(self, api: Api, delay: float = 0.05) -> None:
        self.sizes: list[int] = []
        runtime = api.app.state.runtime
        append_each = runtime.append_each

        def slow(envelopes: list[object]) -> Any:
            self.sizes.append(len(envelopes))
            time.sleep(delay)
            return append_each(envelopes)

        runtime.append_each = slow


def test_concurrent_posts_get_their_sequential_answers(
    database_url: str, make_api: Callable[..., Api], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    api = make_api(database_url, folder=keys)
    # the same log (same seq 0, log key and header) in a second app, posted to one at a time
    reference = make_api(f"sqlite:///{tmp_path}/reference.db", folder=keys)
    w = api.world().standard()
    assert reference.batch(w.envelopes()[1:]).status_code == 201
    held = w.register_lot()
    assert reference.post(w.envelopes()[-1]).status_code == 201
    assert reference.log() == api.log()

    head = w.head(held.body["lot"])
    with w.collecting() as valid:
        for i in range(30):
            w.register_lot(site="site-a" if i % 2 else "site-b")
        won = w.offer(held.body["lot"], "trader")
    lost = w.offer(held.body["lot"], "trader2", prev=head, post=False)  # same prev
    twin = factories.alt_signature(factories.Event(valid[2]), w.key_of("coop2"))
    stranger = nacl.signing.SigningKey.generate()
    refused = [
        factories.tamper(w.register_lot(post=False), mass_mg=1).envelope,  # 401 bad_signature
        factories.resign(w.register_lot(post=False), stranger, w.origin).envelope,  # unknown_key
        w.register_lot(site="site-z", actor="coop", post=False).envelope,  # 404 unknown_site
        w.register_lot(lot="PRC-0999", post=False).envelope,  # 403 wrong_prefix
        w.register_lot(post=False, time=NOW + dt.timedelta(hours=1)).envelope,  # future_time
        {"body": valid[5]["body"]},  # 422 schema
    ]
    registrations = [v for i, v in enumerate(valid[:-1]) if i != 2]  # valid[2]: in a pair
    repeats = [valid[0], valid[0], valid[1], w.envelopes()[2]]  # in the group, and logged before
    order_free = registrations + refused + repeats
    bodies = [_body(e) for e in order_free] + [b'{"body": 1, "body": 2}']  # 400 malformed
    pairs = [(won.envelope, lost.envelope), (valid[2], twin.envelope)]
    bodies += [_body(e) for pair in pairs for e in pair]

    groups = SlowGroups(api)
    answers = post_at_once(api, bodies)
    # the same posts one at a time (the order-dependent pairs: the first of each wins)
    expected = [reference.client.post("/v1/events", content=b) for b in bodies]

    assert sum(groups.sizes) == len(bodies) - 1  # every post but the malformed one
    assert max(groups.sizes) > 5, groups.sizes  # they were grouped
    count = len(order_free) + 1
    for answer, want in zip(answers[:count], expected[:count], strict=True):
        assert answer.status_code == want.status_code, (answer.text, want.text)
        if answer.status_code >= 400:
            check_problem(answer, want.status_code, want.json()["code"])
            assert answer.json() == want.json()  # same code, title, detail; no index
        else:
            got, ref = answer.json(), want.json()
            assert (got["event_id"], got["leaf_hash"]) == (ref["event_id"], ref["leaf_hash"])
    for at in range(count, len(bodies), 2):
        pair, ref = answers[at : at + 2], expected[at : at + 2]
        assert sorted(r.status_code for r in pair) == [201, 409], [r.text for r in pair]
        loser = next(r for r in pair if r.status_code == 409)
        check_problem(loser, 409, ref[1].json()["code"])

    # repeats: one 201, the copies 200 with the same receipt; a re-post of an event logged
    # before the group gets its receipt as first issued (the reference's, byte for byte)
    copies = [a for a, e in zip(answers, order_free, strict=False) if e is valid[0]]
    assert sorted(a.status_code for a in copies) == [200, 200, 201]
    assert len({a.text for a in copies}) == 1
    assert answers[count - 2].status_code == 200
    assert answers[count - 2].json() == expected[count - 2].json()

    # the log: every accepted event once, each receipt's checkpoint includes it
    created = [(b, a.json()) for b, a in zip(bodies, answers, strict=True) if a.status_code == 201]
    assert len(created) == 29 + 1 + 1  # the lots, one of each pair
    assert api.log()["size"] == reference.log()["size"]
    _check_log_intact(api, [json.loads(b) for b, _ in created], [r for _, r in created])
    # refused events left nothing: not in the log, no lot, the same lots as posted one by one
    offers = [won.envelope, lost.envelope]
    losing_offer = next(e for e, a in zip(offers, answers[count:], strict=False) if a.is_error)
    for envelope in [*refused[:-1], losing_offer]:
        found = api.client.get(f"/v1/events/{factories.Event(envelope).id}")
        assert found.status_code == 404
    stored = api.client.get("/v1/lots", params={"limit": 1000}).json()["items"]
    one_by_one = reference.client.get("/v1/lots", params={"limit": 1000}).json()["items"]
    assert sorted(lot["lot"] for lot in stored) == sorted(lot["lot"] for lot in one_by_one)
    assert "PRC-0999" not in {lot["lot"] for lot in stored}


def test_a_failed_group_fails_every_request_in_it(
    database_url: str, make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(database_url)
    w = api.world().standard()
    before = api.log()
    with w.collecting() as envelopes:
        for _ in range(6):
            w.register_lot()
    store = api.app.state.runtime.store
    write = store._write

    def write_then_fail(*args: Any, **kwargs: Any) -> str:
        write(*args, **kwargs)
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "_write", write_then_fail)
    # the first group waits until the five others queue behind it
    group: GroupCommit = api.app.state.group_commit
    runtime = api.app.state.runtime
    append_each = runtime.append_each
    sizes: list[int] = []

    def first_waits(batch: list[object]) -> Any:
        deadline = time.monotonic() + 30
        while not sizes and len(batch) + group.waiting < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        sizes.append(len(batch))
        return append_each(batch)

    monkeypatch.setattr(runtime, "append_each", first_waits)
    answers = post_at_once(api, [_body(e) for e in envelopes])
    assert sum(sizes) == 6 and len(sizes) <= 2 and max(sizes) > 1, sizes
    for answer in answers:
        check_problem(answer, 500, "internal")
    assert api.log() == before  # nothing of either group was written

    monkeypatch.undo()
    answers = post_at_once(api, [_body(e) for e in envelopes])
    assert [a.status_code for a in answers] == [201] * 6
    assert api.log()["size"] == before["size"] + 6


def test_an_idle_server_appends_a_lone_post_at_once(sqlite_api: Api) -> None:
    """No timer waits for company: a lone post is a group of one, answered at once."""
    w = sqlite_api.world().standard()
    group: GroupCommit = sqlite_api.app.state.group_commit
    groups = group.groups
    started = time.perf_counter()
    w.register_lot()  # posted through the TestClient: 201 checked by HttpWorld
    assert time.perf_counter() - started < 2
    assert group.groups == groups + 1 and group.waiting == 0
