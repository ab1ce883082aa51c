"""The join page's connection test: a tiny answer to time the round trip, and a payload of a
chosen size to estimate the download rate. No token: it says nothing about any visit."""

from __future__ import annotations

import random

from aiohttp import web

from server.errors import ApiError

#: The largest payload: half a megabyte takes 4 s at 1 Mbit/s, the rate a call needs.
MAX_BYTES = 512 * 1024
#: Incompressible, so that a compressing proxy on the way cannot flatter the estimate.
PAYLOAD = random.Random(16).randbytes(MAX_BYTES)


async def connection_test(request: web.Request) -> web.Response:
    raw = request.query.get("bytes", "0")
    if not raw.isdigit() or len(raw) > 7 or int(raw) > MAX_BYTES:
        raise ApiError("invalid-query", f"'bytes' is a whole number from 0 to {MAX_BYTES}")
    return web.Response(
        body=PAYLOAD[: int(raw)],
        content_type="application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )


def setup_connection_test_routes(app: web.Application) -> None:
    app.router.add_get("/api/connection-test", connection_test)
