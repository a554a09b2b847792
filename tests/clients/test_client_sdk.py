"""The SDK: every endpoint's request, problem+json mapping, unreachable servers, cursors."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from clients.sdk import ApiError, Client, ClientError, ResponseTooLarge, ServerUnreachable


def _client(handler: Any) -> Client:
    return Client("http://log.test/", transport=httpx.MockTransport(handler))


def _problem(status: int, **fields: Any) -> httpx.Response:
    body = {"type": "urn:x", "title": "t", "status": status, **fields}
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/problem+json"},
    )


def test_problem_json_becomes_api_error_with_index() -> None:
    client = _client(
        lambda r: _problem(409, code="stale_prev", detail="The lot moved on.", index=3)
    )
    with pytest.raises(ApiError) as info:
        client.post_batch([{"body": {}, "signature": {}}])
    error = info.value
    assert (error.status, error.code, error.detail, error.index) == (
        409,
        "stale_prev",
        "The lot moved on.",
        3,
    )
    assert error.problem["title"] == "t"
    assert isinstance(error, ClientError)
    assert str(error) == "The lot moved on. (stale_prev)"


def test_problem_without_index() -> None:
    client = _client(lambda r: _problem(401, code="bad_signature", detail="Bad."))
    with pytest.raises(ApiError) as info:
        client.post_event({"body": {}, "signature": {}})
    assert info.value.index is None and info.value.code == "bad_signature"


def test_non_problem_error_still_maps() -> None:
    client = _client(lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ApiError) as info:
        client.log()
    assert info.value.status == 502 and info.value.code == "http_502"
    assert "502" in info.value.detail


def test_connection_refused_is_server_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on that port now
    with (
        Client(f"http://127.0.0.1:{port}", timeout=5) as client,
        pytest.raises(ServerUnreachable) as info,
    ):
        client.log()
    assert info.value.code == "unreachable"
    assert isinstance(info.value, ClientError)


def test_timeout_is_server_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    with pytest.raises(ServerUnreachable, match="did not answer in time"):
        _client(handler).post_event({"body": {}, "signature": {}})


def test_requests_and_answers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/v1/log/checkpoint":
            return httpx.Response(200, text="origin\n1\nAAAA\n\n— origin sig\n")
        if path.endswith("/bundle"):
            return httpx.Response(200, content=b'{"format": "goldtrail-bundle/1"}\n')
        if path.endswith("/qr.png"):
            return httpx.Response(200, content=b"\x89PNG...")
        if path.endswith("/qr.svg"):
            return httpx.Response(200, content=b"<svg/>")
        if request.method == "POST":
            return httpx.Response(
                201, json={"event_id": "e", "seq": 1, "leaf_hash": "h", "checkpoint": "c"}
            )
        return httpx.Response(200, json={"items": [], "next": None, "path": path})

    client = _client(handler)
    assert client.post_event({"body": {"name": "Coopérative"}, "signature": {}})["seq"] == 1
    assert json.loads(seen[-1].content) == {"body": {"name": "Coopérative"}, "signature": {}}
    assert seen[-1].headers["content-type"] == "application/json"
    client.post_batch([{"a": 1}])
    assert json.loads(seen[-1].content) == {"events": [{"a": 1}]}
    assert seen[-1].url.path == "/v1/events/batch"
    assert client.checkpoint().startswith("origin\n1\n")
    assert client.bundle("MAK-1", at="ab" * 32) == b'{"format": "goldtrail-bundle/1"}\n'
    assert seen[-1].url.params["at"] == "ab" * 32
    assert client.qr_png("MAK-1").startswith(b"\x89PNG")
    assert client.qr_svg("MAK-1") == b"<svg/>"
    client.entries(5, 10)
    assert dict(seen[-1].url.params) == {"start": "5", "limit": "10"}
    client.inclusion_proof(3, 10)
    assert (seen[-1].url.path, dict(seen[-1].url.params)) == (
        "/v1/log/proof/inclusion",
        {"index": "3", "size": "10"},
    )
    client.consistency_proof(2, 10)
    assert dict(seen[-1].url.params) == {"first": "2", "second": "10"}
    client.lots(custodian="coop-a", risk="high", limit=5)
    assert dict(seen[-1].url.params) == {"custodian": "coop-a", "risk": "high", "limit": "5"}
    client.event("ab" * 32)
    assert seen[-1].url.path == "/v1/events/" + "ab" * 32
    for call, path in [
        (lambda: client.actor("coop-a"), "/v1/actors/coop-a"),
        (lambda: client.site("site-a"), "/v1/sites/site-a"),
        (lambda: client.lot("MAK-1"), "/v1/lots/MAK-1"),
        (lambda: client.lot_events("MAK-1"), "/v1/lots/MAK-1/events"),
        (client.actors, "/v1/actors"),
        (client.sites, "/v1/sites"),
        (client.log, "/v1/log"),
    ]:
        call()
        assert seen[-1].url.path == path
    client.lot("A/B")
    assert seen[-1].url.raw_path.decode().startswith("/v1/lots/A%2FB")


def test_iterators_follow_next() -> None:
    pages = {None: ([1, 2], "c2"), "c2": ([3], "c3"), "c3": ([4], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/log/entries":
            start = int(request.url.params.get("start", "0"))
            items = [{"seq": i} for i in range(start, min(start + 2, 5))]
            nxt = start + 2 if start + 2 < 5 else None
            return httpx.Response(200, json={"items": items, "next": nxt})
        cursor = request.url.params.get("cursor")
        items, nxt = pages[cursor]
        return httpx.Response(200, json={"items": [{"n": i} for i in items], "next": nxt})

    client = _client(handler)
    assert [x["n"] for x in client.iter_lots(status="active")] == [1, 2, 3, 4]
    assert [x["n"] for x in client.iter_actors()] == [1, 2, 3, 4]
    assert [x["n"] for x in client.iter_sites()] == [1, 2, 3, 4]
    assert [x["n"] for x in client.iter_lot_events("MAK-1")] == [1, 2, 3, 4]
    assert [x["seq"] for x in client.iter_entries()] == [0, 1, 2, 3, 4]


def test_answer_that_is_not_json() -> None:
    client = _client(lambda r: httpx.Response(200, text="not json"))
    with pytest.raises(ClientError) as info:
        client.lot("MAK-1")
    assert info.value.code == "bad_response"


def test_bundle_with_max_bytes_reads_no_further_and_keeps_errors() -> None:
    """``bundle(max_bytes=...)`` streams: a body over the limit is refused with
    ResponseTooLarge; one at the limit is returned whole; a problem or a dropped connection
    is the same ApiError or ServerUnreachable as without a limit."""
    body = b'{"format":"goldtrail-bundle/1"}'

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/NO-1/bundle"):
            problem = {"type": "about:blank", "title": "Not found", "status": 404}
            problem |= {"detail": "No lot NO-1.", "code": "unknown_lot"}
            return httpx.Response(
                404,
                headers={"content-type": "application/problem+json"},
                content=json.dumps(problem).encode(),
            )
        if request.url.path.endswith("/GONE-1/bundle"):
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, content=body)

    client = Client("http://fake.test", transport=httpx.MockTransport(answer))
    assert client.bundle("A-1", max_bytes=len(body)) == body
    with pytest.raises(ResponseTooLarge) as too_large:
        client.bundle("A-1", max_bytes=len(body) - 1)
    assert too_large.value.code == "too_large"
    with pytest.raises(ApiError) as missing:
        client.bundle("NO-1", max_bytes=10)
    assert (missing.value.status, missing.value.code) == (404, "unknown_lot")
    with pytest.raises(ServerUnreachable):
        client.bundle("GONE-1", max_bytes=10)
