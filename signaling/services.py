"""What a signaling session needs from the rest of the process, handed in by the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from media.sfu import Sfu
from rooms.call import CallSubscriber
from rooms.cluster import LOCAL_NODE, ClusterState, MemoryClusterState, NodeId
from rooms.eventlog import EventLog
from rooms.ids import VisitId
from rooms.link_window import LinkWindow
from rooms.outcomes import OutcomeRecorder
from rooms.policy import Action
from rooms.principal import Principal
from rooms.store import VisitStore
from rooms.visit import Visit
from signaling.limits import MessageLimits


class Access(Protocol):
    """Authentication, policy and the audit trail (server.access.AccessControl)."""

    async def authenticate(
        self, token: str, *, action: Action, client: str | None, visit: str | None = None
    ) -> Principal:
        """The token's principal, or raise rooms.errors.AuthenticationFailed (audited)."""
        ...

    async def authorize(
        self,
        principal: Principal,
        action: Action,
        visit: Visit | None,
        *,
        client: str | None,
        visit_id: str | None = None,
    ) -> None:
        """Raise rooms.errors.NotPermitted unless the policy allows it; audited either way."""
        ...

    async def refuse_request(
        self,
        action: Action,
        client: str | None,
        reason: str,
        *,
        principal: Principal | None = None,
    ) -> None:
        """Audit and count a malformed request; raise AuthenticationFailed `rate-limited` when
        the address is past its limit."""
        ...

    async def note_malformed(
        self,
        principal: Principal,
        action: Action,
        client: str | None,
        reason: str,
        *,
        visit: str | None = None,
    ) -> None:
        """Audit a malformed message from an authenticated session (counted, not limited)."""
        ...

    async def record(
        self,
        principal: Principal | None,
        action: Action,
        visit: str | None,
        client: str | None,
        *,
        allowed: bool,
        reason: str | None = None,
    ) -> None: ...


async def _always_held(_visit: VisitId) -> bool:
    return True


def _unfenced(_visit: VisitId) -> int | None:
    return None


def _nothing_to_drop(_visit: VisitId) -> None:
    return None


@dataclass
class SignalingServices:
    access: Access
    store: VisitStore
    events: EventLog
    sfu: Sfu
    outcomes: OutcomeRecorder
    #: ICE servers as the browser's RTCPeerConnection expects them.
    browser_ice_servers: list[dict[str, Any]] = field(default_factory=list)
    join_timeout: float = 10.0
    outbound_queue: int = 256
    #: Seconds one message may take to reach a client before it is closed as too slow.
    send_timeout: float = 10.0
    #: Per-socket rates of each kind of client message.
    limits: MessageLimits = field(default_factory=MessageLimits)
    #: Seconds a declined guest waits before knocking again.
    knock_pause: float = 60.0
    #: When a planned visit's links open and close (rooms.link_window).
    link_window: LinkWindow = field(default_factory=LinkWindow)
    #: Seconds a participant whose connection dropped keeps seat and media, without admission.
    reconnect_grace: float = 60.0
    #: Seconds after everyone has left before the visit ends by itself.
    departure_timeout: float = 120.0
    #: Seconds between connection-quality samples of each participant.
    quality_interval: float = 5.0
    #: Receives every sample (visit, participant, role, sector, sample as a dict) for the
    #: evaluation data; written in batches by the server.
    quality_sink: Callable[[str, str, str, str, dict[str, Any]], None] | None = None
    #: Nodes, placements and presence, shared with the other nodes (memory: a node alone).
    cluster: ClusterState = field(default_factory=MemoryClusterState)
    node_id: NodeId = LOCAL_NODE
    #: Whether this node holds the visit's current lease: asked before every action on it
    #: (signaling.node.ClusterNode.holds; a node alone holds every visit).
    holds: Callable[[VisitId], Awaitable[bool]] = _always_held
    #: The epoch of this node's lease of the visit, which fences every write of its live state
    #: (signaling.node.ClusterNode.epoch; None: unfenced).
    epoch: Callable[[VisitId], int | None] = _unfenced
    #: Called when a fenced write of the visit (presence, the event log) was refused: this node
    #: stops serving it (signaling.node.ClusterNode.drop_visit).
    lost: Callable[[VisitId], None] = _nothing_to_drop
    #: Seconds between looks at whether each participant's media still arrives.
    media_check_interval: float = 1.0
    #: Seconds without a packet from a publishing participant (socket open) before it is cut
    #: off as `media-failed` (reason `no-media-received`).
    media_silence: float = 6.0
    #: Everything that sees the calls' events after the event log (metrics, webhooks).
    call_subscribers: list[CallSubscriber] = field(default_factory=list)
