"""Offer only the configured local addresses as ICE host candidates.

aioice gathers host candidates from every interface except loopback. A deployment must choose
the addresses it announces, and a single-host demo or a test needs 127.0.0.1, so we replace the
gathering step of each peer connection's ICE agent (per instance, not globally).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCPeerConnection

_PATCHED = "_screenvisit_hosts"


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
