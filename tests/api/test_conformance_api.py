"""PROTOCOL.md section 6 as an independent HTTP client reads it, where other tests left gaps.

- "Lists take ``limit`` ... and ``cursor``, and answer ``{items, next}``": a generic client
  pages every list the same way, sending the previous ``next`` as ``cursor``; that holds for
  ``GET /v1/log/entries`` too, whose ``next`` is the next start (``start`` still works);
- "JSON over HTTP": a 405 problem names the methods the resource allows in ``Allow``, as
  HTTP requires of every 405 (RFC 9110, section 15.5.6).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api, check_problem, refusal


def _page_with_cursor(api: Api, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a list, following ``next`` as ``cursor`` (what a generic client does)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(100):
        response = api.client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        items += page["items"]
        if page["next"] is None:
            return items
        params = {"limit": limit, "cursor": page["next"]}
    raise AssertionError(f"{path}: paging with cursor never ends")


def test_log_entries_page_with_cursor_like_every_list(sqlite_api: Api) -> None:
    api = sqlite_api
    w = api.world()
    with w.batching():
        for i in range(6):
            w.register_actor(f"auditor-{i}", ["auditor"])
    size = api.log()["size"]
    assert size == 7
    entries = _page_with_cursor(api, "/v1/log/entries", 2)
    assert [e["seq"] for e in entries] == list(range(size))  # each once, oldest first
    # the same walk as with start, and the same pages as the other lists give
    actors = _page_with_cursor(api, "/v1/actors", 2)
    assert len(actors) == size
    second = api.client.get("/v1/log/entries", params={"limit": 2, "start": 2}).json()
    by_cursor = api.client.get("/v1/log/entries", params={"limit": 2, "cursor": "2"}).json()
    assert by_cursor == second
    # a cursor the server did not give out is a bad query parameter: 422 schema
    for bad in ("x", "-1", "1.5", "9" * 30, ""):
        refusal(
            api,
            lambda bad=bad: api.client.get("/v1/log/entries", params={"cursor": bad}),
            422,
            "schema",
        )
    # start and cursor naming two places: 422 schema (the same place is accepted)
    refusal(api, lambda: api.client.get("/v1/log/entries?start=1&cursor=3"), 422, "schema")
    same = api.client.get("/v1/log/entries?start=3&cursor=3&limit=2")
    assert same.status_code == 200 and [e["seq"] for e in same.json()["items"]] == [3, 4]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/log", {"GET"}),
        ("POST", "/v1/log/entries", {"GET"}),
        ("PUT", "/v1/lots/COOP-0001", {"GET"}),
        ("GET", "/v1/events", {"POST"}),
        ("GET", "/v1/events/batch", None),  # GET /v1/events/{event_id}: an unknown event
        ("DELETE", "/v1/events/batch", {"POST"}),
    ],
)
def test_405_names_the_allowed_methods(
    sqlite_api: Api, method: str, path: str, allowed: set[str] | None
) -> None:
    response = sqlite_api.client.request(method, path)
    if allowed is None:
        check_problem(response, 404, "unknown_event")
        return
    problem = check_problem(response, 405, "method_not_allowed")
    assert method in problem["detail"]
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed
