"""Every message a three-way bot call exchanges, both ways, validates against its schema in the
AsyncAPI document (recorded by a proxy between the bots and a real server)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jsonschema
from aiohttp.test_utils import TestServer

from signaling.asyncapi import asyncapi_document, message_schema
from signaling.bot import BotOptions, run_bot
from tests.support.identity import make_identities
from tests.support.servers import start_server
from tests.support.wsproxy import RecordingProxy

ROLES = ("citizen", "nurse", "gp")
#: Small pictures for a short call: the messages are what is under test.
OPTIONS = BotOptions(
    seconds=3.0, ice_hosts=("127.0.0.1",), width=160, height=120, fps=15, admit_all=True
)


def _through(link: str, port: int) -> str:
    parts = urlsplit(link)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


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
        reports = await asyncio.gather(*(run_bot(link, OPTIONS) for link in links))
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
    } <= set(seen), seen
    assert seen[("up", "join")] == len(ROLES)
