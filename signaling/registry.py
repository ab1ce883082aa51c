"""The hubs of the visits live on this node."""

from __future__ import annotations

import asyncio

from rooms.ids import VisitId
from rooms.visit import Visit
from signaling import down
from signaling.errors import CLOSE_FATAL
from signaling.hub import VisitHub
from signaling.services import SignalingServices


class HubRegistry:
    """The hubs of the visits live on this node."""

    def __init__(self, services: SignalingServices) -> None:
        self._services = services
        self.hubs: dict[VisitId, VisitHub] = {}
        self._changed = asyncio.Condition()

    def _empty(self, expecting: bool) -> bool:
        return not any(h.sessions or (expecting and h.reconnecting) for h in self.hubs.values())

    async def changed(self) -> None:
        """Someone left: wake `wait_empty`."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_empty(self, *, expecting: bool) -> None:
        """Until no visit here has anyone connected (nor, with `expecting`, expected back)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._empty(expecting))

    async def current(self, hub: VisitHub) -> bool:
        """Whether `hub` may act: it is this node's hub of its visit, under a current lease
        (asking may drop a hub whose lease moved on while this node was paused)."""
        return await self._services.holds(hub.visit_id) and self.hubs.get(hub.visit_id) is hub

    def hub(self, visit_id: VisitId) -> VisitHub:
        hub = self.hubs.get(visit_id)
        if hub is None:
            hub = VisitHub(visit_id, self._services, self)
            self.hubs[visit_id] = hub
        return hub

    async def discard(self, hub: VisitHub) -> None:
        if self.hubs.get(hub.visit_id) is hub and hub.call.is_empty():
            del self.hubs[hub.visit_id]
            # Its quality loop and timers would keep it, and its room's peers, alive for good.
            await hub.tasks.aclose()
            await self._services.sfu.close_room(hub.visit_id)

    async def end_visit(self, visit: Visit) -> None:
        hub = self.hub(visit.id)
        async with hub.lock:
            await hub.end_visit(visit)
        if not hub.sessions:
            await self.discard(hub)

    def close_token(self, token_id: str) -> int:
        """Disconnect every session that joined with a revoked token; returns how many."""
        closed = 0
        for hub in self.hubs.values():
            for session in list(hub.sessions.values()):
                if session.principal is not None and session.principal.token_id == token_id:
                    session.send(
                        down.Error(
                            code="token-revoked",
                            fatal=True,
                            message="access with this link has been revoked",
                        ).wire()
                    )
                    session.close_with(CLOSE_FATAL, "token-revoked")
                    closed += 1
        return closed

    async def close(self, *, reconnect: bool = False) -> None:
        for hub in list(self.hubs.values()):
            await hub.close(reconnect=reconnect)
        self.hubs.clear()
