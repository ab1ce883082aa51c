"""HTML pages: the join page that every invite link opens, and a small landing page."""

from __future__ import annotations

from aiohttp import web

from server import appkeys
from server.headers import page_policy

LANGUAGES = ("da", "en")


def _render(request: web.Request, template: str, **context: object) -> web.Response:
    lang = request.query.get("lang", "da")
    if lang not in LANGUAGES:
        lang = "da"
    html = request.app[appkeys.TEMPLATES].get_template(template).render(lang=lang, **context)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            # Nothing is loaded from another host; the token in the fragment never leaves the page.
            "Content-Security-Policy": page_policy(request.app[appkeys.SETTINGS].frame_ancestors),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


async def join_page(request: web.Request) -> web.Response:
    return _render(request, "join.html", visit=request.match_info["visit"])


async def evaluation_page(request: web.Request) -> web.Response:
    return _render(request, "evaluation.html")


async def landing_page(request: web.Request) -> web.Response:
    return _render(request, "index.html")


def setup_page_routes(app: web.Application) -> None:
    app.router.add_get("/", landing_page)
    app.router.add_get("/v/{visit}", join_page)
    app.router.add_get("/evaluation", evaluation_page)
