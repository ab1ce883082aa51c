"""Remote ICE candidates are checked before the server sends a single datagram to them.

A real call over the signaling socket: the citizen's offer (a real aiortc peer) carries, besides
its own candidate, candidates on other loopback addresses (refused: only 127.0.0.1 is allowed,
as the ICE hosts imply), special-purpose addresses, an mDNS hostname and more candidates than a
peer may have. UDP sockets owned by the test listen on every address it can bind and count what
arrives: the refused ones get nothing, the accepted extra ones do (so the capture works), the
client hears precisely what was refused, and the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from aioice import stun

from media.candidates import MAX_REMOTE_CANDIDATES, CandidatePolicy, RemoteCandidates
from media.client import ClientPeer
from rooms.roles import Role
from tests.conftest import book

Client = TestClient[web.Request, web.Application]
LOOPBACK = ("127.0.0.1",)
#: Above the client's own host candidate (2130706431): checked first unless refused.
FIRST = 2**31 - 1


class Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams += 1


class Listener:
    def __init__(self, host: str, transport: asyncio.DatagramTransport, counter: Counter) -> None:
        self.host, self.transport, self.counter = host, transport, counter

    @property
    def port(self) -> int:
        port: int = self.transport.get_extra_info("sockname")[1]
        return port


async def listen(host: str) -> Listener:
    loop = asyncio.get_running_loop()
    transport, counter = await loop.create_datagram_endpoint(Counter, local_addr=(host, 0))
    return Listener(host, transport, counter)


@pytest.fixture
async def listeners() -> AsyncIterator[dict[str, list[Listener]]]:
    made = {
        "refused-loopback": [await listen(f"127.0.0.{i}") for i in range(2, 10)],
        "extra-allowed": [await listen("127.0.0.1") for _ in range(MAX_REMOTE_CANDIDATES + 5)],
    }
    yield made
    for group in made.values():
        for listener in group:
            listener.transport.close()


def candidate(foundation: int, host: str, port: int, priority: int = FIRST) -> str:
    return f"a=candidate:{foundation} 1 udp {priority} {host} {port} typ host"


def with_candidates(sdp: str, lines: list[str]) -> str:
    """The offer with `lines` after its own candidate in every media section, as a browser
    repeats them (aiortc takes a bundle's candidates from one of its sections)."""
    out: list[str] = []
    added = False
    for line in sdp.split("\r\n"):
        out.append(line)
        if line.startswith("a=candidate:"):
            out.extend(lines)
            added = True
    assert added, "the client offered no candidate"
    return "\r\n".join(out)


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=20)
        assert msg.type is WSMsgType.TEXT, msg
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def join(client: Client, token: str, visit: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    await receive_type(ws, "joined")
    return ws


class Participant:
    """A signaling socket and its media peer; reads the socket as the bot does."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.peer = ClientPeer(ice_hosts=LOOPBACK, width=160, height=120)
        self.errors: list[dict[str, Any]] = []
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["type"] == "answer":
                await self._answers.put(data)
            elif data["type"] == "tracks":
                self.peer.track_map = data["tracks"]
            elif data["type"] == "error":
                self.errors.append(data)

    async def publish(self, extra: list[str]) -> None:
        """Offer (with `extra` candidates) and apply the answer."""
        self.peer.ensure_recv_slots({"audio": 1, "video": 1})
        offer = await self.peer.create_offer()
        await self.ws.send_json(
            {"type": "offer", "sdp": with_candidates(offer, extra), "id": "o-1"}
        )
        answer = await asyncio.wait_for(self._answers.get(), timeout=20)
        self.peer.track_map = answer["tracks"]
        await self.peer.apply_answer(answer["sdp"])

    async def close(self) -> None:
        await self.peer.close()
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def sees_media(peer: ClientPeer) -> bool:
    return any(r.video_frames >= 5 and r.audio_frames >= 5 for r in peer.remotes.values())


async def test_refused_candidates_get_no_datagram_and_the_call_goes_on(
    client: Client, listeners: dict[str, list[Listener]]
) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.GP)
    citizen = Participant(await join(client, tokens["citizen"], visit.id))
    gp = Participant(await join(client, tokens["gp"], visit.id))
    refused_hosts = [
        "10.0.0.1",
        "169.254.169.254",
        "224.0.0.251",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "deadbeef-1234.local",
    ]
    extra = [
        candidate(n, listener.host, listener.port)
        for n, listener in enumerate(listeners["refused-loopback"] + listeners["extra-allowed"])
    ] + [candidate(100 + n, host, 40000 + n) for n, host in enumerate(refused_hosts)]
    accepted = listeners["extra-allowed"][: MAX_REMOTE_CANDIDATES - 1]
    try:
        await gp.publish([])
        await citizen.publish(extra)
        await citizen.peer.wait_until(lambda _: sees_media(citizen.peer), timeout=30)
        await gp.peer.wait_until(lambda _: sees_media(gp.peer), timeout=30)
        # The server checks the highest-priority candidates first: the refused ones, were they
        # not refused, else the accepted extra ones. Either way the capture sees datagrams.
        captured = listeners["refused-loopback"] + listeners["extra-allowed"]
        await wait_for(lambda: any(x.counter.datagrams for x in captured), timeout=20)
    finally:
        await citizen.close()
        await gp.close()

    over_limit = listeners["extra-allowed"][MAX_REMOTE_CANDIDATES - 1 :]
    refused_datagrams = {
        f"{x.host}:{x.port}": x.counter.datagrams
        for x in listeners["refused-loopback"] + over_limit
        if x.counter.datagrams
    }
    print(
        "datagrams to refused candidates:",
        sum(refused_datagrams.values()),
        "; to accepted extra candidates:",
        sum(x.counter.datagrams for x in accepted),
    )
    assert refused_datagrams == {}
    assert any(x.counter.datagrams for x in accepted)
    assert gp.errors == []
    assert [e["code"] for e in citizen.errors] == ["ice-candidate-refused"]
    error = citizen.errors[0]
    assert error["fatal"] is False and error["ref"] == "o-1"
    reasons = {(c["address"], c["port"]): c["reason"] for c in error["candidates"]}
    for listener in listeners["refused-loopback"]:
        assert reasons[(listener.host, listener.port)] == "loopback"
    for listener in over_limit:
        assert reasons[(listener.host, listener.port)] == "too-many-candidates"
    assert reasons[("10.0.0.1", 40000)] == "private"
    assert reasons[("169.254.169.254", 40001)] == "link-local"
    assert reasons[("224.0.0.251", 40002)] == "multicast"
    assert reasons[("0.0.0.0", 40003)] == "unspecified"
    assert reasons[("::1", 40004)] == "loopback"
    assert reasons[("fe80::1", 40005)] == "link-local"
    assert reasons[("deadbeef-1234.local", 40006)] == "mdns-hostname"


@pytest.mark.parametrize(
    ("host", "allowed", "refusal"),
    [
        ("198.51.100.7", (), "private"),  # TEST-NET-2: Python counts it as private
        ("8.8.8.8", (), None),
        ("10.20.1.2", ("10.20.0.0/16",), None),
        ("10.21.1.2", ("10.20.0.0/16",), "private"),
        ("::ffff:127.0.0.1", (), "loopback"),
        ("100.64.0.1", (), "reserved"),  # shared address space (carrier-grade NAT)
        ("224.0.0.1", ("0.0.0.0/0",), "multicast"),  # never, whatever is configured
        ("printer.example", (), "hostname"),
    ],
)
def test_policy(host: str, allowed: tuple[str, ...], refusal: str | None) -> None:
    from media.candidates import parse_networks

    assert CandidatePolicy(parse_networks(allowed)).refusal(host) == refusal


def test_the_limit_holds_across_offers() -> None:
    remote = RemoteCandidates(CandidatePolicy())
    first = "\r\n".join(candidate(n, "8.8.8.8", 1000 + n) for n in range(15))
    second = "\r\n".join(candidate(n, "8.8.8.8", 1000 + n) for n in range(10, 25))
    _, refused = remote.filter_offer(first)
    assert refused == []
    kept, refused = remote.filter_offer(second)
    assert [r.port for r in refused] == [1020, 1021, 1022, 1023, 1024]
    assert kept.count("a=candidate:") == 10


def _ice_credentials(sdp: str) -> tuple[str, str, str, int]:
    """(ufrag, pwd, host, port) of the first media section's ICE agent in `sdp`."""
    ufrag = next(
        line.split(":", 1)[1] for line in sdp.split("\r\n") if line.startswith("a=ice-ufrag:")
    )
    pwd = next(line.split(":", 1)[1] for line in sdp.split("\r\n") if line.startswith("a=ice-pwd:"))
    fields = next(line for line in sdp.split("\r\n") if line.startswith("a=candidate:")).split()
    return ufrag, pwd, fields[4], int(fields[5])


def _binding_request(server_ufrag: str, server_pwd: str, client_ufrag: str) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{server_ufrag}:{client_ufrag}"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(server_pwd.encode())
    request.add_fingerprint()
    return bytes(request)


async def test_checks_from_a_refused_address_are_dropped_unanswered(client: Client) -> None:
    """Peer-reflexive path: a correctly authenticated check arriving from a refused address
    (the offerer knows the credentials; its source may be anything) gets no answer and starts
    no triggered check, where one from an allowed address is answered."""
    visit, tokens = await book(client.app, Role.CITIZEN, Role.GP)
    citizen = Participant(await join(client, tokens["citizen"], visit.id))
    refused = await listen("127.0.0.7")
    allowed = await listen("127.0.0.1")
    try:
        citizen.peer.ensure_recv_slots({"audio": 1, "video": 1})
        offer = await citizen.peer.create_offer()
        client_ufrag = next(
            line.split(":", 1)[1] for line in offer.split("\r\n") if line.startswith("a=ice-ufrag:")
        )
        await citizen.ws.send_json({"type": "offer", "sdp": offer})
        answer = await asyncio.wait_for(citizen._answers.get(), timeout=20)
        ufrag, pwd, host, port = _ice_credentials(answer["sdp"])
        check = _binding_request(ufrag, pwd, client_ufrag)
        # In this order: the server reads its socket in order, so by the time the allowed check
        # is answered, the refused one has been dealt with.
        refused.transport.sendto(check, (host, port))
        allowed.transport.sendto(check, (host, port))
        await wait_for(lambda: allowed.counter.datagrams > 0, timeout=20)
        # A triggered check to a learned peer-reflexive address follows within Ta (20 ms) of
        # connect(); give it the time a slow machine needs, bounded by the allowed side's.
        await wait_for(lambda: allowed.counter.datagrams > 1, timeout=10)
    finally:
        await citizen.close()
        refused.transport.close()
        allowed.transport.close()
    print("datagrams to a refused check source:", refused.counter.datagrams)
    assert refused.counter.datagrams == 0
