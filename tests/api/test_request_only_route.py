"""``RequestOnlyRoute``: the endpoint is called with the Request alone, and nothing else is
accepted at start-up (FastAPI's handler is skipped, so nothing it would solve may be asked)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from api.app import RequestOnlyRoute


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path}, status_code=201)


def test_the_endpoint_gets_the_request_and_its_response_is_sent_as_is() -> None:
    app = FastAPI()
    app.router.add_api_route("/x", _echo, methods=["POST"], route_class_override=RequestOnlyRoute)
    r = TestClient(app).post("/x")
    assert (r.status_code, r.json()) == (201, {"path": "/x"})


async def _query(request: Request, limit: Annotated[int, Query()] = 1) -> JSONResponse:
    return JSONResponse({})


async def _dependency(request: Request, other: Annotated[int, Depends(lambda: 1)]) -> JSONResponse:
    return JSONResponse({})


def _sync(request: Request) -> JSONResponse:
    return JSONResponse({})


async def _nothing() -> JSONResponse:
    return JSONResponse({})


@pytest.mark.parametrize("endpoint", [_query, _dependency, _sync, _nothing])
def test_an_endpoint_that_takes_more_than_the_request_is_refused(endpoint: object) -> None:
    app = FastAPI()
    with pytest.raises(TypeError, match="takes the Request alone"):
        app.router.add_api_route(
            "/x",
            endpoint,  # type: ignore[arg-type]
            methods=["POST"],
            route_class_override=RequestOnlyRoute,
        )
