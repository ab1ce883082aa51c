"""The join page's connection test endpoint: a payload of the size asked for, never cached,
bad sizes refused precisely; the link check hands the page the STUN/TURN servers to try."""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from media.config import IceServer
from server.api_models import CONNECTION_TEST_MAX_BYTES as MAX_BYTES
from server.app import create_app
from server.config import Settings
from tests.conftest import book

Client = TestClient[web.Request, web.Application]


async def test_the_payload_has_the_size_asked_for_and_does_not_compress(client: Client) -> None:
    for size in (0, 1000, MAX_BYTES):
        response = await client.get(f"/api/connection-test?bytes={size}")
        body = await response.read()
        assert response.status == 200 and len(body) == size
        assert response.headers["Cache-Control"] == "no-store"
        assert response.content_type == "application/octet-stream"
    assert len(zlib.compress(body)) > 0.99 * MAX_BYTES


@pytest.mark.parametrize("size", ["-1", "abc", "1.5", str(MAX_BYTES + 1), "9" * 40])
async def test_a_bad_size_is_refused_precisely(client: Client, size: str) -> None:
    response = await client.get("/api/connection-test", params={"bytes": size})
    body: dict[str, Any] = await response.json()
    assert response.status == 400 and body["error"]["code"] == "invalid-query"


async def test_the_link_check_names_the_ice_servers_for_the_page_to_try(
    aiohttp_client: Any, settings: Settings
) -> None:
    stun = IceServer(urls=("stun:stun.example.org:3478",))
    client: Client = await aiohttp_client(create_app(replace(settings, ice_servers=(stun,))))
    visit, tokens = await book(client.app)
    response = await client.get(
        f"/api/visits/{visit.id}/link", headers={"Authorization": f"Bearer {tokens['citizen']}"}
    )
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    assert body["ice_servers"] == [{"urls": ["stun:stun.example.org:3478"]}]
