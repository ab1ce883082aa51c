"""`serve` runs on uvloop on Linux when it is installed and not turned off; the standard loop
otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from server.config import Settings
from server.eventloop import new_event_loop


def test_uvloop_by_default_on_linux_and_the_setting_turns_it_off() -> None:
    assert Settings.load(env={}).uvloop is True
    assert Settings.load(env={"SCREENVISIT_UVLOOP": "false"}).uvloop is False
    loop, name = new_event_loop(use_uvloop=True)
    try:
        if sys.platform == "linux":
            assert isinstance(loop, uvloop.Loop) and name == "uvloop"
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()
    loop, name = new_event_loop(use_uvloop=False)
    try:
        assert not isinstance(loop, uvloop.Loop) and name == "asyncio"
    finally:
        loop.close()


def test_the_standard_loop_when_uvloop_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    loop, name = new_event_loop(use_uvloop=True)
    try:
        assert not isinstance(loop, uvloop.Loop) and name == "asyncio"
    finally:
        loop.close()
