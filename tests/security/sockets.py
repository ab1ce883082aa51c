"""Signaling sockets for the security tests: join, read by type, and a TCP proxy that can stall."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]
Socket = aiohttp.ClientWebSocketResponse


async def next_of(ws: Socket, kind: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next message of `kind`, skipping others."""
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type is WSMsgType.TEXT, f"socket ended waiting for {kind}: {msg}"
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def join(client: Client, token: str, visit: str) -> tuple[Socket, dict[str, Any]]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    return ws, await next_of(ws, "joined")


async def closed_with(ws: Socket, timeout: float = 15.0) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the socket closes: its close code and the messages that came before."""
    seen: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.TEXT:
            seen.append(json.loads(msg.data))
            continue
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
        return ws.close_code, seen


class StallingProxy:
    """A TCP proxy in front of the test server whose server-to-client direction can be stopped,
    as a client that stops reading (a frozen tab, a dead radio link) would stop it."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window, so that a stall backs up into the server quickly.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self._upstream_port))
        up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=4096)
        self._writers += [writer, up_writer]
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, gated=False)),
            asyncio.create_task(self._pump(up_reader, writer, gated=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, gated: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                if gated:
                    await self._flowing.wait()
                data = await source.read(4096)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in self._writers:
            writer.close()
