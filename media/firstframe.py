"""Callbacks an up track runs once, when its publisher's first frame arrives."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class FirstFrame:
    def __init__(self) -> None:
        self.at: float | None = None
        self._callbacks: list[Callable[[], None]] = []

    def on(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def arrived(self) -> None:
        """A frame arrived: the first one runs the callbacks. They run inside aiortc's packet
        handling, so a failing one is logged and does not stop media."""
        if self.at is not None:
            return
        self.at = time.monotonic()
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                logger.exception("first-frame callback failed")
