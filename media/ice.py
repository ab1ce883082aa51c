"""Offer only the configured local addresses as ICE host candidates.

aioice gathers host candidates from every interface except loopback. A deployment must choose
the addresses it announces, and a single-host demo or a test needs 127.0.0.1, so we replace the
gathering step of each peer connection's ICE agent (per instance, not globally).

The sockets it opens also get a larger receive buffer: with the default (about 200 kB, some 90
small datagrams) the kernel dropped 10-30 % of a subscriber's packets whenever the event loop
was held up for a few hundred milliseconds on a busy machine.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCPeerConnection

_PATCHED = "_screenvisit_hosts"
#: Requested SO_RCVBUF per ICE socket (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER_BYTES = 1 << 21


def _enlarge_receive_buffers(connection: Any) -> None:
    for protocol in connection._protocols:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            except OSError:
                pass  # keep the default: smaller, but it works


def _restrict(connection: Any, hosts: Sequence[str]) -> None:
    if getattr(connection, _PATCHED, None) is not None:
        return

    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in connection._components:
            connection._local_candidates += await connection.get_component_candidates(
                component=component, addresses=list(hosts)
            )
        connection._local_candidates_end = True
        _enlarge_receive_buffers(connection)

    connection.gather_candidates = gather_candidates
    setattr(connection, _PATCHED, tuple(hosts))


def restrict_host_candidates(pc: RTCPeerConnection, hosts: Sequence[str]) -> None:
    """Call after setRemoteDescription (which creates the transports), before the answer is set."""
    if not hosts:
        return
    for transceiver in pc.getTransceivers():
        _restrict(transceiver.sender.transport.transport.iceGatherer._connection, hosts)
    if pc.sctp is not None:
        _restrict(pc.sctp.transport.transport.iceGatherer._connection, hosts)


_GUARDED = "_screenvisit_sources"


def _connections(pc: RTCPeerConnection) -> list[Any]:
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    return [t.transport.iceGatherer._connection for t in transports]


def drop_checks_from_refused_sources(pc: RTCPeerConnection, refused: Callable[[str], bool]) -> None:
    """A check from an address the candidate policy refuses is dropped unanswered.

    aioice answers every authenticated check and learns its source as a peer-reflexive
    candidate, to which it then sends checks of its own: a path around the offer's candidates.
    Call after setRemoteDescription (which creates the transports), before the answer is set.
    """
    for connection in _connections(pc):
        if getattr(connection, _GUARDED, False):
            continue
        request_received = connection.request_received

        def guarded(
            message: Any, addr: tuple[str, int], protocol: Any, forward: Any = request_received
        ) -> None:
            if not refused(addr[0]):
                forward(message, addr, protocol)

        connection.request_received = guarded
        setattr(connection, _GUARDED, True)
