"""The join page's connection test: a tiny answer to time the round trip, and a payload of a
chosen size to estimate the download rate. No token: it says nothing about any visit."""

from __future__ import annotations

import random

from aiohttp import web

from server.api_models import CONNECTION_TEST_MAX_BYTES, ConnectionTestQuery
from server.http_api import _query

#: Incompressible, so that a compressing proxy on the way cannot flatter the estimate.
PAYLOAD = random.Random(16).randbytes(CONNECTION_TEST_MAX_BYTES)


async def connection_test(request: web.Request) -> web.Response:
    query = _query(request, ConnectionTestQuery)
    return web.Response(
        body=PAYLOAD[: query.bytes],
        content_type="application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )
