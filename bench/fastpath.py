"""The forwarding path's last step alone, compiled against Python: CPU per datagram.

    python3 -m bench.fastpath [--subscribers 2] [--packets 20000] [--rounds 5]

In one process on uvloop: a publisher's packets (VP8-sized and Opus-sized payloads, as a call
sends them) go to each subscriber through `PyFanout` and through `CFanout` (media.fanout),
rounds interleaved, with real SRTP sessions and real UDP sockets on loopback. Measured is this
process's CPU time (user + system) per datagram sent: header rewrite, SRTP protect, the send
system call, and the Python that hands each datagram over. What comes before (receiving,
unprotecting, deciding what goes to whom) is the same for both and is not in it: the whole
server is measured by `bench.media_forwarding --fastpath-pairs`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import struct
import time

import uvloop
from pylibsrtp import Policy, Session

from media.fanout import DTLS_TX_BYTES, DTLS_TX_PACKETS, CFanout, PyFanout, make_fanout

TEMPLATE = bytes([0x90]) + bytes(11) + struct.pack("!HH", 0xBEDE, 2) + b"\x10\x31\x22\x00\x00\x00"
SEND_TIME_AT = 12 + 4 + 3


async def one_round(
    fanout: PyFanout | CFanout, subscribers: int, packets: int, sink: tuple[str, int]
) -> float:
    """CPU seconds per datagram for `packets` packets to `subscribers` subscribers."""
    loop = asyncio.get_running_loop()
    transports = []
    targets = []
    for _ in range(subscribers):
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        session = Session(Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        counters = {DTLS_TX_PACKETS: 0, DTLS_TX_BYTES: 0}
        targets.append(fanout.target(transport, sink, session, counters))
    rng = random.Random(1)
    payloads = [rng.randbytes(1100 if i % 4 else 90) for i in range(64)]
    tick = asyncio.Event()
    start = time.process_time()
    for i in range(packets):
        payload = payloads[i % 64]
        for target in targets:
            fanout.send(target, (TEMPLATE, SEND_TIME_AT, 96, i & 0xFFFF, 3000 * i, 7, payload, i))
        if i % 4 == 3:
            # a loop iteration: the compiled path's batch goes out (about a frame's packets)
            tick.clear()
            loop.call_soon(tick.set)
            await tick.wait()
    elapsed = time.process_time() - start
    for transport in transports:
        transport.close()
    return elapsed / (packets * subscribers)


async def main(args: argparse.Namespace) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows its buffer
    address = sink.getsockname()
    results: dict[str, list[float]] = {"python": [], "compiled": []}
    for index in range(args.rounds):
        order = ("python", "compiled") if index % 2 == 0 else ("compiled", "python")
        for name in order:
            fanout = PyFanout() if name == "python" else make_fanout("on")
            seconds = await one_round(fanout, args.subscribers, args.packets, address)
            results[name].append(seconds)
    sink.close()
    python, compiled = (statistics.median(results[k]) for k in ("python", "compiled"))
    print(
        f"fanout, {args.subscribers} subscribers, {args.packets} packets x {args.rounds} rounds"
        f" (interleaved): CPU per datagram python {1e6 * python:.2f} µs, compiled "
        f"{1e6 * compiled:.2f} µs (ratio {compiled / python:.2f}); rounds python "
        f"{', '.join(f'{1e6 * s:.2f}' for s in results['python'])}; compiled "
        f"{', '.join(f'{1e6 * s:.2f}' for s in results['compiled'])}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
