"""The media side of a call, sampled: each participant's connection quality (everyone is told
when a level changes; each sample goes to the quality sink), and whether their media still
arrives (one whose media stopped while their socket lives is reported, to be cut off)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from media.liveness import MediaWatch
from media.peer import MediaPeer
from media.quality import QualityMeter
from media.room import SfuRoom
from rooms.call import Call
from rooms.ids import ParticipantId, VisitId
from signaling import down
from signaling.services import SignalingServices


class CallMedia:
    def __init__(
        self,
        visit_id: VisitId,
        call: Call,
        room: SfuRoom,
        services: SignalingServices,
        broadcast: Callable[[dict[str, Any]], None],
        silent: Callable[[ParticipantId, MediaPeer], Awaitable[None]],
    ) -> None:
        self._visit_id = visit_id
        self._call = call
        self._room = room
        self._services = services
        self._broadcast = broadcast
        self._silent = silent
        self._meters: dict[ParticipantId, QualityMeter] = {}
        self._watch = MediaWatch(time.monotonic)
        #: The latest connection-quality level of each participant in the call.
        self.quality: dict[ParticipantId, str] = {}

    def disconnected(self, participant: ParticipantId) -> None:
        """Its peer connection is gone: a meter holds its peer (and all that hangs on it)."""
        self._meters.pop(participant, None)
        self._watch.forget(participant)

    def left(self, participant: ParticipantId) -> None:
        self.disconnected(participant)
        self.quality.pop(participant, None)

    async def sample_quality(self) -> None:
        """Sample each participant's connection and tell everyone when a level changes."""
        while True:
            await asyncio.sleep(self._services.quality_interval)
            for participant in list(self._call.in_call):
                peer = self._room.peers.get(participant)
                if peer is None:
                    continue
                meter = self._meters.get(participant)
                if meter is None or meter.peer is not peer:
                    meter = self._meters[participant] = QualityMeter(peer)
                sample = await meter.sample()
                sink = self._services.quality_sink
                seat = self._call.seats[participant]
                if sink is not None:
                    sink(
                        self._visit_id,
                        participant,
                        seat.role.value,
                        seat.sector.value,
                        sample.to_dict(),
                    )
                if self.quality.get(participant) != sample.level:
                    self.quality[participant] = sample.level
                    quality = down.Quality(participant=participant, level=sample.level)
                    self._broadcast(quality.wire())

    async def watch_media(self) -> None:
        """Report a participant whose media stopped arriving while its socket lives (its
        network path died): long before ICE consent gives up (about 30 s)."""
        interval = self._services.media_check_interval
        looked = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            late = time.monotonic() - looked - interval
            looked = time.monotonic()
            if late > interval:
                self._watch.paused(late)
            for participant in list(self._call.in_call):
                peer = self._room.peers.get(participant)
                if peer is None or participant not in self._call.connections:
                    self._watch.forget(participant)
                    continue
                silent = await self._watch.silent_for(participant, peer)
                if silent >= self._services.media_silence:
                    self._watch.forget(participant)
                    await self._silent(participant, peer)
