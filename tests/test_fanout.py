"""The forwarding path's last step, compiled and in Python: the same datagrams, byte for byte,
from real SRTP sessions onto real UDP sockets."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from pylibsrtp import Policy, Session

from media.config import MediaConfig, parse_fastpath
from media.fanout import (
    DTLS_TX_BYTES,
    DTLS_TX_PACKETS,
    CFanout,
    PyFanout,
    compiled_module,
    make_fanout,
)
from media.sfu import Sfu
from server.config import Settings, SettingsError

#: A subscriber's header template as media.rtpwriter lays it out: mid "1" and abs-send-time.
EXTENDED = (
    bytes([0x90]) + bytes(11) + struct.pack("!HH", 0xBEDE, 2) + b"\x10\x31\x22\xab\xcd\xef\x00\x00"
)
EXTENDED_SEND_TIME_AT = 12 + 4 + 3
PLAIN = bytes([0x80]) + bytes(11)


@dataclass
class Subscriber:
    """A subscriber's end: the socket it receives on, and the SRTP key both ends share."""

    socket: socket.socket
    key: bytes

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()
        return host, port

    def received(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            out.append(self.socket.recv(4096))
        return out


class Wrapped:
    """A transport with no socket behind it (like tests.support.links.Link): datagrams go
    through its `sendto`."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def sendto(self, data: bytes, addr: Any) -> None:
        self._transport.sendto(data, addr)


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    out = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        out.append(Subscriber(sock, os.urandom(30)))
    yield out
    for subscriber in out:
        subscriber.socket.close()


def packets(seed: int) -> list[tuple[int, bytes, int, int, int, int, int, bytes, int]]:
    """(subscriber, template, send time offset, marker | payload type, sequence, timestamp,
    SSRC, payload, send time): every header shape, wrapping numbers, one payload too long."""
    rng = random.Random(seed)
    out = []
    for i in range(60):
        template, at = (EXTENDED, EXTENDED_SEND_TIME_AT) if i % 3 else (PLAIN, -1)
        payload = rng.randbytes(rng.choice((1, 17, 400, 1100, 1180)))
        if i == 30:
            payload = bytes(1400)  # with the header, more than pylibsrtp's buffer holds
        out.append(
            (
                i % 3,
                template,
                at,
                (0x80 if i % 7 == 0 else 0) | rng.choice((96, 111)),
                (0xFFF0 + i) & 0xFFFF,
                (0xFFFFF000 + 3000 * i) & 0xFFFFFFFF,
                rng.getrandbits(32),
                payload,
                rng.getrandbits(24),
            )
        )
    return out


async def run(
    fanout: PyFanout | CFanout, subscribers: list[Subscriber], seed: int, wrapped: bool
) -> tuple[list[list[bytes]], list[dict[str, int]]]:
    """Send `packets(seed)` through `fanout` with fresh sessions (the same keys every run);
    return what each subscriber received and the DTLS counters."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        targets = []
        for index, subscriber in enumerate(subscribers):
            session = Session(Policy(key=subscriber.key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
            udp = Wrapped(transport) if wrapped and index == 1 else transport
            counters = {DTLS_TX_PACKETS: 0, DTLS_TX_BYTES: 0}
            targets.append(fanout.target(udp, subscriber.address, session, counters))
        sent = [0] * len(subscribers)
        for packet in packets(seed):
            to, fields = packet[0], packet[1:]
            fanout.send(targets[to], fields)
            sent[to] += len(fields[0]) + len(fields[6]) <= 1500 - 144
        if isinstance(fanout, CFanout):
            fanout.flush()
        received = [s.received(n) for s, n in zip(subscribers, sent, strict=True)]
        return received, [target.counters for target in targets]
    finally:
        transport.close()


@pytest.mark.parametrize("wrapped", [False, True], ids=["socket", "transport"])
async def test_compiled_and_python_send_the_same_datagrams(
    subscribers: list[Subscriber], wrapped: bool
) -> None:
    compiled = make_fanout("on")
    assert isinstance(compiled, CFanout)
    python = PyFanout()
    got_python, counters_python = await run(python, subscribers, 1, wrapped)
    got_compiled, counters_compiled = await run(compiled, subscribers, 1, wrapped)
    assert got_compiled == got_python
    assert counters_compiled == counters_python
    assert compiled.unsendable == python.unsendable == 1
    assert compiled.batches == 1
    # ...and they are the headers and payloads asked for, for the subscriber's keys.
    expected = packets(1)
    for index, subscriber in enumerate(subscribers):
        inbound = Session(Policy(key=subscriber.key, ssrc_type=Policy.SSRC_ANY_INBOUND))
        mine = [p for p in expected if p[0] == index and len(p[1]) + len(p[7]) <= 1356]
        assert len(mine) == len(got_python[index])
        for datagram, (_, template, at, mpt, seq, ts, ssrc, payload, send_time) in zip(
            got_python[index], mine, strict=True
        ):
            plain = inbound.unprotect(datagram)
            assert plain[:12] == struct.pack("!BBHLL", template[0], mpt, seq, ts, ssrc)
            if at >= 0:
                assert plain[at : at + 3] == send_time.to_bytes(3, "big")
                assert plain[12:at] == template[12:at]
            assert plain[len(template) :] == payload


def test_the_same_on_uvloop_whose_transports_the_compiled_path_writes_past(
    subscribers: list[Subscriber],
) -> None:
    async def both() -> None:
        python = await run(PyFanout(), subscribers, 2, wrapped=False)
        compiled = make_fanout("on")
        assert await run(compiled, subscribers, 2, wrapped=False) == python
        assert isinstance(compiled, CFanout) and compiled.batches == 1

    uvloop.run(both())


async def test_one_flush_per_loop_iteration(subscribers: list[Subscriber]) -> None:
    fanout = make_fanout("on")
    assert isinstance(fanout, CFanout)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        session = Session(Policy(key=subscribers[0].key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        counters = {DTLS_TX_PACKETS: 0, DTLS_TX_BYTES: 0}
        target = fanout.target(transport, subscribers[0].address, session, counters)
        for seq in range(5):
            fanout.send(target, (PLAIN, -1, 96, seq, 0, 1, b"\x10frame", 0))
        assert counters[DTLS_TX_PACKETS] == 0  # collected, not yet sent
        flushed = asyncio.Event()
        loop.call_soon(flushed.set)  # runs after the flush scheduled by the first send
        await flushed.wait()
        assert (fanout.batches, fanout.datagrams, counters[DTLS_TX_PACKETS]) == (1, 5, 5)
        assert len(subscribers[0].received(5)) == 5
    finally:
        transport.close()


def test_the_compiled_path_is_built_and_calls_pylibsrtps_own_libsrtp() -> None:
    found = compiled_module()
    assert not isinstance(found, str), found


def test_the_setting_picks_the_path_and_an_unknown_value_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("INFO", logger="media.fanout"):
        assert isinstance(Sfu(MediaConfig(fastpath="off")).fanout, PyFanout)
        assert isinstance(Sfu(MediaConfig()).fanout, CFanout)  # auto, and it is built
    assert [r.getMessage() for r in caplog.records] == [
        "media fast path: python (fastpath=off)",
        "media fast path: compiled (media._fastpath, sendmmsg)",
    ]
    assert Settings.load({"SCREENVISIT_FASTPATH": " OFF "}).media().fastpath == "off"
    assert Settings.load({}).media().fastpath == "auto"
    with pytest.raises(SettingsError, match="fastpath"):
        Settings.load({"SCREENVISIT_FASTPATH": "fast"})
    with pytest.raises(ValueError, match="fastpath"):
        parse_fastpath("maybe")
