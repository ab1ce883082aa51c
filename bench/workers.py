"""How `serve --workers N` spreads visits and CPU over its workers, under light-bot load.

    python3 -m bench.workers [--workers 2] [--rooms 4] [--seconds 15]
    python3 -m bench.workers --workers 1 --rooms 4     # the same load on one worker

A private redis-server (free port) holds the workers' shared state; the rooms are booked in one
burst (every worker's heartbeat says load 0 then), three light bots (`--no-decode`) join each,
and once every bot's session runs, over `--seconds`, the CPU of each worker process is read
(psutil, user + system). Printed per worker: the visits it hosts (from the leases in Redis),
its CPU-seconds per second and its share of the workers' total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.media_forwarding import ROLES, _cli, _cpu, _create_visit
from bench.three_way_room import free_port

#: After every bot has joined, let keyframes and bitrate estimates settle.
SETTLE_SECONDS = 3.0


async def _until(check: Callable[[], Awaitable[object]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def run(workers: int, rooms: int, window: float, width: int, height: int) -> None:
    redis_port = free_port()
    redis_server = await asyncio.create_subprocess_exec(
        "redis-server",
        *("--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.DEVNULL,
    )
    redis = Redis(port=redis_port, decode_responses=True)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        env = {
            **os.environ,
            "SCREENVISIT_DATA_DIR": str(Path(tmp) / "data"),
            "SCREENVISIT_PORT": str(free_port()),
            "SCREENVISIT_HOST": "127.0.0.1",
            "SCREENVISIT_ICE_HOSTS": "127.0.0.1",
            "SCREENVISIT_LOG_LEVEL": "warning",
            "SCREENVISIT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SCREENVISIT_NODE_ID": "bench",
        }
        server = await asyncio.create_subprocess_exec(
            *_cli("serve", "--no-demo", *(("--workers", str(workers)) if workers > 1 else ())),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        bots: list[asyncio.subprocess.Process] = []
        try:

            async def answers() -> bool:
                try:
                    return bool(await redis.ping())
                except (OSError, RedisError):
                    return False

            await _until(answers, 10, "redis")
            assert server.stdout is not None
            line = await asyncio.wait_for(server.stdout.readline(), timeout=120)
            if b"listening on" not in line:
                raise RuntimeError(f"the server did not start: {line!r}")

            async def registered() -> bool:
                return len(await redis.keys("screenvisit:node:bench*")) >= workers

            await _until(registered, 120, "every worker to register")
            visits = await asyncio.gather(*(_create_visit(env, None) for _ in range(rooms)))
            owners = [await redis.get(f"screenvisit:visit:{v['visit']}:node") for v in visits]
            for visit in visits:
                for index, role in enumerate(ROLES):
                    bots.append(
                        await asyncio.create_subprocess_exec(
                            *_cli("bot", visit["links"][role], "--json", "--seconds", "600"),
                            *("--width", str(width), "--height", str(height)),
                            *("--hue", str(80 * index), "--no-decode"),
                            env=env,
                            stdout=asyncio.subprocess.DEVNULL,
                            stderr=asyncio.subprocess.DEVNULL,
                        )
                    )
            processes = (
                psutil.Process(server.pid).children()
                if workers > 1
                else [psutil.Process(server.pid)]
            )
            names = {p.pid: p.environ().get("SCREENVISIT_NODE_ID", "bench") for p in processes}

            async def everyone_in() -> bool:
                keys = await redis.keys("screenvisit:node:*")
                records = [str(await redis.get(key) or "") for key in keys]
                load = sum(json.loads(r)["load"] for r in records if r.startswith("{"))
                return load >= 3 * rooms

            # Measured once every participant's session runs (the workers' heartbeats say so).
            await _until(everyone_in, 120, "every bot to join")
            await asyncio.sleep(SETTLE_SECONDS)
            cpu0, t0 = {p.pid: _cpu(p) for p in processes}, time.monotonic()
            await asyncio.sleep(window)
            cpu1, t1 = {p.pid: _cpu(p) for p in processes}, time.monotonic()
            for bot in bots:
                bot.send_signal(signal.SIGTERM)
            await asyncio.gather(*(bot.wait() for bot in bots))
        finally:
            for bot in bots:
                if bot.returncode is None:
                    bot.kill()
                    await bot.wait()
            if server.returncode is None:
                server.send_signal(signal.SIGTERM)
                await asyncio.wait_for(server.wait(), timeout=60)
            await redis.aclose()
            redis_server.terminate()
            await redis_server.wait()
    rates = {names[pid]: (cpu1[pid] - cpu0[pid]) / (t1 - t0) for pid in cpu0}
    total = sum(rates.values()) or 1e-9
    print(
        f"--workers {workers}: {rooms} three-way rooms booked in a burst, light bots "
        f"{width}x{height}, {t1 - t0:.1f} s window, {psutil.cpu_count()} cores"
    )
    print(f"{'worker':12s} {'visits':>6s} {'CPU s/s':>8s} {'share':>6s}")
    for name in sorted(rates):
        hosted = sum(1 for owner in owners if owner == name) if workers > 1 else rooms
        print(f"{name:12s} {hosted:6d} {rates[name]:8.3f} {100 * rates[name] / total:5.0f}%")
    least = 100 * min(rates.values()) / total
    print(f"total CPU s/s {total:.3f}; least loaded worker's share {least:.0f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)
    asyncio.run(run(args.workers, args.rooms, args.seconds, args.width, args.height))


if __name__ == "__main__":
    main(sys.argv[1:])
