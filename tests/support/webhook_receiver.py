"""A booking system's webhook endpoint on a local port: verifies each message with the
`standardwebhooks` library and keeps it by its id; it can be taken down and brought back."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


class WebhookReceiver:
    def __init__(self, secret: str, port: int) -> None:
        self.port = port
        self._verifier = Webhook(secret)
        #: Verified messages by webhook id, in order of arrival.
        self.messages: dict[str, dict[str, Any]] = {}
        #: Verified deliveries per webhook id (more than one would be a duplicate delivery).
        self.deliveries: Counter[str] = Counter()
        self.refused = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = self._verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.refused += 1
            return web.Response(status=400)
        message_id = request.headers["webhook-id"]
        self.deliveries[message_id] += 1
        self.messages.setdefault(message_id, payload)
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(status=204)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["type"] == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 45.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of_type(kind)) >= count)
