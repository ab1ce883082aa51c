"""A participant's signaling relayed between the node that holds their WebSocket (the edge) and
the node that hosts their visit (the owner), over the cross-node bus.

Edge -> owner: `open` (with the first message, already read for routing), `frame`, `close`.
Owner -> edge: `out` (one server message), `closed` (close code and reason).

The owner runs an ordinary `Session` over a `RelayedChannel`, so policy, the hub and the event
log see a relayed participant exactly as a local one. Media never passes through the edge: the
owner's SDP answer names the owner's own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from rooms.cluster import NodeId
from signaling.bus import BusUnavailable, Message
from signaling.errors import CLOSE_NODE_LOST, CLOSE_SLOW
from signaling.messages import error_message

logger = logging.getLogger(__name__)

#: Sends one bus message to a node's channel (raises BusUnavailable).
SendToNode = Callable[[NodeId, Message], Awaitable[None]]

#: Messages queued toward one participant, either way, before the relay gives up on them.
RELAY_QUEUE = 256
#: Seconds one message may take to reach the participant before the edge closes the socket.
SEND_TIMEOUT = 10.0


class RelayedChannel:
    """The owner's end: a `ClientChannel` whose participant is connected to another node."""

    def __init__(self, send: SendToNode, edge: NodeId, conn: str, first: str) -> None:
        self.edge = edge
        self.conn = conn
        self._send = send
        self._inbound: asyncio.Queue[str | bytes | None] = asyncio.Queue(maxsize=RELAY_QUEUE)
        self._inbound.put_nowait(first)
        self._closed = False

    def feed(self, data: str | bytes) -> None:
        try:
            self._inbound.put_nowait(data)
        except asyncio.QueueFull:
            logger.warning("relay %s: participant sends faster than the session reads", self.conn)
            self.end()

    def end(self) -> None:
        """The participant's socket is gone (closed at the edge, or the edge node died)."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                self._inbound.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._inbound.get_nowait()

    async def receive(self) -> AsyncIterator[str | bytes]:
        while (data := await self._inbound.get()) is not None:
            yield data

    async def send_json(self, message: dict[str, Any]) -> None:
        try:
            await self._send(
                self.edge, {"type": "out", "conn": self.conn, "data": json.dumps(message)}
            )
        except BusUnavailable:
            # The bus is down (a Redis outage): the call's media goes on; this message is lost.
            logger.warning(
                "relay %s: bus unavailable, a %s message is lost", self.conn, message.get("type")
            )

    async def close(self, code: int, reason: str) -> None:
        self._closed = True
        with contextlib.suppress(BusUnavailable):
            await self._send(
                self.edge, {"type": "closed", "conn": self.conn, "code": code, "reason": reason}
            )


class EdgeRelay:
    """The edge's end: the participant's WebSocket here, their session on `owner`."""

    def __init__(
        self,
        send: SendToNode,
        me: NodeId,
        owner: NodeId,
        conn: str,
        ws: web.WebSocketResponse,
        client: str | None,
    ) -> None:
        self.owner = owner
        self.conn = conn
        self._send = send
        self._me = me
        self._ws = ws
        self._client = client
        self._from_owner: asyncio.Queue[Message] = asyncio.Queue(maxsize=RELAY_QUEUE * 4)
        self._closed_by_owner = False
        #: The deadline of the message being written, brought forward to close a slow reader.
        self._sending: asyncio.Timeout | None = None
        self._slow = False

    def deliver(self, message: Message) -> None:
        """An `out` or `closed` message from the owner."""
        try:
            self._from_owner.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("relay %s: participant reads too slowly, closing", self.conn)
            self._slow = True
            # Stop waiting for the message being written: the owner hears of it at once.
            if self._sending is not None:
                self._sending.reschedule(asyncio.get_running_loop().time())

    def close_soon(self, code: int, reason: str) -> None:
        """Close the participant's socket after what is queued (the owner died, or drained)."""
        if self._from_owner.full():
            # Never drop the close: drop what a closing socket would have read before it.
            while not self._from_owner.empty():
                self._from_owner.get_nowait()
        self._from_owner.put_nowait({"type": "closed", "code": code, "reason": reason})

    def owner_lost(self) -> None:
        self.close_soon(CLOSE_NODE_LOST, "node-lost")

    async def run(self, first: str) -> None:
        await self._send(
            self.owner,
            {
                "type": "open",
                "conn": self.conn,
                "edge": self._me,
                "client": self._client,
                "first": first,
            },
        )
        reader = asyncio.create_task(self._read_loop())
        writer = asyncio.create_task(self._write_loop())
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            if not self._closed_by_owner:
                with contextlib.suppress(BusUnavailable):
                    await self._send(self.owner, {"type": "close", "conn": self.conn})
            if not self._ws.closed:
                if self._slow:
                    await self._ws.close(code=CLOSE_SLOW, message=b"slow-consumer")
                else:
                    await self._ws.close()

    async def _read_loop(self) -> None:
        async for msg in self._ws:
            if msg.type is WSMsgType.TEXT:
                frame: Message = {"type": "frame", "conn": self.conn, "data": msg.data}
            elif msg.type is WSMsgType.BINARY:
                frame = {"type": "frame", "conn": self.conn, "binary": True}
            else:
                return
            frame["edge"] = self._me
            try:
                await self._send(self.owner, frame)
            except BusUnavailable:
                reply = error_message(
                    "service-unavailable",
                    "the servers cannot reach each other right now; try again shortly",
                ).wire()
                with contextlib.suppress(ConnectionError):
                    await self._ws.send_json(reply)

    async def _write_loop(self) -> None:
        while True:
            if self._slow:
                return
            message = await self._from_owner.get()
            if message["type"] == "out":
                try:
                    async with asyncio.timeout(SEND_TIMEOUT) as self._sending:
                        await self._ws.send_str(str(message["data"]))
                except TimeoutError:
                    logger.warning("relay %s: a send timed out, closing", self.conn)
                    self._slow = True
                    return
                finally:
                    self._sending = None
                continue
            self._closed_by_owner = True
            code = int(message.get("code") or 1000)
            await self._ws.close(code=code, message=str(message.get("reason", "")).encode())
            return
