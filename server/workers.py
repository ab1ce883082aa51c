"""`screenvisit serve --workers N`: N server processes on one machine, one node each.

One process is one asyncio thread, so one core; N workers share the HTTP port (SO_REUSEPORT:
the kernel spreads connections over them) and Redis, and place visits across themselves exactly
as separate machines do. A worker that dies is started again; SIGTERM drains them all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger(__name__)


def without_workers_flag(argv: Sequence[str]) -> list[str]:
    """The supervisor's arguments less `--workers N` (or `--workers=N`)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def worker_command(argv: Sequence[str], index: int) -> list[str]:
    """The worker's own `serve` command line: the same settings, one node, the shared port."""
    command = [sys.executable, "-m", "server.cli", *argv, "--reuse-port"]
    if index > 0:
        # One demo visit for the whole machine, announced by the first worker.
        command.append("--no-demo")
    return command


def run_workers(argv: Sequence[str], count: int, node_base: str) -> int:
    """Run `count` workers until SIGTERM or SIGINT; returns the exit status."""
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def spawn(index: int) -> None:
        env = {
            **os.environ,
            "SCREENVISIT_NODE_ID": f"{node_base}-w{index}",
            "SCREENVISIT_WORKER": str(index),
        }
        children[index] = subprocess.Popen(
            worker_command(argv, index),
            env=env,
            stdout=None if index == 0 else subprocess.DEVNULL,
        )

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        spawn(index)
    status = 0
    while children:
        pid, code = os.wait()
        ended = next((i for i, c in children.items() if c.pid == pid), None)
        if ended is None:
            continue
        del children[ended]
        if stopping:
            status = status or os.waitstatus_to_exitcode(code)
            continue
        logger.warning(
            "worker %d exited (%d); starting it again", ended, os.waitstatus_to_exitcode(code)
        )
        spawn(ended)
    return max(status, 0)
