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
#: the title of a 422 answering a read (GET): a query parameter, not an event, is refused
READ_422_TITLE = "Invalid request parameter"


#: what each query parameter of the API must be, in plain words (PROTOCOL.md section 6:
#: a ``detail`` is a plain sentence; FastAPI's own words name types and regular expressions)
PARAMETER_WORDS = {
    "limit": "a whole number of at least 1 (more than 1000 counts as 1000)",
    "start": "a position in the log (a whole number, 0 or more)",
    "index": "a position in the log (a whole number, 0 or more)",
    "size": "a size of the log (a whole number, 1 or more)",
    "first": "a size of the log (a whole number, 1 or more)",
    "second": "a size of the log (a whole number, 1 or more)",
    "cursor": "the `next` of the previous page",
    "custodian": "an actor id (3 to 64 lower-case letters, digits or hyphens)",
    "site": "a site id (3 to 64 lower-case letters, digits or hyphens)",
    "status": "one of active, offered, consumed",
    "risk": "one of low, medium, high, hold",
    "at": "an event id (64 lower-case hexadecimal characters)",
    "lang": "a language code such as en or fr",
}


def validation_detail(error: Mapping[str, Any]) -> str:
    """A plain sentence for the first error FastAPI found in a request's parameters."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
    words = PARAMETER_WORDS.get(where)
    if words is None:
        return f"{where}: {error.get('msg', 'invalid value')}." if where else "Invalid request."
    kind = error.get("type")
    if kind == "missing":
        return f"{where} is missing: it must be {words}."
    value = str(error.get("input", ""))[:70]
    if kind == "less_than_equal":
        return f"{where}: {value} is too large; it must be {words}, at most {error['ctx']['le']}."
    return f"{where}: {value!r} is not {words}."


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    index: int | None = None,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build a problem+json response with goldtrail's machine ``code`` (and ``headers``);
    ``title`` replaces the status's own."""
    body: dict[str, Any] = {
        "type": f"urn:goldtrail:problem:{code}",
        "title": title or TITLES.get(status, "Error"),
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


def ledger_problem(error: LedgerError, *, read: bool = False) -> JSONResponse:
    """The problem response for a ledger refusal (``read``: of a GET request's parameters)."""
    status = STATUS_BY_FAULT.get(error.fault, 500)
    if status >= 500:
        log.error("integrity error: %s", error.detail)
    title = READ_422_TITLE if read and status == 422 else None
    return problem(status, error.code, error.detail, index=error.index, title=title)


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so that no error ever leaves as HTML or a stack trace."""

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        return ledger_problem(exc, read=request.method == "GET")

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
        where = first.get("loc", ("body",))[0]
        title = READ_422_TITLE if where in ("query", "path") else None
        return problem(422, "schema", validation_detail(first), title=title)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # a last resort: api.observability.RequestContext logs and answers these first,
        # under the request's id
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return internal_error()


def internal_error() -> JSONResponse:
    """The answer to an error nobody foresaw (500 ``internal``)."""
    return problem(
        500,
        "internal",
        "Something went wrong on the server; nothing was changed. Please try again later.",
    )
