"""The committed copies of the API's documents: `python -m server.apidocs` writes
docs/openapi.json and docs/asyncapi.json (tests/test_openapi.py fails when they drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rooms.outcomes import DEFAULT_OUTCOMES
from server.api_routes import OPERATIONS
from server.openapi import openapi_document
from signaling.asyncapi import asyncapi_document

DOCS = Path(__file__).resolve().parent.parent / "docs"


def documents() -> dict[str, dict[str, Any]]:
    """File name -> document, as a server with the default settings serves them."""
    return {
        "openapi.json": openapi_document(OPERATIONS, DEFAULT_OUTCOMES),
        "asyncapi.json": asyncapi_document(),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    for name, document in documents().items():
        (DOCS / name).write_text(render(document))


if __name__ == "__main__":
    main()
