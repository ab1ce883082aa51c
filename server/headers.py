"""Security headers on every response: no MIME sniffing everywhere, HSTS when the client
reached us over TLS (directly, or through a trusted reverse proxy that says so)."""

from __future__ import annotations

from aiohttp import web

from server import appkeys

#: Two years, as the HSTS preload list asks; no includeSubDomains: other hosts of the
#: organisation's domain are not ours to decide for.
HSTS = "max-age=63072000"


def page_policy(frame_ancestors: str) -> str:
    """The pages' Content-Security-Policy: nothing from another host; framed only by the
    configured ancestors (an EHR that embeds the visit), by default by no one."""
    return (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; "
        f"connect-src 'self'; style-src 'self'; frame-ancestors {frame_ancestors}"
    )


def reached_over_tls(request: web.Request) -> bool:
    if request.secure:
        return True
    if request.remote not in request.app[appkeys.SETTINGS].trusted_proxies:
        return False
    # The nearest proxy appends last; it is the one we trust.
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto == "https"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for handlers' responses, errors and static files alike."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if reached_over_tls(request):
        response.headers["Strict-Transport-Security"] = HSTS
