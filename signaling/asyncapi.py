"""The AsyncAPI 3 document of the signaling socket, written from the message models: one
message, with its own schema, per type a client may send (up) or receive (down)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from signaling.down import DOWN_MESSAGES
from signaling.messages import UP_MESSAGES

REF = "#/components/schemas/{model}"


def _tag(model: type[BaseModel]) -> str:
    tag = model.model_fields["type"].default
    assert isinstance(tag, str)
    return tag


def asyncapi_document() -> dict[str, Any]:
    """The protocol as AsyncAPI 3.0 (a new dict each call); PROTOCOL.md says what it means."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in UP_MESSAGES),
        *((m, "serialization") for m in DOWN_MESSAGES),
    ]
    _keys, defs = models_json_schema(pairs, ref_template=REF)
    schemas: dict[str, Any] = defs["$defs"]
    messages: dict[str, Any] = {}
    for model, mode in pairs:
        schema = schemas[model.__name__]
        # `type` has a default in Python; on the wire every message names it.
        schema["required"] = ["type", *[r for r in schema.get("required", []) if r != "type"]]
        messages[model.__name__] = {
            "name": _tag(model),
            "title": _tag(model) + (" (up)" if mode == "validation" else " (down)"),
            "payload": {"$ref": REF.format(model=model.__name__)},
        }
    channel_ref = "#/channels/signaling"

    def refs(models: tuple[type[BaseModel], ...]) -> list[dict[str, str]]:
        return [{"$ref": f"{channel_ref}/messages/{m.__name__}"} for m in models]

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "screenvisit signaling",
            "version": "0.1.0",
            "description": "JSON text messages over one WebSocket per participant; the first"
            " is `join`. Every message is an object whose `type` names it. Meaning, limits"
            " and error codes: signaling/PROTOCOL.md.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "signaling": {
                "address": "/ws",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            }
        },
        "operations": {
            "receiveFromClient": {
                "action": "receive",
                "channel": {"$ref": channel_ref},
                "summary": "What a client may send",
                "messages": refs(UP_MESSAGES),
            },
            "sendToClient": {
                "action": "send",
                "channel": {"$ref": channel_ref},
                "summary": "What the server sends",
                "messages": refs(DOWN_MESSAGES),
            },
        },
        "components": {"schemas": schemas, "messages": messages},
    }


def message_schema(document: dict[str, Any], direction: str, kind: str) -> dict[str, Any]:
    """The JSON Schema (resolvable on its own) of the `kind` message going `direction` ("up":
    client to server, "down": server to client); KeyError for a type the protocol lacks."""
    operation = "receiveFromClient" if direction == "up" else "sendToClient"
    for ref in document["operations"][operation]["messages"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        if document["components"]["messages"][name]["name"] == kind:
            return {"$ref": REF.format(model=name), "components": document["components"]}
    raise KeyError(f"{direction} {kind}")
