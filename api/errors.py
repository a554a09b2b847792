"""The one place that turns errors into RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import LedgerError

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("goldtrail.api")

STATUS_BY_FAULT = {
    "malformed": 400,
    "signature": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "schema": 422,
    "rule": 422,
    "verification": 422,
    "integrity": 500,
    "internal": 500,
    "unavailable": 503,
}

TITLES = {
    400: "Malformed request",
    401: "Signature or key not accepted",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the ledger's state",
    413: "Request too large",
    422: "Unprocessable event",
    500: "Server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    index: int | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build a problem+json response with goldtrail's machine ``code`` (and ``headers``)."""
    body: dict[str, Any] = {
        "type": f"urn:goldtrail:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if index is not None:
        body["index"] = index
    body.update(extra)
    # the header lets the metrics middleware count refusals by code without parsing bodies
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_TYPE,
        headers={**(headers or {}), "x-goldtrail-code": code},
    )


def ledger_problem(error: LedgerError) -> JSONResponse:
    """The problem response for a ledger refusal."""
    status = STATUS_BY_FAULT.get(error.fault, 500)
    if status >= 500:
        log.error("integrity error: %s", error.detail)
    return problem(status, error.code, error.detail, index=error.index)


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so that no error ever leaves as HTML or a stack trace."""

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        return ledger_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return problem(404, "not_found", f"There is nothing at {request.url.path}.")
        if exc.status_code == 405:
            # RFC 9110: a 405 names the allowed methods in Allow (Starlette puts it in headers)
            return problem(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}.",
                headers=exc.headers,
            )
        return problem(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        detail = f"{where}: {first.get('msg', 'invalid value')}." if where else "Invalid request."
        return problem(422, "schema", detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal",
            "Something went wrong on the server; nothing was changed. Please try again later.",
        )
