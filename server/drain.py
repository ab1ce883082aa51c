"""`POST /api/admin/drain` and `screenvisit drain`: drain this node in the background, then stop
the process the way SIGTERM does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from server import appkeys

logger = logging.getLogger(__name__)


class Drainer:
    def __init__(self, stop_process: Callable[[], None] | None = None) -> None:
        """`stop_process` ends the server once drained (the CLI's serve sends itself SIGTERM);
        without it, the node stays up, draining (an app inside tests)."""
        self._stop_process = stop_process
        self._task: asyncio.Task[None] | None = None

    def start(self, app: web.Application) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(app))

    async def _drain(self, app: web.Application) -> None:
        moved = await app[appkeys.NODE].drain(app[appkeys.SETTINGS].drain_timeout)
        logger.info("drained (%d visit(s) handed on); stopping", moved)
        if self._stop_process is not None:
            self._stop_process()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
