"""Waiting for what another process or task does: poll a condition with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.1
) -> None:
    """Poll `condition` (another process's state) every `every` seconds until it holds; fail
    the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
