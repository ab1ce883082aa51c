"""Run the same tests on the memory store and on the real Redis server.

Each Redis test gets a unique random key prefix on the server named by
`SCREENVISIT_TEST_REDIS_URL` (default below); its keys are deleted afterwards. A Redis server that
cannot be reached fails the tests: it is never skipped and never mocked.

In a test module, bind the fixtures under their own names:
`store_backend = storebackends.store_backend` (and `visit_store`, `redis_backend`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from redis.asyncio import Redis, from_url

from rooms.redis_store import RedisVisitStore
from rooms.store import MemoryVisitStore, VisitStore

STORE_BACKENDS = ("memory", "redis")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    return os.environ.get("SCREENVISIT_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def redis_client() -> Redis:
    return from_url(redis_url(), decode_responses=True)


@dataclass
class StoreBackend:
    """Where one test's visits live. `open_node` opens another server node's view of them."""

    name: str
    prefix: str
    ended_ttl_seconds: int = 3600
    _memory: MemoryVisitStore = field(default_factory=MemoryVisitStore)
    _opened: list[VisitStore] = field(default_factory=list)

    async def open_node(self, *, max_attempts: int = 10) -> VisitStore:
        """A store on the same data: for Redis its own client (as on another node); the memory
        store is single-node, so every node is the same store."""
        if self.name == "memory":
            return self._memory
        store = RedisVisitStore(
            redis_client(),
            self.prefix,
            ended_ttl_seconds=self.ended_ttl_seconds,
            max_attempts=max_attempts,
        )
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            await store.close()
        self._opened.clear()


async def delete_prefixed(prefix: str) -> None:
    client = redis_client()
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def store_backend_for(name: str) -> AsyncIterator[StoreBackend]:
    """A fresh, empty location for backend `name`; for Redis its keys are deleted afterwards."""
    if name not in STORE_BACKENDS:
        raise ValueError(f"unknown store backend {name!r}")
    backend = StoreBackend(name, prefix=f"sv-test-{uuid4().hex}:")
    try:
        yield backend
    finally:
        await backend.close_all()
        if name == "redis":
            await delete_prefixed(backend.prefix)


@pytest.fixture(params=STORE_BACKENDS)
async def store_backend(request: pytest.FixtureRequest) -> AsyncIterator[StoreBackend]:
    async with store_backend_for(request.param) as backend:
        yield backend


@pytest.fixture
async def visit_store(store_backend: StoreBackend) -> VisitStore:
    return await store_backend.open_node()


@pytest.fixture
async def redis_backend() -> AsyncIterator[StoreBackend]:
    """For the few tests of what only Redis does (expiry, retries)."""
    async with store_backend_for("redis") as backend:
        yield backend
