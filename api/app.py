"""The FastAPI application: thin routes over ``ledger`` (PROTOCOL.md sections 6 and 7)."""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from api import schemas
from api.body import BATCH_LIMIT, EVENT_LIMIT, read_batch, read_event
from api.compression import maybe_gzipped
from api.errors import PROBLEM_TYPE, install_error_handlers
from api.groupcommit import GroupCommit
from api.observability import install_observability
from api.pages import bundle_filename
from api.qr import label_png, label_url, qr_png, qr_svg
from api.reports import router as reports_router
from api.runtime import Runtime
from api.settings import Settings
from ledger.errors import NotFoundError, SchemaError
from ledger.protocol import canonical

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422)
#: what an append may also answer: 503 ``database_moved`` (api.runtime)
APPEND_STATUSES = (*ERROR_STATUSES, 503)
LIMIT_DEFAULT, LIMIT_MAX = 100, 1000
#: the largest seq a database integer holds (larger query values would make it fail: 422)
SEQ_MAX = 2**63 - 1
# Identifiers (PROTOCOL.md section 1): a path naming anything else cannot name an existing
# object, so it is 404 without asking the database (which may refuse e.g. a NUL byte).
ACTOR_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")
LOT_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{3,47}")
EVENT_ID = re.compile(r"[0-9a-f]{64}")
#: a ``next`` of ``GET /v1/log/entries`` sent back as ``cursor``: a seq in decimal
SEQ_CURSOR = re.compile(r"0|[1-9][0-9]{0,18}")
ACTOR_ID_PATTERN = "^[a-z0-9][a-z0-9-]{2,63}$"


def _operation_id(route: APIRoute) -> str:
    return route.name


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": schemas.Problem,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "A problem (RFC 9457) with a machine `code`.",
        }
        for status in statuses
    }


async def _runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in a worker thread, on every request
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
Limit = Annotated[int, Query(ge=1, description="page size (default 100, capped at 1000)")]
Cursor = Annotated[str | None, Query(max_length=200, description="from the previous `next`")]


def _limit(limit: int | None) -> int:
    return min(limit or LIMIT_DEFAULT, LIMIT_MAX)


def _event_body_doc(model: type[schemas.BaseModel], limit: int) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": f"At most {limit} bytes; parsed as strict I-JSON.",
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


#: the headers of a response gzipped for a client that accepts it (api.compression)
_GZIP_HEADERS: dict[str, Any] = {
    "Vary": {"description": "Accept-Encoding", "schema": {"type": "string"}},
    "Content-Encoding": {
        "description": "gzip, when the request's Accept-Encoding accepts it and the body is "
        "1 KiB or more; else absent",
        "schema": {"type": "string"},
    },
}

router = APIRouter(prefix="/v1")


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint is ``async def endpoint(request: Request) -> Response``.

    FastAPI's own handler has nothing to do for such an endpoint (no parameters, body or
    dependencies to solve, and a ``Response`` is sent as it is, never validated against
    ``response_model``, which is there for the OpenAPI document), yet it costs more CPU per
    request than the endpoint of ``POST /v1/events`` itself: the endpoint is called
    directly instead. Starlette's request wrapper, the exception handlers and every
    middleware run as for any route. Refuses, at start-up, an endpoint that takes anything
    else.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        takes_more = (
            d.path_params
            or d.query_params
            or d.header_params
            or d.cookie_params
            or d.body_params
            or d.dependencies
            or d.request_param_name is None
            or len(inspect.signature(endpoint).parameters) != 1
        )
        if takes_more or not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{self.name}: a RequestOnlyRoute endpoint takes the Request alone")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


async def append_event(request: Request) -> JSONResponse:
    """Append one envelope; 201 with its receipt, 200 with the original one if already logged."""
    envelope = await read_event(request)
    # concurrent single appends share one transaction and one checkpoint (api.groupcommit),
    # each with its own outcome; the writer runs in a worker thread, never on the event loop
    group: GroupCommit = request.app.state.group_commit
    result = await group.append(envelope)
    return JSONResponse(result.receipts[0], status_code=201 if result.created else 200)


router.add_api_route(
    "/events",
    append_event,
    methods=["POST"],
    name="append_event",
    status_code=201,
    response_model=schemas.Receipt,
    responses={
        200: {
            "model": schemas.Receipt,
            "description": "Already logged: the receipt as first issued.",
        },
        **_problem_responses(*APPEND_STATUSES),
    },
    openapi_extra=_event_body_doc(schemas.Envelope, EVENT_LIMIT),
    summary="Append one signed event",
    route_class_override=RequestOnlyRoute,
)


@router.post(
    "/events/batch",
    name="append_batch",
    status_code=201,
    response_model=schemas.BatchReceipts,
    responses={
        200: {"model": schemas.BatchReceipts, "description": "Every event was already logged."},
        **_problem_responses(*APPEND_STATUSES),
    },
    openapi_extra=_event_body_doc(schemas.Batch, BATCH_LIMIT),
    summary="Append up to 1000 events, all or nothing",
)
async def append_batch(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Append envelopes in order in one transaction; errors name the failing ``index``."""
    envelopes = await read_batch(request)
    result = await run_in_threadpool(runtime.append, envelopes, batch=True)
    return JSONResponse(
        {"receipts": result.receipts, "checkpoint": result.checkpoint},
        status_code=201 if result.created else 200,
    )


@router.get(
    "/events/{event_id}",
    name="get_event",
    response_model=schemas.EventEntry,
    responses=_problem_responses(404, 422),
)
def get_event(event_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """One logged event with its place in the log."""
    entry = runtime.ledger.entry_by_id(event_id) if EVENT_ID.fullmatch(event_id) else None
    if entry is None:
        raise NotFoundError("unknown_event", f"There is no event {event_id[:16]} in this log.")
    return entry


@router.get("/log", name="get_log", response_model=schemas.LogInfo)
def get_log(runtime: RuntimeDep) -> dict[str, Any]:
    """The log's origin, verifier key, registrar key, size and root."""
    # public_url is an addition to section 6: clients print QR codes with the same URL
    return {**runtime.ledger.log_info(), "public_url": runtime.settings.public_url}


@router.get(
    "/log/checkpoint",
    name="get_checkpoint",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The latest signed checkpoint (C2SP signed note).",
        }
    },
)
def get_checkpoint(runtime: RuntimeDep) -> Response:
    """The latest signed checkpoint as a C2SP signed note."""
    return Response(runtime.ledger.latest_checkpoint(), media_type="text/plain; charset=utf-8")


@router.get(
    "/log/entries",
    name="list_entries",
    response_model=schemas.EntryPage,
    responses=_problem_responses(422),
)
def list_entries(
    request: Request,
    runtime: RuntimeDep,
    start: Annotated[int, Query(ge=0, le=SEQ_MAX)] = 0,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="from the previous `next` (the same as `start`)"),
    ] = None,
) -> dict[str, Any]:
    """Log entries from ``start``, oldest first.

    Like every list (PROTOCOL.md section 6) it also takes the previous ``next`` as
    ``cursor``: here ``next`` is the next start, so ``cursor`` is another name for ``start``.
    """
    if cursor is not None:
        at = int(cursor) if SEQ_CURSOR.fullmatch(cursor) else -1
        if not 0 <= at <= SEQ_MAX:
            raise SchemaError("cursor: this is not a cursor this server gave out.")
        if "start" in request.query_params and start != at:
            raise SchemaError("start and cursor name two places in the log: send one of them.")
        start = at
    items, next_start = runtime.ledger.entries(start, _limit(limit))
    return {"items": items, "next": next_start}


@router.get(
    "/log/proof/inclusion",
    name="inclusion_proof",
    response_model=schemas.InclusionProof,
    responses=_problem_responses(422),
)
def inclusion_proof(
    runtime: RuntimeDep,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    """The audit path of entry ``index`` in the tree of ``size`` entries."""
    proof = runtime.ledger.inclusion_proof(index, size)
    return {"index": index, "size": size, "proof": [h.hex() for h in proof]}


@router.get(
    "/log/proof/consistency",
    name="consistency_proof",
    response_model=schemas.ConsistencyProof,
    responses=_problem_responses(422),
)
def consistency_proof(
    runtime: RuntimeDep,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    """The consistency proof between trees of ``first`` and ``second`` entries."""
    proof = runtime.ledger.consistency_proof(first, second)
    return {"first": first, "second": second, "proof": [h.hex() for h in proof]}


@router.get(
    "/actors",
    name="list_actors",
    response_model=schemas.ActorPage,
    responses=_problem_responses(422),
)
def list_actors(
    runtime: RuntimeDep, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> dict[str, Any]:
    """Actors, oldest first."""
    items, nxt = runtime.ledger.actors(cursor=cursor, limit=_limit(limit))
    return {"items": items, "next": nxt}


@router.get(
    "/actors/{actor_id}",
    name="get_actor",
    response_model=schemas.Actor,
    responses=_problem_responses(404),
)
def get_actor(actor_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """One actor with its roles, keys and their history, licence, profile and status."""
    actor = runtime.ledger.actor(actor_id) if ACTOR_ID.fullmatch(actor_id) else None
    if actor is None:
        raise NotFoundError("unknown_actor", f"There is no actor '{actor_id}' in this log.")
    return actor


@router.get(
    "/sites", name="list_sites", response_model=schemas.SitePage, responses=_problem_responses(422)
)
def list_sites(
    runtime: RuntimeDep, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> dict[str, Any]:
    """Sites with their current status, oldest first."""
    items, nxt = runtime.ledger.sites(cursor=cursor, limit=_limit(limit), today=runtime.today())
    return {"items": items, "next": nxt}


@router.get(
    "/sites/{site_id}",
    name="get_site",
    response_model=schemas.Site,
    responses=_problem_responses(404),
)
def get_site(site_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """One site with its current ICGLR colour and latest indicators."""
    site = (
        runtime.ledger.site(site_id, today=runtime.today())
        if ACTOR_ID.fullmatch(site_id)  # site ids follow the actor id pattern
        else None
    )
    if site is None:
        raise NotFoundError("unknown_site", f"There is no site '{site_id}' in this log.")
    return site


@router.get(
    "/lots", name="list_lots", response_model=schemas.LotPage, responses=_problem_responses(422)
)
def list_lots(
    runtime: RuntimeDep,
    custodian: Annotated[str | None, Query(pattern=ACTOR_ID_PATTERN)] = None,
    site: Annotated[str | None, Query(pattern=ACTOR_ID_PATTERN)] = None,
    status: Annotated[str | None, Query(pattern="^(active|offered|consumed)$")] = None,
    risk: Annotated[str | None, Query(pattern="^(low|medium|high|hold)$")] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> JSONResponse:
    """Lot states, oldest first, filtered by custodian, origin site, status or risk."""
    items, nxt = runtime.ledger.lots(
        custodian=custodian,
        site=site,
        status=status,
        risk=risk,
        cursor=cursor,
        limit=_limit(limit),
    )
    # returned as built: a flag's optional `outcome` stays absent, never null
    return JSONResponse({"items": items, "next": nxt})


def _need_lot(runtime: Runtime, lot_id: str) -> dict[str, Any]:
    lot = runtime.ledger.lot(lot_id) if LOT_ID.fullmatch(lot_id) else None
    if lot is None:
        raise NotFoundError("unknown_lot", f"There is no lot '{lot_id}' in this log.")
    return lot


@router.get(
    "/lots/{lot_id}", name="get_lot", response_model=schemas.Lot, responses=_problem_responses(404)
)
def get_lot(lot_id: str, runtime: RuntimeDep) -> JSONResponse:
    """A lot's state: custody, mass, fineness, flags, risk, origins and gender summary."""
    return JSONResponse(_need_lot(runtime, lot_id))


@router.get(
    "/lots/{lot_id}/events",
    name="list_lot_events",
    response_model=schemas.LotEventPage,
    responses=_problem_responses(404, 422),
)
def list_lot_events(
    lot_id: str, runtime: RuntimeDep, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> dict[str, Any]:
    """The lot's own chain, oldest first."""
    _need_lot(runtime, lot_id)
    items, nxt = runtime.ledger.lot_events(lot_id, cursor=cursor, limit=_limit(limit))
    return {"items": items, "next": nxt}


@router.get(
    "/lots/{lot_id}/bundle",
    name="get_bundle",
    responses={
        200: {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Bundle"}}},
            "description": "The provenance bundle (section 7).",
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="{lot}.bundle.json"',
                    "schema": {"type": "string"},
                },
                **_GZIP_HEADERS,
            },
        },
        **_problem_responses(404, 422),
    },
    response_class=Response,
)
def get_bundle(
    lot_id: str,
    request: Request,
    runtime: RuntimeDep,
    at: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
) -> Response:
    """Everything needed to verify the lot offline, for its current head."""
    bundle = runtime.bundle(lot_id, at)
    return maybe_gzipped(
        canonical(bundle),
        request.headers.get("accept-encoding"),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{bundle_filename(lot_id)}"'},
    )


def _qr_response(runtime: Runtime, lot_id: str, kind: str) -> Response:
    lot = _need_lot(runtime, lot_id)
    url = label_url(runtime.settings.public_url, lot_id, lot["head"])
    if kind == "svg":
        return Response(qr_svg(url), media_type="image/svg+xml")
    if kind == "label":
        return Response(label_png(url, lot_id, lot["mass_mg"]), media_type="image/png")
    return Response(qr_png(url), media_type="image/png")


_IMAGE = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


@router.get(
    "/lots/{lot_id}/qr.png",
    name="get_qr_png",
    response_class=Response,
    responses={**_IMAGE, **_problem_responses(404)},
)
def get_qr_png(lot_id: str, runtime: RuntimeDep) -> Response:
    """The lot's QR code (error correction M) holding its verification URL."""
    return _qr_response(runtime, lot_id, "png")


@router.get(
    "/lots/{lot_id}/qr.svg",
    name="get_qr_svg",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "SVG image"},
        **_problem_responses(404),
    },
)
def get_qr_svg(lot_id: str, runtime: RuntimeDep) -> Response:
    """The lot's QR code as SVG."""
    return _qr_response(runtime, lot_id, "svg")


@router.get(
    "/lots/{lot_id}/label.png",
    name="get_label_png",
    response_class=Response,
    responses={**_IMAGE, **_problem_responses(404)},
)
def get_label_png(lot_id: str, runtime: RuntimeDep) -> Response:
    """A printable label: the QR code with the lot id and its mass in figures and words."""
    return _qr_response(runtime, lot_id, "label")


pages = APIRouter()


@pages.get(
    "/l/{lot_id}",
    name="lot_page",
    response_class=HTMLResponse,
    responses={200: {"headers": _GZIP_HEADERS}, 404: {"content": {"text/html": {}}}},
)
def lot_page(
    lot_id: str,
    request: Request,
    runtime: RuntimeDep,
    at: Annotated[str | None, Query(description="The label's event id (64 hex).")] = None,
    lang: Annotated[str | None, Query(description="`en` or `fr`; else Accept-Language.")] = None,
) -> Response:
    """The human verification page a lot's QR code opens.

    A person reads it: whatever ``at`` or ``lang`` holds, the answer is a page in HTML (an
    ``at`` that is no event of the lot's chain is a 404 page, an unknown ``lang`` is
    ignored), never a JSON problem document.
    """
    html, status = runtime.lot_page(lot_id, at, request.headers.get("accept-language"), lang)
    return maybe_gzipped(
        html.encode(),
        request.headers.get("accept-encoding"),
        media_type="text/html; charset=utf-8",
        status_code=status,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn has let the requests in flight finish: the writer only has to end its group
    group: GroupCommit | None = getattr(app.state, "group_commit", None)
    if group is not None:
        await group.close()


def build_app() -> FastAPI:
    """The application without a ledger: routes, handlers and the OpenAPI document."""
    app = FastAPI(
        lifespan=_lifespan,
        title="goldtrail",
        version="1.0.0",
        summary="A verifiable traceability ledger for responsible artisanal gold.",
        description="Wire contract: goldtrail protocol v1 (PROTOCOL.md). Every error is "
        "RFC 9457 application/problem+json with a machine `code`.",
        generate_unique_id_function=_operation_id,
    )
    install_error_handlers(app)
    install_observability(app)
    app.include_router(router)
    app.include_router(pages)
    app.include_router(reports_router)
    _finish_openapi(app)
    return app


def _finish_openapi(app: FastAPI) -> None:
    """Make the OpenAPI document say what the app does.

    - Errors: FastAPI documents a ``Problem`` response model under ``application/json``
      too, and adds its own ``HTTPValidationError`` as the 422 of every operation with
      parameters; but every error leaves as ``application/problem+json`` with a
      ``Problem`` body (``api.errors``).
    - Request bodies: the event routes read their bodies themselves (sizes before parsing),
      so FastAPI never sees their models: add the schemas their ``$ref`` names.
    - Examples keep their nulls (FastAPI removes every null from the document).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        fastapi_refs = (
            "#/components/schemas/Problem",
            "#/components/schemas/HTTPValidationError",
        )
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if operation.get("parameters"):
                    # a parameter FastAPI refuses is a 422 problem, even on an HTML page
                    bad = operation.setdefault("responses", {}).setdefault(
                        "422", {"description": "A problem (RFC 9457): code `schema`."}
                    )
                    bad.setdefault("content", {}).setdefault(PROBLEM_TYPE, problem)
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    ref = content.get("application/json", {}).get("schema", {}).get("$ref")
                    if ref in fastapi_refs:
                        del content["application/json"]
                        content[PROBLEM_TYPE] = problem
                        if ref.endswith("HTTPValidationError"):
                            response["description"] = "A problem (RFC 9457): code `schema`."
        schemas_ = document.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas_.pop(unused, None)
        # FastAPI drops nulls from the whole document, examples included: put them back
        for name, model in vars(schemas).items():
            extra = getattr(model, "model_config", {}).get("json_schema_extra")
            if name in schemas_ and isinstance(extra, dict) and "example" in extra:
                schemas_[name]["example"] = extra["example"]
        for model in (schemas.Envelope, schemas.Batch, schemas.Bundle):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas_.setdefault(name, definition)
            schemas_.setdefault(model.__name__, schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> FastAPI:
    """Build the application over a ledger; opens (and if needed initialises) it.

    Raises IntegrityError when the database holds another log than configured.
    """
    settings = settings or Settings()
    app = build_app()
    app.state.runtime = runtime or Runtime.open(settings, clock=clock)
    # looked up at each group, so that a test may wrap the runtime's method
    app.state.group_commit = GroupCommit(lambda envelopes: app.state.runtime.append_each(envelopes))
    return app
