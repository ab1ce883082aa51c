"""The media engine of one process: its rooms and counters."""

from __future__ import annotations

import logging

from media.config import MediaConfig
from media.counters import MediaCounters
from media.fanout import make_fanout
from media.observer import RoomObserver
from media.room import SfuRoom
from media.seams import check_seams

logger = logging.getLogger(__name__)


class Sfu:
    def __init__(self, config: MediaConfig) -> None:
        check_seams()
        self.config = config
        self.counters = MediaCounters()
        self.rooms: dict[str, SfuRoom] = {}
        #: Sends what every room forwards: compiled or in Python (logs which).
        self.fanout = make_fanout(config.fastpath)
        if config.media_mode == "relay":
            logger.info(
                "media mode relay: every publisher is decoded and re-encoded for each"
                " subscriber (the MediaRelay baseline; several times the CPU of forwarding)"
            )

    def room(self, name: str, observer: RoomObserver) -> SfuRoom:
        room = self.rooms.get(name)
        if room is None:
            room = SfuRoom(name, self.config, observer, self.counters, self.fanout)
            self.rooms[name] = room
        return room

    async def close_room(self, name: str) -> None:
        room = self.rooms.pop(name, None)
        if room is not None:
            await room.close()

    async def close(self) -> None:
        for name in list(self.rooms):
            await self.close_room(name)
