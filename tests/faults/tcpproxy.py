"""A TCP proxy the test controls, to put a real network fault between a server and its database.

`forward` passes bytes both ways; `cut` closes every connection and refuses new ones (the peer
sees a reset at once); `blackhole` keeps every connection open and accepts new ones, but never
forwards a byte (the peer waits, as behind a dead route). `forward` again aborts what the black
hole swallowed, as a route that comes back would leave those connections broken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Literal

Mode = Literal["forward", "cut", "blackhole"]
CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.mode: Mode = "forward"
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        self.mode = "cut"
        self._abort_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def forward(self) -> None:
        if self.mode == "blackhole":
            self._abort_all()
        self.mode = "forward"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.close()
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            self._spawn(self._swallow(reader, writer))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer))

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass
        writer.close()
        self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self.mode == "forward":
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            writer.transport.abort()
            self._writers.discard(writer)
