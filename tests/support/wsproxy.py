"""A signaling proxy for tests: clients connect to it as to the server; it passes every frame on
both ways and records the text ones, ("up" | "down", text), in order."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSMsgType, web


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        """`upstream`: the server's signaling socket URL (ws://host:port/ws)."""
        self.upstream = upstream
        self.frames: list[tuple[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/ws", self._socket)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse()
        await client.prepare(request)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(self.upstream, autoping=True) as server,
        ):
            pumps = [
                asyncio.create_task(self._pump(client, server, "up")),
                asyncio.create_task(self._pump(server, client, "down")),
            ]
            _done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            code = server.close_code or client.close_code or 1000
            await server.close(code=code)
            await client.close(code=code)
        return client

    async def _pump(
        self,
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        direction: str,
    ) -> None:
        async for msg in source:
            if msg.type is WSMsgType.TEXT:
                self.frames.append((direction, msg.data))
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
