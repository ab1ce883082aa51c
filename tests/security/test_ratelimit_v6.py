"""Rate limits per IPv6 /64: rotating addresses inside one /64 does not get round them."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.app import create_app
from server.config import Settings
from server.ratelimit import AuthFailureLimiter, FailureLimiter, RedisFailureLimiter, rate_key

Client = TestClient[web.Request, web.Application]


def test_rate_key_groups_ipv6_by_64_and_keeps_ipv4() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert rate_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("203.0.113.7") == "203.0.113.7"
    assert rate_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert rate_key(None) is None
    assert len(rate_key("not-an-address" * 100) or "") <= 64


async def _rotating_addresses_are_one_address(limiter: AuthFailureLimiter) -> None:
    for i in range(3):
        await limiter.failure(f"2001:db8:5:6::{i + 1:x}")
    assert await limiter.blocked("2001:db8:5:6:dead:beef:0:1")
    assert not await limiter.blocked("2001:db8:5:7::1")


async def test_memory_limiter_counts_a_64_as_one_address() -> None:
    await _rotating_addresses_are_one_address(FailureLimiter(3))


async def test_redis_limiter_counts_a_64_as_one_address() -> None:
    client = Redis(host="127.0.0.1", port=6379)
    limiter = RedisFailureLimiter(client, 3, prefix=f"test-{secrets.token_hex(4)}:")
    try:
        await _rotating_addresses_are_one_address(limiter)
    finally:
        await limiter.close()


async def test_a_script_rotating_through_a_64_behind_a_proxy_is_limited(
    aiohttp_client: Any, settings: Settings
) -> None:
    configured = replace(settings, auth_failures_per_minute=3, trusted_proxies=("127.0.0.1",))
    client: Client = await aiohttp_client(create_app(configured))
    codes = []
    for i in range(5):
        address = f"2001:db8:77:1:{secrets.token_hex(2)}::{i + 1:x}"
        response = await client.post(
            "/api/visits",
            json={},
            headers={"Authorization": "Bearer nope", "X-Forwarded-For": address},
        )
        codes.append(response.status)
    assert codes == [401, 401, 401, 429, 429]
    # Another /64 is not affected.
    response = await client.post(
        "/api/visits",
        json={},
        headers={"Authorization": "Bearer nope", "X-Forwarded-For": "2001:db8:77:2::1"},
    )
    assert response.status == 401
