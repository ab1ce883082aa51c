"""What a signaling session needs from the rest of the process, handed in by the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from media.sfu import Sfu
from rooms.eventlog import EventLog
from rooms.principal import Principal
from rooms.store import VisitStore


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Principal:
        """Return the token's principal or raise rooms.errors.AuthenticationFailed."""
        ...


@dataclass
class SignalingServices:
    authenticator: Authenticator
    store: VisitStore
    events: EventLog
    sfu: Sfu
    #: ICE servers as the browser's RTCPeerConnection expects them.
    browser_ice_servers: list[dict[str, Any]] = field(default_factory=list)
    join_timeout: float = 10.0
    outbound_queue: int = 256
