"""The OpenAPI 3.1 document, written from the operations table and their pydantic models.

A few lines of our own over `pydantic.json_schema.models_json_schema` rather than an aiohttp
integration: the routes are plain aiohttp handlers that validate through the same models, and
the integrations on PyPI (aiohttp-pydantic, aiohttp-apispec) want their own handler classes or
decorators and lag behind pydantic and OpenAPI 3.1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from rooms.ids import VISIT_ID_PATTERN
from server.api_models import ErrorBody, OutcomeRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]
REF = "#/components/schemas/{model}"

ERROR_MEANINGS = {
    400: "The request is malformed or a field is invalid (code and field say which)",
    401: "No token, or the token was refused (code says why)",
    403: "The policy does not allow this caller to do this",
    404: "No such visit",
    409: "The visit's state does not allow it (current), or the visit is full",
    429: "Too many failed authentications from this address",
}


@dataclass(frozen=True)
class Operation:
    """One route: its handler, and what it takes and answers."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    #: status -> the model of the JSON answer
    answers: dict[int, type[BaseModel]]
    errors: tuple[int, ...] = (400, 401, 403, 429)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    description: str = ""
    public: bool = False
    #: status -> {media type: schema}, for answers that are not one JSON model
    content: dict[int, dict[str, Schema]] = field(default_factory=dict)
    #: OpenAPI links from the first answer: name -> (operationId, {parameter: expression})
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for op in operations:
        for model in (op.body, op.query):
            if model is not None:
                seen[(model, "validation")] = None
        for model in op.answers.values():
            seen[(model, "serialization")] = None
    return list(seen)


def _without_null(schema: Schema) -> Schema:
    """A query parameter is present or not; it is never null."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    rest = [o for o in options if o != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}


def _parameters(query: Schema) -> list[Schema]:
    required = set(query.get("required", ()))
    out = []
    for name, prop in query["properties"].items():
        schema = _without_null(prop)
        description = schema.pop("description", None)
        schema.pop("title", None)
        parameter: Schema = {"name": name, "in": "query", "required": name in required}
        if description:
            parameter["description"] = description
        out.append({**parameter, "schema": schema})
    return out


def _operation(op: Operation, refs: dict[tuple[Any, str], Schema]) -> Schema:
    doc: Schema = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    if op.public:
        doc["security"] = []
    parameters: list[Schema] = []
    if "{visit}" in op.path:
        parameters.append(
            {
                "name": "visit",
                "in": "path",
                "required": True,
                "description": "The visit id.",
                "schema": {"type": "string", "pattern": f"^{VISIT_ID_PATTERN}$"},
            }
        )
    if op.query is not None:
        parameters += _parameters(refs[(op.query, "query")])
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    responses: Schema = {}
    for status, model in op.answers.items():
        responses[str(status)] = {
            "description": (model.__doc__ or model.__name__).strip().splitlines()[0],
            "content": {"application/json": {"schema": refs[(model, "serialization")]}},
        }
    for status, content in op.content.items():
        responses[str(status)] = {
            "description": op.summary,
            "content": {kind: {"schema": schema} for kind, schema in content.items()},
        }
    if op.links:
        first = responses[str(min(op.answers))]
        first["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in op.links.items()
        }
    error = refs[(ErrorBody, "serialization")]
    for status in op.errors:
        responses[str(status)] = {
            "description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": error}},
        }
    doc["responses"] = responses
    return doc


def openapi_document(operations: Sequence[Operation], outcomes: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations` (a new dict each call); `outcomes` are the
    outcome codes this server is configured with."""
    models = _models(operations)
    keys, defs = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Schema] = defs.get("$defs", {})
    refs: dict[tuple[Any, str], Schema] = {
        (model, mode): ref for (model, mode), ref in keys.items()
    }
    for op in operations:
        if op.query is not None and (op.query, "query") not in refs:
            # Query models become parameters, not components.
            name = refs[(op.query, "validation")]["$ref"].rsplit("/", 1)[1]
            refs[(op.query, "query")] = schemas.pop(name)
    outcome = refs.get((OutcomeRequest, "validation"))
    if outcome is not None:
        name = outcome["$ref"].rsplit("/", 1)[1]
        schemas[name]["properties"]["outcome"]["enum"] = list(outcomes)
    paths: dict[str, Schema] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "screenvisit",
            "version": "0.1.0",
            "description": "Booking and access API for video consultations across Danish"
            " healthcare sectors. Tokens are JWTs from a trusted issuer (README: Access);"
            ' errors are {"error": {"code", "message"}}. The signaling socket (/ws) is'
            " described by the AsyncAPI document at /asyncapi.json.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": schemas,
        },
    }
