"""A socket that floods is slowed, then closed; a socket that cannot keep up is closed, and its
close reaches it. The others in the visit notice nothing but the flooder leaving."""

from __future__ import annotations

import aiohttp

from server import appkeys
from signaling.limits import ANY, Rate
from tests.conftest import book
from tests.security.sockets import Client, StallingProxy, closed_with, join, next_of
from tests.support.flood import chat_until_one_is_dropped


async def test_a_chat_flood_closes_the_flooder_and_not_the_others(client: Client) -> None:
    visit, tokens = await book(client.app)
    flooder, _ = await join(client, tokens["citizen"], visit.id)
    victim, joined = await join(client, tokens["nurse"], visit.id)
    (flooder_id,) = [p["participant"] for p in joined["participants"]]
    gp, _ = await join(client, tokens["gp"], visit.id)
    await next_of(victim, "participant-joined")  # the gp

    for n in range(300):
        if flooder.closed:
            break
        try:
            await flooder.send_json({"type": "chat", "text": f"spam {n}", "id": f"c{n}"})
        except (ConnectionError, RuntimeError):
            break
    code, seen = await closed_with(flooder)
    errors = [m for m in seen if m["type"] == "error"]
    assert errors, "the flooder was never told to slow down"
    limited = [m for m in errors if m["code"] == "too-many-messages"]
    assert limited and limited[0]["fatal"] is False and limited[0]["retry_after"] > 0
    assert limited[0]["ref"].startswith("c")
    assert (errors[-1]["code"], errors[-1]["fatal"]) == ("flooding", True)
    assert code == 4007

    await gp.send_json({"type": "chat", "text": "still here?"})
    flood_seen = 0
    while True:
        message = await next_of(victim, "chat")
        if message["participant"] == flooder_id:
            flood_seen += 1
            continue
        assert message["text"] == "still here?"
        break
    assert 0 < flood_seen <= 10  # the chat burst, not the flood
    await victim.send_json({"type": "ping", "id": "alive"})
    assert (await next_of(victim, "pong"))["ref"] == "alive"
    assert not victim.closed


async def test_an_over_long_chat_message_is_refused_by_name(client: Client) -> None:
    visit, tokens = await book(client.app)
    nurse, _ = await join(client, tokens["nurse"], visit.id)
    await nurse.send_json({"type": "chat", "text": "x" * 501, "id": "long"})
    error = await next_of(nurse, "error")
    assert (error["code"], error["fatal"]) == ("chat-too-long", False)
    await nurse.send_json({"type": "chat", "text": "x" * 500})
    assert len((await next_of(nurse, "chat"))["text"]) == 500


async def test_a_socket_whose_outbox_fills_is_closed_and_the_close_reaches_it(
    client: Client,
) -> None:
    services = client.app[appkeys.SIGNALING]
    # The sender here stands for many people talking at once: its own chat is not limited.
    services.limits = services.limits.with_rate("chat", Rate(burst=1e6, per_second=1e6))
    services.limits = services.limits.with_rate(ANY, Rate(burst=1e6, per_second=1e6))
    visit, tokens = await book(client.app)
    assert client.port is not None
    proxy = StallingProxy(client.port)
    await proxy.start()
    session = aiohttp.ClientSession()
    try:
        victim = await session.ws_connect(f"http://127.0.0.1:{proxy.port}/ws")
        await victim.send_json({"type": "join", "token": tokens["nurse"], "visit": visit.id})
        victim_id = (await next_of(victim, "joined"))["you"]["participant"]
        sender, _ = await join(client, tokens["gp"], visit.id)

        proxy.stall()
        gone, sent = await chat_until_one_is_dropped(
            sender, letter="y", batch=50, read_timeout=0.01, timeout=60
        )
        assert gone == victim_id

        proxy.resume()
        code, seen = await closed_with(victim, timeout=30)
        assert code == 4002, (code, [m["type"] for m in seen][-5:])
        assert len(seen) < sent
        await sender.send_json({"type": "ping", "id": "after"})
        assert (await next_of(sender, "pong"))["ref"] == "after"
    finally:
        await session.close()
        await proxy.stop()
