"""Every message a three-way bot call exchanges, both ways, validates against its schema in the
AsyncAPI document (recorded by a proxy between the bots and a real server). The call lasts until
every bot sees the other two, then the host's organisation ends it over the API."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import jsonschema
from aiohttp.test_utils import TestServer

from signaling.asyncapi import asyncapi_document, message_schema
from signaling.bot import Bot, BotOptions
from tests.support.bots import seeing_each_other
from tests.support.identity import make_identities
from tests.support.servers import RunningServer, start_server
from tests.support.waiting import until
from tests.support.wsproxy import RecordingProxy

ROLES = ("citizen", "nurse", "gp")
#: Small pictures: the messages are what is under test. `seconds` is only an upper bound: the
#: visit is ended once the bots see each other.
OPTIONS = BotOptions(
    seconds=90.0, ice_hosts=("127.0.0.1",), width=160, height=120, fps=15, admit_all=True
)


def _through(link: str, port: int) -> str:
    parts = urlsplit(link)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def end_visit(server: RunningServer, visit: str) -> None:
    headers = {"Authorization": f"Bearer {server.staff_token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.base_url}/api/visits/{visit}/end", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


async def test_a_three_way_call_keeps_to_the_asyncapi_document(tmp_path: Path) -> None:
    identities = make_identities(tmp_path / "idp")
    server = await start_server(
        tmp_path, env={"SCREENVISIT_TRUST_FILE": str(identities.trust_file)}
    )
    proxy = RecordingProxy(f"ws://127.0.0.1:{server.port}/ws")
    proxied = TestServer(proxy.app, host="127.0.0.1")
    await proxied.start_server()
    try:
        visit = await server.create_visit()  # a citizen, a nurse and the gp, who hosts
        assert proxied.port is not None
        links = [_through(visit["links"][role], proxied.port) for role in ROLES]
        bots = [Bot(link, OPTIONS) for link in links]
        runs = [asyncio.create_task(bot.run()) for bot in bots]
        await until(seeing_each_other(bots), 60, "three bots seeing each other")
        await end_visit(server, visit["visit"])
        async with asyncio.timeout(30):
            reports = await asyncio.gather(*runs)
    finally:
        await proxied.close()
        assert await server.stop() == 0
    assert not any(r.errors for r in reports), [r.errors for r in reports]
    assert all(r.join_seconds is not None and len(r.remotes) == 2 for r in reports), reports
    document = asyncapi_document()
    seen: Counter[tuple[str, str]] = Counter()
    for direction, text in proxy.frames:
        message = json.loads(text)
        schema = message_schema(document, direction, message["type"])
        jsonschema.Draft202012Validator(schema).validate(message)
        seen[(direction, message["type"])] += 1
    assert {
        ("up", "join"),
        ("up", "offer"),
        ("down", "joined"),
        ("down", "answer"),
        ("down", "participant-joined"),
        ("down", "tracks"),
        ("down", "visit-ended"),
    } <= set(seen), seen
    assert seen[("up", "join")] == len(ROLES)
