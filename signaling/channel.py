"""What a signaling session talks through: the participant's own WebSocket on this node, or a
relay over the cross-node bus from the node that holds the socket (`signaling.relay`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import WSMsgType, web


class ClientChannel(Protocol):
    def receive(self) -> AsyncIterator[str | bytes]:
        """The participant's messages (text or binary) until the connection is gone."""
        ...

    async def send_json(self, message: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class WebSocketChannel:
    """A WebSocket on this node; `first` is a text message already read from it (routing)."""

    def __init__(self, ws: web.WebSocketResponse, first: str | bytes | None = None) -> None:
        self._ws = ws
        self._first = first

    async def receive(self) -> AsyncIterator[str | bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        async for msg in self._ws:
            if msg.type is WSMsgType.TEXT:
                yield msg.data
            elif msg.type is WSMsgType.BINARY:
                yield msg.data
            else:
                return

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._ws.send_json(message)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, message=reason.encode())

    def went_silent(self) -> bool:
        """The socket was dropped because the client answered no ping in time."""
        return isinstance(self._ws.exception(), TimeoutError)
