"""The event loop `serve` runs on: uvloop on Linux (libuv; less interpreter time per packet
and per socket event than the standard selector loop), the standard loop when uvloop is not
installed, on another system, or turned off (SCREENVISIT_UVLOOP=false)."""

from __future__ import annotations

import asyncio
import importlib
import sys


def new_event_loop(*, use_uvloop: bool) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop and the name of its kind ("uvloop" or "asyncio")."""
    if use_uvloop and sys.platform == "linux":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop, "uvloop"
    return asyncio.new_event_loop(), "asyncio"
