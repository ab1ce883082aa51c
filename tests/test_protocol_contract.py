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
from tests.support.identity import make_identities
from tests.support.servers import run_bot, start_server
from tests.support.wsproxy import RecordingProxy

ROLES = ("citizen", "nurse", "gp")
SECONDS = 4.0


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
        reports = await asyncio.gather(*(run_bot(link, SECONDS, "--admit-all") for link in links))
    finally:
        await proxied.close()
        assert await server.stop() == 0
    assert all(r["exit_code"] == 0 for r in reports), reports
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
