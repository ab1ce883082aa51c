"""Flooding a visit with chat until a participant that stopped reading is dropped."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import WSMsgType


async def chat_until_one_is_dropped(
    sender: aiohttp.ClientWebSocketResponse,
    *,
    letter: str,
    batch: int,
    read_timeout: float,
    timeout: float,
) -> tuple[str, int]:
    """Send 500-character chats from `sender`, `batch` at a time, reading what comes back for
    `read_timeout` after each batch, until `sender` is told a participant is reconnecting (the
    server dropped it): that participant, and how many chats were sent."""
    text = letter * 500
    deadline = time.monotonic() + timeout
    sent = 0
    while True:
        assert time.monotonic() < deadline, f"the stalled socket was never closed ({sent})"
        for _ in range(batch):
            await sender.send_json({"type": "chat", "text": text})
            sent += 1
        # Read what came back; the victim's departure shows up among the chats.
        while True:
            try:
                msg = await sender.receive(timeout=read_timeout)
            except TimeoutError:
                break
            assert msg.type is WSMsgType.TEXT, msg
            data = msg.json()
            if data["type"] == "participant-reconnecting":
                gone: str = data["participant"]
                return gone, sent
