"""The client's address as the audit log and the rate limiter see it."""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web


def client_address(request: web.Request, trusted_proxies: Collection[str]) -> str | None:
    """The peer address, or, behind a trusted reverse proxy, the last address in
    X-Forwarded-For that is not itself a trusted proxy."""
    remote = request.remote
    if remote not in trusted_proxies:
        return remote
    forwarded = request.headers.get("X-Forwarded-For", "")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if hop not in trusted_proxies:
            return hop
    return remote
