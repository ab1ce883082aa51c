"""The OpenAPI document is valid OpenAPI 3, names every route the server has, and the running
server keeps to it: schemathesis fuzzes each operation (and follows the document's links from
a booked visit) against the real app on a real socket, with real tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.config import Settings
from server.openapi import openapi_document
from tests.support.identity import Identities, make_identities

Client = TestClient[web.Request, web.Application]

#: No 5xx; every status, content type and body as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Bounded so the whole file runs in well under a minute: no shrinking, no deadline, no
#: example database written to the working tree.
FUZZ = hypothesis.settings(
    max_examples=15,
    deadline=None,
    database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
STATEFUL = hypothesis.settings(FUZZ, max_examples=10, stateful_step_count=6)
ADMIN_PATHS = ("/api/audit", "/api/admin/revocations")
NOT_API = ("/ws",)  # the signaling socket: described in signaling/PROTOCOL.md instead


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture
def hypothesis_home(tmp_path: Path) -> Iterator[Path]:
    """Hypothesis' caches go to a temporary folder, not into the working tree."""
    home = tmp_path / "hypothesis"
    set_hypothesis_home_dir(home)
    yield home
    set_hypothesis_home_dir(None)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, identities: Identities) -> Client:
    configured = replace(
        settings, trust_file=identities.trust_file, auth_failures_per_minute=10_000
    )
    made: Client = await aiohttp_client(create_app(configured))
    return made


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_valid_openapi_3() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.0.")
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document)))
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    for ref in set(_refs(document)):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # every reference resolves
    operation_ids = [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    errors = document["components"]["responses"]
    assert set(errors) == {
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "TooManyRequests",
    }
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message"]


async def test_every_route_is_documented_and_served(client: Client) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith(("/api/", "/healthz"))
    }
    document = openapi_document()
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == served - {("get", p) for p in NOT_API}
    assert {
        "/api/visits",
        "/api/visits/{visit}",
        "/api/visits/{visit}/cancel",
        "/api/visits/{visit}/links",
        "/api/visits/{visit}/participants",
        "/api/visits/{visit}/end",
        "/api/audit",
        "/api/admin/revocations",
        "/healthz",
    } <= set(document["paths"])
    response = await client.get("/api/openapi.json")  # no token needed
    assert response.status == 200
    assert await response.json() == json.loads(json.dumps(document))


def _operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    ]


def _fuzz(base_url: str, tokens: dict[str, str], visits: list[str]) -> list[str]:
    """Run schemathesis (blocking) against `base_url`; returns the operations it exercised."""
    with requests.Session() as session:
        served = session.get(base_url + "/api/openapi.json", timeout=10)
        served.raise_for_status()
        document = served.json()
        assert document == json.loads(json.dumps(openapi_document()))
        schema = schemathesis.openapi.from_dict(document)
        schema.validate()

        def token_for(case: Case) -> str:
            admin = case.operation.path.startswith(ADMIN_PATHS)
            return tokens["admin"] if admin else tokens["gp"]

        def call_and_check(case: Case) -> None:
            case.call_and_validate(
                base_url=base_url,
                session=session,
                headers={"Authorization": f"Bearer {token_for(case)}"},
                checks=CHECKS,
                timeout=10,
            )

        exercised = []
        for method, path in _operations(document):
            operation = schema[path][method]
            strategies = [
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            ]
            if "{visit}" in path:
                # Also the visits that exist, not only ids nobody booked.
                strategies += [
                    operation.as_strategy(mode, path_parameters={"visit": visit})
                    for visit in visits
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                ]
            run = hypothesis.given(case=st.one_of(strategies))(call_and_check)
            FUZZ(run)()
            exercised.append(f"{method} {path}")

        _stateful(schema, base_url, session, tokens)
    return exercised


def _stateful(
    schema: schemathesis.BaseSchema,
    base_url: str,
    session: requests.Session,
    tokens: dict[str, str],
) -> None:
    """Book visits and follow the document's links to change, cancel and end them."""

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            admin = case.operation.path.startswith(ADMIN_PATHS)
            token = tokens["admin"] if admin else tokens["gp"]
            return {
                "base_url": base_url,
                "session": session,
                "headers": {"Authorization": f"Bearer {token}"},
                "timeout": 10,
            }

        def validate_response(
            self,
            response: Response,
            case: Case,
            additional_checks: list[Callable[..., Any]] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))

    Machine.run(settings=STATEFUL)


async def test_the_running_server_keeps_to_its_document(
    client: Client, identities: Identities, hypothesis_home: Path
) -> None:
    tokens = {"gp": identities.gp(), "admin": identities.admin()}
    visits = []
    for kind in ("consultation", "assisted"):
        response = await client.post(
            "/api/visits",
            json={"kind": kind, "participants": [{"role": "citizen"}, {"role": "gp"}]},
            headers={"Authorization": f"Bearer {tokens['gp']}"},
        )
        assert response.status == 201
        visits.append((await response.json())["visit"])
    base_url = str(client.make_url("")).rstrip("/")
    assert base_url.startswith("http://127.0.0.1:")
    # The server runs on this event loop; schemathesis' blocking client runs beside it.
    exercised = await asyncio.to_thread(_fuzz, base_url, tokens, visits)
    assert exercised == [f"{m} {p}" for m, p in _operations(openapi_document())]
