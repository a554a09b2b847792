"""The committed OpenAPI document: up to date, stable operation ids, errors as problems.

``openapi/openapi.json`` is what clients generate code from; it must be exactly what the
app serves (``make openapi`` regenerates it).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from api import schemas
from api.errors import PROBLEM_TYPE
from api.openapi import OPENAPI_PATH, openapi_document, render
from tests import factories

from .conftest import Api

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
#: the operations of PROTOCOL.md section 6 and their ids: clients depend on these names
STABLE_IDS = {
    ("post", "/v1/events"): "append_event",
    ("post", "/v1/events/batch"): "append_batch",
    ("get", "/v1/events/{event_id}"): "get_event",
    ("get", "/v1/log"): "get_log",
    ("get", "/v1/log/checkpoint"): "get_checkpoint",
    ("get", "/v1/log/entries"): "list_entries",
    ("get", "/v1/log/proof/inclusion"): "inclusion_proof",
    ("get", "/v1/log/proof/consistency"): "consistency_proof",
    ("get", "/v1/actors"): "list_actors",
    ("get", "/v1/actors/{actor_id}"): "get_actor",
    ("get", "/v1/sites"): "list_sites",
    ("get", "/v1/sites/{site_id}"): "get_site",
    ("get", "/v1/lots"): "list_lots",
    ("get", "/v1/lots/{lot_id}"): "get_lot",
    ("get", "/v1/lots/{lot_id}/events"): "list_lot_events",
    ("get", "/v1/lots/{lot_id}/bundle"): "get_bundle",
    ("get", "/v1/lots/{lot_id}/qr.png"): "get_qr_png",
    ("get", "/v1/lots/{lot_id}/qr.svg"): "get_qr_svg",
    ("get", "/l/{lot_id}"): "lot_page",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}
#: the main schemas: each has an example, which its model accepts
MAIN_SCHEMAS = {
    "Envelope": schemas.Envelope,
    "Batch": schemas.Batch,
    "Receipt": schemas.Receipt,
    "BatchReceipts": schemas.BatchReceipts,
    "Problem": schemas.Problem,
    "LogInfo": schemas.LogInfo,
    "Lot": schemas.Lot,
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _is_html_page(operation: dict[str, Any]) -> bool:
    return "text/html" in operation["responses"].get("200", {}).get("content", {})


def test_committed_document_is_up_to_date() -> None:
    committed = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
    assert committed == render(), (
        "openapi/openapi.json is out of date with the app: run `make openapi` "
        "(.venv/bin/python -m api.openapi) and commit the result"
    )


def test_the_app_serves_the_same_document(sqlite_api: Api) -> None:
    response = sqlite_api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(render())


def test_operation_ids_are_stable_snake_case_and_unique(document: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in _operations(document)]
    assert all(isinstance(i, str) and re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    found = {
        (method, path): operation["operationId"]
        for method, path, operation in _operations(document)
    }
    for key, operation_id in STABLE_IDS.items():
        assert found.get(key) == operation_id, key


def test_every_error_is_a_documented_problem(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        for status, response in responses.items():
            if not status.startswith("4"):
                continue
            content = response.get("content", {})
            if _is_html_page(operation) and status == "404":
                assert list(content) == ["text/html"], where  # the page's own 404 page
                continue
            assert content.get(PROBLEM_TYPE, {}).get("schema") == PROBLEM_REF, (where, status)
            assert "application/json" not in content, (where, status)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in responses, where  # FastAPI's refusals of parameters
        if "{" in path:
            assert "404" in responses, where
    events = document["paths"]["/v1/events"]["post"]["responses"]
    assert {"200", "201", "400", "401", "403", "404", "409", "413", "422"} <= set(events)


def test_problem_schema(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert "index" in problem["properties"]


def test_request_bodies_and_references_resolve(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    names = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert names - set(document["components"]["schemas"]) == set(), "dangling $ref"
    for path, model in (("/v1/events", "Envelope"), ("/v1/events/batch", "Batch")):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


@pytest.mark.parametrize("name", sorted(MAIN_SCHEMAS))
def test_main_schemas_have_valid_examples(document: dict[str, Any], name: str) -> None:
    schema = document["components"]["schemas"][name]
    example = schema.get("example") or (schema.get("examples") or [None])[0]
    assert example, f"the schema {name} has no example"
    MAIN_SCHEMAS[name].model_validate(example)


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def test_log_entries_next_is_documented_as_the_next_start(
    document: dict[str, Any], sqlite_api: Api
) -> None:
    """Section 6: ``GET /v1/log/entries`` answers ``next: <next start or null>``, a number
    (the other lists' ``next`` is an opaque cursor string): the document said "string,
    integer or null", which a generated client types as a union it must test."""
    page = document["components"]["schemas"]["EntryPage"]["properties"]["next"]
    assert page["anyOf"] == [{"type": "integer", "minimum": 0}, {"type": "null"}], page
    for name in ("ActorPage", "SitePage", "LotPage", "LotEventPage"):
        other = document["components"]["schemas"][name]["properties"]["next"]
        assert other["anyOf"] == [{"type": "string"}, {"type": "null"}], (name, other)
    first = sqlite_api.client.get("/v1/log/entries", params={"limit": 1}).json()
    assert first["next"] is None  # seq 0 alone
    sqlite_api.world().register_actor("auditor-x", ["auditor"])
    first = sqlite_api.client.get("/v1/log/entries", params={"limit": 1}).json()
    assert first["next"] == 1
    assert not list(_validator(document, page).iter_errors(first["next"]))


def test_the_bundle_is_documented_with_the_fields_of_section_7(
    document: dict[str, Any], sqlite_api: Api
) -> None:
    """``GET /v1/lots/{lot}/bundle`` answers the bundle of section 7: its response schema
    names those fields (it was any object), and a real bundle validates against it."""
    response = document["paths"]["/v1/lots/{lot_id}/bundle"]["get"]["responses"]["200"]
    schema = response["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Bundle"}
    bundle_schema = document["components"]["schemas"]["Bundle"]
    assert set(bundle_schema["required"]) == {
        "format",
        "lot",
        "head",
        "label_at",
        "log",
        "checkpoint",
        "entries",
    }
    w = sqlite_api.world().standard()
    lot = w.register_lot().body["lot"]
    w.offer(lot, "trader")
    for query in ("", f"?at={w.head(lot)}"):
        bundle = sqlite_api.client.get(f"/v1/lots/{lot}/bundle{query}").json()
        errors = [e.message for e in _validator(document, schema).iter_errors(bundle)]
        assert errors == [], errors


def test_appends_document_their_503_problem(document: dict[str, Any]) -> None:
    """An append the server cannot keep (its SQLite file was removed or replaced) is refused
    with 503 ``database_moved`` (tests/ops/test_ops_attacks.py): both append operations
    document it as a problem, as every other status they answer."""
    for path in ("/v1/events", "/v1/events/batch"):
        response = document["paths"][path]["post"]["responses"].get("503")
        assert response is not None, path
        assert response["content"] == {PROBLEM_TYPE: {"schema": PROBLEM_REF}}, path


def _response_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["paths"][path]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


def test_actor_keys_and_site_assessments_are_documented_field_by_field(
    document: dict[str, Any], sqlite_api: Api
) -> None:
    """Section 6: actors "with ... keys and their history", sites "with their current
    status and latest indicators". The document typed a key of that history and a site's
    assessment as any object; each now names its fields, and real answers (a rotated key,
    a revoked actor, an assessed and an unassessed site) validate against the document."""
    schemas_ = document["components"]["schemas"]
    keys = schemas_["Actor"]["properties"]["keys"]
    assert keys["items"] == {"$ref": "#/components/schemas/ActorKey"}
    assert set(schemas_["ActorKey"]["required"]) == {
        "key",
        "since_seq",
        "since_event",
        "since_time",
        "until_seq",
        "ended",
    }
    assessment = schemas_["Site"]["properties"]["assessment"]
    assert {"$ref": "#/components/schemas/SiteAssessment"} in assessment["anyOf"]
    assert set(schemas_["SiteAssessment"]["required"]) == {
        "event_id",
        "status",
        "assessed_on",
        "valid_until",
        "cahra",
        "findings",
        "indicators",
    }
    w = sqlite_api.world().standard()
    w.rotate_key("trader")
    w.revoke("trader2")
    w.register_site("site-c", "coop")
    get = sqlite_api.client.get
    answers = {
        "/v1/actors": get("/v1/actors").json(),
        "/v1/actors/{actor_id}": [get(f"/v1/actors/{a}").json() for a in ("trader", "trader2")],
        "/v1/sites": get("/v1/sites").json(),
        "/v1/sites/{site_id}": [get(f"/v1/sites/{s}").json() for s in ("site-a", "site-c")],
    }
    trader = answers["/v1/actors/{actor_id}"][0]
    assert [k["ended"] for k in trader["keys"]] == ["rotated", None]
    for path, answer in answers.items():
        validator = _validator(document, _response_schema(document, path))
        for item in answer if isinstance(answer, list) else [answer]:
            errors = [e.message for e in validator.iter_errors(item)]
            assert errors == [], (path, errors)


def test_the_headers_of_the_bundle_and_the_page_are_documented(
    document: dict[str, Any], sqlite_api: Api
) -> None:
    """What a client may rely on besides the body: the bundle comes as an attachment named
    ``{lot}.bundle.json``, and the bundle and the page are gzipped for a client that accepts
    it, so they vary by ``Accept-Encoding``. The document named none of these headers."""
    w = sqlite_api.world().standard()
    lot = w.register_lot().body["lot"]
    for path, url, names in (
        (
            "/v1/lots/{lot_id}/bundle",
            f"/v1/lots/{lot}/bundle",
            {"Content-Disposition", "Vary", "Content-Encoding"},
        ),
        ("/l/{lot_id}", f"/l/{lot}", {"Vary", "Content-Encoding"}),
    ):
        documented = document["paths"][path]["get"]["responses"]["200"].get("headers", {})
        assert set(documented) == names, (path, documented)
        answer = sqlite_api.client.get(url, headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200
        assert answer.headers["vary"] == "Accept-Encoding"
        assert answer.headers["content-encoding"] == "gzip"
        if "Content-Disposition" in names:
            disposition = answer.headers["content-disposition"]
            assert disposition == f'attachment; filename="{lot}.bundle.json"'


def test_a_lots_bar_form_and_producers_are_documented_as_section_5_and_7_define_them(
    document: dict[str, Any], sqlite_api: Api
) -> None:
    """``GET /v1/lots/{lot}``: ``bar`` is ``{serial, year}`` or null, ``form`` one of the
    five forms, the gender summary's ``producers`` ``{women, men}`` (sections 5 and 7); the
    document said any object, any string, and a map of any names."""
    schemas_ = document["components"]["schemas"]
    lot = schemas_["Lot"]["properties"]
    assert {"$ref": "#/components/schemas/Bar"} in lot["bar"]["anyOf"]
    assert set(schemas_["Bar"]["required"]) == {"serial", "year"}
    assert set(lot["form"]["enum"]) == {"ore", "concentrate", "gold", "dore", "bar"}
    producers = schemas_["Gender"]["properties"]["producers"]
    assert producers == {"$ref": "#/components/schemas/Producers"}
    assert set(schemas_["Producers"]["required"]) == {"women", "men"}
    w = sqlite_api.world().standard()
    lot_id = w.register_lot(site="site-b").body["lot"]
    bar = {"serial": "S-1", "year": 2026}
    w.process([lot_id], [factories.out("CPB-0900", 50_000, 800_000, "bar", bar=bar)])
    validator = _validator(document, _response_schema(document, "/v1/lots/{lot_id}"))
    for name in (lot_id, "CPB-0900"):
        answer = sqlite_api.client.get(f"/v1/lots/{name}").json()
        errors = [e.message for e in validator.iter_errors(answer)]
        assert errors == [], (name, errors)
    assert sqlite_api.lot("CPB-0900")["bar"] == bar
