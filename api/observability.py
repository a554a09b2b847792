"""Health, readiness, Prometheus metrics and structured JSON logs with request ids."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from api import schemas

if TYPE_CHECKING:
    from api.runtime import Runtime

request_id: ContextVar[str] = ContextVar("request_id", default="-")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id; messages never carry secrets."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key in ("method", "path", "status", "duration_ms", "code"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    """Send goldtrail's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("goldtrail", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our access line replaces it


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
        self.log_size = Gauge("goldtrail_log_size", "Entries in the log", registry=self.registry)
        self.group_size = Histogram(
            "goldtrail_append_group_size",
            "Single appends (POST /v1/events) written together in one transaction",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


def install_observability(app: FastAPI) -> None:
    """Add /healthz, /readyz, /metrics and the request-id and access-log middleware."""
    access = logging.getLogger("goldtrail.access")

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            request_id.reset(token)
        elapsed = time.perf_counter() - started
        metrics = _runtime(app).metrics
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.latency.labels(request.method, path).observe(elapsed)
        code = response.headers.get("x-goldtrail-code")
        if code:
            metrics.refused.labels(code).inc()
        response.headers["x-request-id"] = rid
        token = request_id.set(rid)
        access.info(
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                **({"code": code} if code else {}),
            },
        )
        request_id.reset(token)
        return response

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
        """Prometheus metrics: appends, refusals by code, latency, log size."""
        runtime = _runtime(app)
        runtime.metrics.log_size.set(runtime.store.size())
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
