"""The API's contract exists once, as models: the OpenAPI and AsyncAPI documents are written
from them, the committed copies in docs/ are the generated ones, every route is described, and
a real server keeps to its document under schemathesis with every check on."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient

from rooms.outcomes import DEFAULT_OUTCOMES
from server.api_routes import OPERATIONS
from server.apidocs import DOCS, documents, render
from server.app import create_app
from server.config import Settings
from server.openapi import openapi_document
from signaling.asyncapi import asyncapi_document
from signaling.down import DOWN_MESSAGES
from signaling.messages import UP_MESSAGES
from tests.support.identity import Identities, make_identities
from tests.support.servers import start_server

Client = TestClient[web.Request, web.Application]
NOT_DOCUMENTED = ("/ws",)  # the signaling socket: its messages are in /asyncapi.json
#: Bounded so that the run takes under a minute on a machine with other tests running.
MAX_EXAMPLES = 12


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, identities: Identities) -> Client:
    made: Client = await aiohttp_client(
        create_app(replace(settings, trust_file=identities.trust_file))
    )
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


def _resolve_all(document: dict[str, Any]) -> None:
    for ref in set(_refs(document)):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document(OPERATIONS, DEFAULT_OUTCOMES)
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(json.loads(json.dumps(document))).validate()
    _resolve_all(document)
    operation_ids = [op.operation_id for op in OPERATIONS]
    assert len(operation_ids) == len(set(operation_ids))
    error = document["components"]["schemas"]["ErrorDetail"]
    assert error["required"] == ["code", "message"]
    for item in document["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_the_asyncapi_document_has_one_schema_per_message() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    _resolve_all(document)
    messages = document["components"]["messages"]
    assert set(messages) == {m.__name__ for m in (*UP_MESSAGES, *DOWN_MESSAGES)}
    for name, message in messages.items():
        schema = document["components"]["schemas"][name]
        assert schema["properties"]["type"]["const"] == message["name"]
        assert "type" in schema["required"]
    up = document["operations"]["receiveFromClient"]["messages"]
    down = document["operations"]["sendToClient"]["messages"]
    assert (len(up), len(down)) == (len(UP_MESSAGES), len(DOWN_MESSAGES))


@pytest.mark.parametrize("name", ["openapi.json", "asyncapi.json"])
def test_the_committed_document_is_the_generated_one(name: str) -> None:
    committed = (DOCS / name).read_text()
    assert committed == render(documents()[name]), (
        f"docs/{name} is out of date: run `python -m server.apidocs`"
    )


async def test_every_route_is_documented_and_served(client: Client) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith(("/api/", "/healthz", "/asyncapi", "/ws"))
    }
    document = openapi_document(OPERATIONS, DEFAULT_OUTCOMES)
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == served - {("get", p) for p in NOT_DOCUMENTED}
    for path, generated in (
        ("/api/openapi.json", document),
        ("/asyncapi.json", asyncapi_document()),
    ):
        response = await client.get(path)  # no token needed
        assert response.status == 200
        assert await response.json() == json.loads(json.dumps(generated))


SCHEMATHESIS_CONFIG = """\
headers = {{ Authorization = "Bearer {gp}" }}

[[operations]]
include-path-regex = "^/api/(admin/revocations|audit)"
headers = {{ Authorization = "Bearer {admin}" }}

[[operations]]
include-path-regex = "^/api/evaluation/"
headers = {{ Authorization = "Bearer {evaluator}" }}
"""


async def test_the_running_server_keeps_to_its_document(
    tmp_path: Path, identities: Identities
) -> None:
    """`schemathesis run --checks all` against a real server: staff tokens (a gp; an admin for
    revocations and the audit log; an evaluator for the evaluation), generated and mutated
    requests and the document's links from a booked visit. Draining is left to the gp's token
    (refused): an admin's would stop the server under test."""
    env = {
        "SCREENVISIT_TRUST_FILE": str(identities.trust_file),
        # Requests without a token (the ignored_auth check) would soon make every answer a 429.
        "SCREENVISIT_AUTH_FAILURES_PER_MINUTE": "100000",
    }
    server = await start_server(tmp_path, env=env)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        SCHEMATHESIS_CONFIG.format(
            gp=identities.gp(), admin=identities.admin(), evaluator=identities.evaluator()
        )
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            server.base_url + "/api/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--workers",
            "1",
            "--no-color",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        assert await server.stop() == 0
    report = out.decode()
    assert proc.returncode == 0, report[-6000:]
    summary = report.split("SUMMARY")[-1]
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", summary)
    assert counts is not None and len(set(counts.groups())) == 1, summary
    assert "failures" not in summary and "errors" not in summary, summary
    assert "Traceback" not in server.log.read_text()
