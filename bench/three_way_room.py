"""Server CPU for one three-way room: the real server and three bots, each its own process.

    python3 -m bench.three_way_room [--seconds 20] [--width 640 --height 480]

Prints the server process's CPU-seconds per second over the steady part of the call (after every
bot has its first frames), and what each bot received. The full forwarding benchmark, with the
MediaRelay baseline side by side, is bench/media_forwarding.py (the media performance issue).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROLES = ("citizen", "nurse", "gp")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main(seconds: float, width: int, height: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SCREENVISIT_DATA_DIR": str(Path(tmp) / "data"),
            "SCREENVISIT_PORT": str(port),
            "SCREENVISIT_LOG_LEVEL": "warning",
        }
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--no-demo",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert server.stdout is not None
        await server.stdout.readline()
        create = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "visit",
            "create",
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        links = json.loads((await create.communicate())[0])["links"]
        bots = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.cli",
                "bot",
                links[role],
                "--json",
                "--seconds",
                str(seconds),
                "--width",
                str(width),
                "--height",
                str(height),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for role in ROLES
        ]
        process = psutil.Process(server.pid)
        # Skip the joins and the first keyframes, then measure the steady call.
        await asyncio.sleep(min(5.0, seconds / 3))
        cpu0, t0 = sum(process.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(seconds - min(5.0, seconds / 3) - 2)
        cpu1, t1 = sum(process.cpu_times()[:2]), time.monotonic()
        reports = [json.loads((await bot.communicate())[0]) for bot in bots]
        server.send_signal(signal.SIGTERM)
        await server.wait()
    print(f"three-way room, bots at {width}x{height}@30 + Opus, {seconds:.0f} s")
    for report in reports:
        for remote in report["remotes"]:
            print(
                f"  {report['role']:8s} <- {remote['role']:8s} video {remote['video_frames']:5d} "
                f"frames {remote['resolution']}, audio {remote['audio_frames']:5d} frames"
            )
    print(f"server CPU-seconds per second: {(cpu1 - cpu0) / (t1 - t0):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.width, args.height))
