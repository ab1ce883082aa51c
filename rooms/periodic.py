"""A job run now and then every `interval` seconds, in one task with one owner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    """A failing run is logged with its traceback and tried again at the next interval;
    `stop` cancels the task and waits for it (without swallowing the caller's own
    cancellation)."""

    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        if interval <= 0:
            raise ValueError("the interval must be positive")
        self._name = name
        self._interval = interval
        self._job = job
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self._name} already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            try:
                await self._job()
            except Exception:
                logger.exception("%s failed; retrying in %g s", self._name, self._interval)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        await asyncio.wait({task})
