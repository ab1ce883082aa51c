"""The app factory: each resource made in its own cleanup_ctx entry, torn down in reverse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from importlib import resources

import jinja2
from aiohttp import web

from media.sfu import Sfu
from rooms.eventlog import SqliteEventLog
from rooms.store import MemoryVisitStore
from server import appkeys
from server.auth import TokenIssuer, TokenVerifier
from server.config import Settings
from server.http_api import error_middleware, setup_api_routes
from server.keys import load_or_create_signing_key
from server.pages import setup_page_routes
from signaling.hub import HubRegistry
from signaling.services import SignalingServices

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=256 * 1024)
    app[appkeys.SETTINGS] = settings
    app[appkeys.TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.cleanup_ctx.append(_keys)
    app.cleanup_ctx.append(_events)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_sfu)
    app.cleanup_ctx.append(_signaling)
    setup_api_routes(app)
    setup_page_routes(app)
    app.router.add_static("/static", str(resources.files("web") / "static"))
    return app


async def _keys(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    key = await asyncio.to_thread(load_or_create_signing_key, settings.key_path)
    issuer = TokenIssuer(settings.issuer, settings.audience, key)
    verifier = TokenVerifier(settings.audience)
    verifier.add_issuer(issuer.trusted())
    app[appkeys.ISSUER] = issuer
    app[appkeys.VERIFIER] = verifier
    yield


async def _events(app: web.Application) -> AsyncIterator[None]:
    events = SqliteEventLog(app[appkeys.SETTINGS].database_path)
    await events.open()
    app[appkeys.EVENTS] = events
    yield
    await events.close()


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.STORE] = MemoryVisitStore()
    yield


async def _sfu(app: web.Application) -> AsyncIterator[None]:
    sfu = Sfu(app[appkeys.SETTINGS].media())
    app[appkeys.SFU] = sfu
    yield
    await sfu.close()


async def _signaling(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    services = SignalingServices(
        authenticator=app[appkeys.VERIFIER],
        store=app[appkeys.STORE],
        events=app[appkeys.EVENTS],
        sfu=app[appkeys.SFU],
        browser_ice_servers=[s.to_browser() for s in settings.ice_servers],
    )
    hubs = HubRegistry(services)
    app[appkeys.SIGNALING] = services
    app[appkeys.HUBS] = hubs
    yield
    await hubs.close()
