"""Several server nodes sharing a private redis-server (which a test may stop, kill and start
again without touching the machine's shared Redis) and a fresh PostgreSQL database.

In a test module: `from tests.support.cluster import postgres_url, redis_server` and list them
in `__all__` (they are fixtures).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.sql import Database
from tests.sqlbackends import backend_for
from tests.support.servers import RunningServer, free_port, start_server

#: The nodes' registration lifetime in these tests (the default is 6 s): a node silent this long
#: is dead. Short, so that faults that outlast it (a Redis outage, a paused node) are short too;
#: its heartbeat (a third of it) still leaves room for a loaded machine.
NODE_TTL = 4.0


@dataclass
class PrivateRedis:
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = Redis(port=self.port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, RedisError):
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def redis_server() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    await server.start()
    yield server
    await server.kill()


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    async with backend_for("postgresql", tmp_path) as location:
        assert location.url is not None
        yield location.url


async def start_node(
    tmp: Path, name: str, redis_url: str, database_url: str, **env: str
) -> RunningServer:
    """A node of the deployment; every node shares the data folder (the signing key)."""
    return await start_server(
        tmp,
        log_name=f"{name}.log",
        env={
            "SCREENVISIT_REDIS_URL": redis_url,
            "SCREENVISIT_DATABASE_URL": database_url,
            "SCREENVISIT_NODE_ID": name,
            "SCREENVISIT_NODE_TTL": str(NODE_TTL),
            "SCREENVISIT_DRAIN_TIMEOUT": "3",
            **env,
        },
    )


def on_node(link: str, node: RunningServer) -> str:
    """The same invite link, opened through another node (as a load balancer would send it)."""
    scheme, rest = link.split("://", 1)
    return f"{scheme}://127.0.0.1:{node.port}/{rest.split('/', 1)[1]}"


async def events_of(db: Database, visit: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT kind, participant, data FROM events WHERE visit = ? ORDER BY id", visit
    )
    return [(str(r[0]), r[1], json.loads(r[2]) if r[2] else {}) for r in rows]


async def owner(redis_url: str, visit: str) -> str | None:
    """The node the visit is placed on, as Redis says."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        node = await redis.get(f"screenvisit:visit:{visit}:node")
        return None if node is None else str(node)
    finally:
        await redis.aclose()
