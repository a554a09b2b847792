"""Schemathesis against the app's own OpenAPI document, every operation.

The app serves a log holding the demo scenario, so generated requests meet real actors,
sites, lots and events as well as unknown ones. Checks: no 5xx, status codes, content types
and bodies conform to the document. Generated event bodies are refused almost always
(nothing signs them): that must be a documented 4xx ``application/problem+json``, never a
5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nacl.signing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import openapi_document
from clients.scenario import ScenarioPlayer, load_scenario
from ledger.protocol import public_key_hex

from .conftest import open_api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("schemathesis")
    registrar = nacl.signing.SigningKey.generate()
    api = open_api(f"sqlite:///{folder}/ledger.db", folder, registrar_key=public_key_hex(registrar))
    player = ScenarioPlayer(api.settings.origin, first_registrar_key=registrar)
    for raw in load_scenario()["events"]:
        assert api.post(player.envelope(raw, api.lot)).status_code == 201
    try:
        yield api.app
    finally:
        api.close()


# The document the app serves at /openapi.json (test_openapi.py checks they are the same),
# loaded at import: schemathesis's lazy ``from_fixture`` does not work with this pytest.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_conforms_to_its_document(case: Any, live_app: Any) -> None:
    response = case.call_and_validate(app=live_app, checks=CHECKS)
    if (
        response.status_code >= 400
        and case.path != "/reports"
        and not (case.path == "/l/{lot_id}" and response.status_code == 404)
    ):
        assert response.headers["content-type"][0].startswith("application/problem+json")
    if case.method == "POST":
        assert response.status_code < 500
