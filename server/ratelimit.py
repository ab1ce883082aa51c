"""Failed authentications per client address, in a sliding window.

`FailureLimiter` counts on this node; `RedisFailureLimiter` counts across every node that shares
its Redis (a script trying tokens is limited wherever its connections land), and falls back to
counting on this node while Redis is unreachable.

Both count by `rate_key`: an IPv4 address, or an IPv6 address's /64. One subscriber commonly
holds a whole /64, so counting its addresses one by one would let a script rotate through them.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections import deque
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

FAILURES_KEY = "{prefix}auth-failures:{address}"  # sorted set: one member per failure, by time
IPV6_PREFIX = 64
#: The longest key `rate_key` returns for text that is not an IP address (a hop named by a
#: trusted proxy's X-Forwarded-For).
MAX_KEY_CHARS = 48


def rate_key(address: str | None) -> str | None:
    """What limits count by: the IPv4 address, or the /64 of an IPv6 address (an IPv4-mapped one
    counts as its IPv4 address); anything else as given, cut short."""
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:MAX_KEY_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class AuthFailureLimiter(Protocol):
    async def blocked(self, address: str | None) -> bool: ...

    async def failure(self, address: str | None) -> None: ...


class FailureLimiter:
    """After `max_failures` failures within `window` seconds, an address is refused until the
    oldest of them ages out. Only failures count, so a person who mistypes nothing is never
    limited; a script trying tokens is."""

    def __init__(
        self, max_failures: int, window: float = 60.0, max_addresses: int = 10_000
    ) -> None:
        self._max = max_failures
        self._window = window
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    async def blocked(self, address: str | None) -> bool:
        address = rate_key(address)
        if address is None or self._max <= 0:
            return False
        failures = self._failures.get(address)
        if failures is None:
            return False
        self._expire(failures, time.monotonic())
        return len(failures) >= self._max

    async def failure(self, address: str | None) -> None:
        address = rate_key(address)
        if address is None or self._max <= 0:
            return
        now = time.monotonic()
        if address not in self._failures and len(self._failures) >= self._max_addresses:
            self._sweep(now)
        failures = self._failures.setdefault(address, deque())
        self._expire(failures, now)
        failures.append(now)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self._window:
            failures.popleft()

    def _sweep(self, now: float) -> None:
        for address in list(self._failures):
            self._expire(self._failures[address], now)
            if not self._failures[address]:
                del self._failures[address]
        while len(self._failures) >= self._max_addresses:
            self._failures.pop(next(iter(self._failures)))


class RedisFailureLimiter:
    """The same rule as FailureLimiter, counted in Redis for all nodes."""

    def __init__(self, client: Redis, max_failures: int, prefix: str, window: float = 60.0) -> None:
        self._client = client
        self._max = max_failures
        self._prefix = prefix
        self._window = window
        self._fallback = FailureLimiter(max_failures, window)

    def _key(self, address: str) -> str:
        return FAILURES_KEY.format(prefix=self._prefix, address=rate_key(address))

    async def blocked(self, address: str | None) -> bool:
        if address is None or self._max <= 0:
            return False
        key = self._key(address)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", time.time() - self._window)
                pipe.zcard(key)
                _removed, count = await pipe.execute()
        except (RedisError, OSError):
            return await self._fallback.blocked(address)
        return int(count) >= self._max

    async def failure(self, address: str | None) -> None:
        if address is None or self._max <= 0:
            return
        await self._fallback.failure(address)
        key, now = self._key(address), time.time()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {uuid.uuid4().hex: now})
                pipe.zremrangebyscore(key, "-inf", now - self._window)
                pipe.expire(key, int(self._window) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("auth failures counted on this node only (%s)", type(exc).__name__)

    async def close(self) -> None:
        await self._client.aclose()
