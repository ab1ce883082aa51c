"""Slow and piled-up clients against a real server process: half-open requests are closed
within the header timeout, slow bodies within the body timeout, one address cannot hold more
than its share of connections, and other clients are served all along."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.servers import RunningServer, start_server

HALF_OPEN = b"GET /healthz HTTP/1.1\r\nHost: screenvisit\r\nX-Slow: "


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        tmp_path,
        "--http-header-timeout",
        "2",
        "--http-body-timeout",
        "2",
        "--http-connections-per-address",
        "20",
    )
    yield running
    await running.stop()


class HalfOpen:
    """A connection that sends part of a request and then nothing: when did the server close
    it (seconds after it was opened), if it did."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened = time.monotonic()
        self.reader, self.writer = reader, writer
        self.closed_after: float | None = None
        self.received = b""
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        try:
            while data := await self.reader.read(4096):
                self.received += data
        except ConnectionError:
            pass
        self.closed_after = time.monotonic() - self.opened

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def half_open(port: int, source: str, request: bytes = HALF_OPEN) -> HalfOpen:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(request)
    await writer.drain()
    return HalfOpen(reader, writer)


async def open_many(port: int, count: int, sources: list[str]) -> list[HalfOpen]:
    made: list[HalfOpen] = []
    for start in range(0, count, 100):
        batch = [
            half_open(port, sources[i % len(sources)])
            for i in range(start, min(count, start + 100))
        ]
        made += await asyncio.gather(*batch)
    return made


async def served_seconds(server: RunningServer, source: str = "127.0.0.2") -> float:
    """How long a normal client from `source` waits for /healthz."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(server.base_url + "/healthz") as response,
    ):
        assert response.status == 200
        await response.read()
    return time.monotonic() - started


async def wait_closed(connections: list[HalfOpen], timeout: float) -> None:
    await asyncio.wait([c.task for c in connections], timeout=timeout)


def sources(count: int, first: int = 10) -> list[str]:
    return [f"127.0.{n // 250}.{n % 250 + 1}" for n in range(first, first + count)]


async def test_half_open_requests_are_closed_after_the_header_timeout(
    strict: RunningServer,
) -> None:
    connections = await open_many(strict.port, 200, sources(20))  # 10 per address
    try:
        # Held, not refused: the cap is 20 per address.
        await asyncio.sleep(0)
        assert await served_seconds(strict) < 2
        await wait_closed(connections, timeout=15)
        closed = [c.closed_after for c in connections]
    finally:
        for c in connections:
            c.close()
    assert None not in closed, f"{closed.count(None)} of 200 half-open connections still open"
    assert max(c for c in closed if c is not None) < 2 + 3


async def test_headers_trickling_in_do_not_extend_the_deadline(strict: RunningServer) -> None:
    """Slowloris proper: a byte of header every half second keeps no connection alive."""
    connection = await half_open(strict.port, "127.0.0.8", b"GET / HTTP/1.1\r\n")
    try:
        while connection.closed_after is None and time.monotonic() - connection.opened < 15:
            connection.writer.write(b"X")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(connection.task), timeout=0.5)
        closed_after = connection.closed_after
    finally:
        connection.close()
    assert closed_after is not None and closed_after < 2 + 3


async def test_websockets_do_not_count_against_the_per_address_cap(
    strict: RunningServer,
) -> None:
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.9", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = [await http.ws_connect(strict.base_url + "/ws") for _ in range(30)]
        try:
            assert await served_seconds(strict, "127.0.0.9") < 2
        finally:
            for ws in sockets:
                await ws.close()


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (b"/api/visits", b'"code": "http-408"'),
        # Under /fhir an OperationOutcome, as for every other refusal there.
        (b"/fhir/Appointment", b'"resourceType": "OperationOutcome"'),
    ],
)
async def test_a_body_that_never_comes_is_cut_off(
    strict: RunningServer, path: bytes, says: bytes
) -> None:
    request = (
        b"POST " + path + b" HTTP/1.1\r\nHost: screenvisit\r\n"
        b"Content-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"kind": '
    )
    connection = await half_open(strict.port, "127.0.0.3", request)
    try:
        await wait_closed([connection], timeout=15)
        closed_after = connection.closed_after
    finally:
        connection.close()
    assert closed_after is not None and closed_after < 2 + 3
    assert connection.received.startswith(b"HTTP/1.1 408 ")
    assert says in connection.received


async def test_one_address_cannot_hold_more_than_its_share(strict: RunningServer) -> None:
    connections = await open_many(strict.port, 60, ["127.0.0.4"])
    try:
        # Connections over the cap are closed at once, long before the header timeout.
        await wait_closed(connections[20:], timeout=1.5)
        refused = [c for c in connections if c.closed_after is not None and c.closed_after < 1.5]
        assert await served_seconds(strict, "127.0.0.5") < 2
    finally:
        for c in connections:
            c.close()
    assert len(refused) == 40


async def test_a_flood_of_1500_half_open_requests(tmp_path: Path) -> None:
    """Default settings; the flood comes from 30 addresses (50 each), under the per-address cap,
    as a distributed attacker would. Prints the figures."""
    server = await start_server(tmp_path)
    try:
        flood = await open_many(server.port, 1500, sources(30, first=300))
        during = [await served_seconds(server) for _ in range(3)]
        await wait_closed(flood, timeout=40)
    finally:
        for c in flood:
            c.close()
        await server.stop()
    closed = [c.closed_after for c in flood if c.closed_after is not None]
    print(
        f"1500 half-open: {len(closed)} closed by the server, the last after"
        f" {max(closed, default=float('nan')):.1f} s; a normal client was served in"
        f" {max(during):.2f} s during the flood"
    )
    assert len(closed) == 1500
    assert max(closed) < 30
    assert max(during) < 5
