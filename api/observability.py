"""Health, readiness, Prometheus metrics and structured JSON logs with request ids."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import schemas
from api.errors import internal_error
from ledger.events import parse_protocol_time

if TYPE_CHECKING:
    from api.runtime import Runtime

request_id: ContextVar[str] = ContextVar("request_id", default="-")
#: an X-Request-ID taken as it is: UUIDs, hex and W3C trace ids, up to 64 characters
_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

#: ``json.dumps(value, ensure_ascii=False)``, without building an encoder for every line
_encode = json.JSONEncoder(ensure_ascii=False).encode
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id; messages never carry secrets."""

    #: the last whole second formatted and its text (the time has a resolution of seconds)
    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter.formatTime`` of ``TIME_FORMAT``, formatted once a second."""
        if datefmt != TIME_FORMAT:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        last = self._second
        if last[0] != second:
            last = self._second = (second, super().formatTime(record, datefmt))
        return last[1]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, TIME_FORMAT),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key in ("method", "path", "status", "duration_ms", "code"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = _error_line(record.exc_info[1])
            where = _where(record.exc_info[2])
            if where:
                entry["where"] = where
        return _encode(entry)


def _error_line(error: BaseException | None) -> str:
    """An exception as ``Type: first line of its message``, at most 300 characters: a
    database error's reason without the SQL and parameters SQLAlchemy adds on later lines
    (they may hold event bodies), nor its closing link, which says nothing."""
    if error is None:
        return "-"
    first = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:300]


def _audit_time(verdict: Any) -> float:
    """The Unix time of a recorded audit verdict (``ledger.admin.last_audit``); 0 when
    there is none or its time is unreadable."""
    at = parse_protocol_time(str(verdict.get("at"))) if isinstance(verdict, dict) else None
    return 0.0 if at is None else at.timestamp()


def _where(trace: TracebackType | None) -> str:
    """The innermost frame of a traceback as ``folder/file.py:line in function``: where an
    error happened, for a bug report, without the values or the rest of the stack."""
    if trace is None:
        return ""
    while trace.tb_next is not None:
        trace = trace.tb_next
    code = trace.tb_frame.f_code
    path = Path(code.co_filename)
    return f"{path.parent.name}/{path.name}:{trace.tb_lineno} in {code.co_name}"


def configure_logging(level: int = logging.INFO) -> None:
    """Send goldtrail's and uvicorn's logs to stderr as JSON lines, and every library's
    warnings and errors (SQLAlchemy's pool, asyncio, Python's warnings) too."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("goldtrail", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our access line replaces it
    # the rest reaches the root logger: without a handler there, Python would print its
    # warnings and errors as bare text (logging's last resort), one line of JSON among many
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


class Metrics:
    """The Prometheus metrics of one app (own registry: tests may build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.appended = Counter(
            "goldtrail_events_appended", "Events appended to the log", registry=self.registry
        )
        self.refused = Counter(
            "goldtrail_events_refused",
            "Requests refused, by machine code",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "goldtrail_request_seconds",
            "Request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.log_size = Gauge(
            "goldtrail_log_size",
            "Entries in the log (the last value read, when the database does not answer)",
            registry=self.registry,
        )
        self.ready = Gauge(
            "goldtrail_ready",
            "1 when this /readyz check passes, else 0 (database, log_key, integrity, audit)",
            ["check"],
            registry=self.registry,
        )
        self.last_audit = Gauge(
            "goldtrail_last_audit_timestamp_seconds",
            "When the last recorded goldtrail admin audit ran (Unix time; 0: never)",
            registry=self.registry,
        )
        self.group_size = Histogram(
            "goldtrail_append_group_size",
            "Single appends (POST /v1/events) written together in one transaction",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self._latency_of: dict[tuple[str, str], Histogram] = {}

    def request_latency(self, method: str, route: str) -> Histogram:
        """``latency.labels(method, route)``, looked up once per pair (the same child)."""
        child = self._latency_of.get((method, route))
        if child is None:
            child = self._latency_of[method, route] = self.latency.labels(method, route)
        return child


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


class RequestContext:
    """Pure ASGI middleware: the request id (``X-Request-ID``, echoed or made up) in every
    log line of the request, the latency histogram, refusals counted by machine code, and
    one JSON access line per request.

    A plain ASGI wrapper rather than Starlette's ``BaseHTTPMiddleware``, which runs the
    rest of the app in a task of its own behind memory streams: that costs more CPU per
    request than everything else this middleware does.
    """

    def __init__(self, app: ASGIApp, metrics_of: Callable[[], Metrics]) -> None:
        self.app = app
        self.metrics_of = metrics_of
        self.access = logging.getLogger("goldtrail.access")
        self.errors = logging.getLogger("goldtrail.api")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                # echoed into every log line of the request: an identifier only (a name
                # or free text would put what it says in the logs); else one is made up
                if _REQUEST_ID.fullmatch(value):
                    rid = value.decode("ascii")
                break
        # made up: what uuid.uuid4().hex[:16] gives (its 13th digit is the version, 4),
        # from 8 random bytes instead of 16 and without building a UUID
        if not rid:
            digits = os.urandom(8).hex()
            rid = digits[:12] + "4" + digits[13:]
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 0
        code = ""
        elapsed = 0.0

        async def send_with_id(message: Message) -> None:
            nonlocal status, code, elapsed
            if message["type"] == "http.response.start":
                elapsed = time.perf_counter() - started
                status = message["status"]
                headers = list(message.get("headers", ()))
                for name, value in headers:
                    if name == b"x-goldtrail-code":
                        code = value.decode("latin-1")
                headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # an error nobody foresaw: logged here, under the request's id, and answered
            # here (a problem with the id echoed), so that it is timed, counted and has its
            # access line like every other request; Starlette's outermost handler would log
            # and answer it after the id is gone
            self.errors.exception(
                "unexpected error on %s %s",
                scope["method"],
                getattr(scope.get("route"), "path", "unmatched"),
            )
            if status != 0:  # the answer had begun: the server can only close the connection
                raise
            await internal_error()(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
        method = scope["method"]
        path = getattr(scope.get("route"), "path", "unmatched")
        metrics = self.metrics_of()
        metrics.request_latency(method, path).observe(elapsed)
        if code:
            metrics.refused.labels(code).inc()
        access = self.access
        if access.isEnabledFor(logging.INFO):
            # what access.info("%s %s %s", ...) does, without looking for the caller's file
            # and line in the stack (no formatter here prints them)
            extra = {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            if code:
                extra["code"] = code
            record = access.makeRecord(
                access.name,
                logging.INFO,
                "(unknown file)",
                0,
                "%s %s %s",
                (method, path, status),
                None,
                extra=extra,
            )
            token = request_id.set(rid)
            try:
                access.handle(record)
            finally:
                request_id.reset(token)


def install_observability(app: FastAPI) -> None:
    """Add /healthz, /readyz, /metrics and the request-id and access-log middleware."""
    app.add_middleware(RequestContext, metrics_of=lambda: _runtime(app).metrics)

    @app.get("/healthz", name="healthz", response_model=schemas.Health, tags=["operations"])
    def healthz() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok", "checks": {}}

    @app.get(
        "/readyz",
        name="readyz",
        response_model=schemas.Health,
        tags=["operations"],
        responses={503: {"model": schemas.Health}},
    )
    def readyz() -> JSONResponse:
        """The database answers, the log key is loaded, the head of the log checks out and
        the last recorded audit did not find the log damaged (see ``Runtime.readiness``)."""
        checks = _runtime(app).readiness()
        flags = [v for v in checks.values() if isinstance(v, bool)]
        ok = bool(flags) and all(flags) and "error" not in checks
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get(
        "/metrics",
        name="metrics",
        response_class=Response,
        tags=["operations"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus"}},
    )
    def metrics_endpoint() -> Response:
        """Prometheus metrics: appends, refusals by code, latency, log size, and each
        readiness check as a gauge. Answers even when the database does not."""
        runtime = _runtime(app)
        checks = runtime.readiness()
        for check, passed in checks.items():
            if isinstance(passed, bool):
                runtime.metrics.ready.labels(check).set(1 if passed else 0)
        if "last_audit" in checks:  # read (else the database did not answer: keep it)
            runtime.metrics.last_audit.set(_audit_time(checks["last_audit"]))
        try:
            runtime.metrics.log_size.set(runtime.store.size())
        except Exception as e:  # the gauges say what is wrong; keep the last size
            logging.getLogger("goldtrail.api").warning(
                "/metrics could not read the log's size: %s", _error_line(e)
            )
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
