from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from rooms.principal import Principal
from rooms.roles import Role, Sector
from rooms.visit import Visit, VisitKind
from server import appkeys
from server.app import create_app
from server.config import Settings
from server.visits import book_visit, invite_links
from tests.support.servers import RunningServer, start_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", ice_hosts=("127.0.0.1",))


@pytest.fixture
async def client(
    aiohttp_client: object, settings: Settings
) -> TestClient[web.Request, web.Application]:
    make = aiohttp_client
    test_client: TestClient[web.Request, web.Application] = await make(create_app(settings))  # type: ignore[operator]
    return test_client


def host_principal(org: str = "demo") -> Principal:
    return Principal(
        subject="gp-1", issuer="test", role=Role.GP, sector=Sector.GENERAL_PRACTICE, org=org
    )


async def book(
    app: web.Application,
    *roles: Role,
    waiting_room: bool = False,
    kind: VisitKind = VisitKind.CONSULTATION,
) -> tuple[Visit, dict[str, str]]:
    """Book a visit in-process; return it with a token per role. No waiting room unless asked."""
    seats = [(role, None, None) for role in roles or (Role.CITIZEN, Role.NURSE, Role.GP)]
    visit = await book_visit(app, host_principal(), kind, seats, waiting_room=waiting_room)
    tokens = {entry["role"]: entry["url"].split("#", 1)[1] for entry in invite_links(app, visit)}
    return visit, tokens


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, "--quality-interval", "1")
    yield running
    await running.stop()


__all__ = ["appkeys", "book", "host_principal"]
