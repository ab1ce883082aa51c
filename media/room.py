"""One SFU room per visit: who publishes what, and which down slot carries it to whom.

The bookkeeping is the same in both media modes (`MediaConfig.media_mode`): in `forward` mode
publications and down slots carry encoded frames (Publication, DownTrack), in `relay` mode
decoded ones that each subscriber's sender encodes again (RelayPublication, RelayDownTrack).
A room has one mode; the helpers at the end keep the two kinds of objects from mixing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from media.config import MediaConfig
from media.counters import MediaCounters
from media.downtrack import DownTrack
from media.errors import NegotiationFailed
from media.fanout import Fanout
from media.observer import RoomObserver
from media.peer import AnyDownTrack, AnyUpTrack, MediaPeer, codec_name
from media.publication import Publication
from media.relay import RelayDownTrack, RelayPublication, RelayUpTrack
from media.sources import SOURCE_OF_SLOT, SOURCES, TRANSIENT, slot_kind
from media.tasks import OwnedTasks

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")

AnyPublication = Publication | RelayPublication


class SfuRoom:
    def __init__(
        self,
        name: str,
        config: MediaConfig,
        observer: RoomObserver,
        counters: MediaCounters,
        fanout: Fanout | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._observer = observer
        self._counters = counters
        self._fanout = fanout
        self._tasks = OwnedTasks(f"sfu room {name}")
        self.peers: dict[str, MediaPeer] = {}
        self.publications: dict[tuple[str, str], AnyPublication] = {}
        #: (subscriber, publisher, codec) already reported as not decodable.
        self._unsupported: set[tuple[str, str, str]] = set()

    def recv_slots_for(self, participant: str) -> dict[str, int]:
        """How many receive-only transceivers a participant's first offer should carry: one per
        other participant, and at least one, so that the offer of a participant who sends
        nothing (camera and microphone refused) is never empty, and the next to arrive lands
        in a slot without a renegotiation."""
        others = {p for p in self.peers if p != participant}
        others |= {p for (p, _slot) in self.publications if p != participant}
        extra = sum(1 for (p, slot) in self.publications if p != participant and slot not in KINDS)
        return {"audio": max(len(others), 1), "video": max(len(others), 1) + extra}

    async def connect(self, participant: str) -> MediaPeer:
        """A new peer connection for `participant`, replacing any previous one (a reconnect)."""
        old = self.peers.pop(participant, None)
        if old is not None:
            await self._drop_peer(old)
        peer = MediaPeer(
            participant,
            self._config,
            self._tasks,
            self._counters,
            lambda state: self._observer.peer_state_changed(participant, state),
            lambda kind: self._observer.first_frame_delivered(participant, kind),
            lambda publisher, codec: self._report_unsupported(participant, publisher, codec),
            fanout=self._fanout,
        )
        self.peers[participant] = peer
        return peer

    async def handle_offer(
        self,
        participant: str,
        offer_sdp: str,
        sources: dict[str, str] | None = None,
        allowed: frozenset[str] = SOURCES,
    ) -> str:
        """Answer `participant`'s offer. `sources` names the source of sending m-lines by mid,
        `allowed` the sources it may publish (media.sources; SourceForbidden otherwise). A
        shared screen or second camera the offer no longer sends is unpublished."""
        peer = self.peers.get(participant)
        if peer is None:
            raise NegotiationFailed("no media session; join first")
        answer = await peer.answer(
            offer_sdp, lambda offered: self._video_order(peer, offered), sources, allowed
        )
        for slot, up in peer.up.items():
            kind = slot_kind(slot)
            publication = self.publications.get((participant, slot))
            if publication is None:
                publication = (
                    RelayPublication(participant, kind, slot)
                    if self._config.media_mode == "relay"
                    else Publication(participant, kind, slot)
                )
                self.publications[(participant, slot)] = publication
                if slot not in KINDS:
                    self._observer.source_changed(participant, SOURCE_OF_SLOT[slot], True)
            if publication.source is not up:
                if slot in KINDS:
                    up.on_first_frame(self._first_frame_reporter(participant, kind))
                _set_source(publication, up)
        for key in [k for k in self.publications if k[0] == participant]:
            if SOURCE_OF_SLOT[key[1]] in TRANSIENT and key[1] not in peer.up:
                self._unpublish(participant, key[1])
        self._distribute()
        self._check_video_codecs()
        return answer

    def _video_order(self, publisher: MediaPeer, offered: list[str]) -> list[str]:
        """The publisher's video codecs, the one it should send first: the first every other
        participant can decode, else the one most of them can."""
        if self._config.media_mode == "relay":
            return offered  # decoded and encoded again per subscriber: any codec will do
        others = [p.decodes for p in self.peers.values() if p is not publisher and p.negotiated]
        best = max(offered, key=lambda mime: sum(mime in d for d in others))
        return [best] + [mime for mime in offered if mime != best]

    def _check_video_codecs(self) -> None:
        """Every subscriber must be able to decode each publisher's video codec: a publisher
        that could send one they all decode is asked to offer again (and is answered with that
        one first); a subscriber that still cannot decode it is named to the layer above. In
        relay mode every subscriber's own encoder picks its codec: nothing to check."""
        if self._config.media_mode == "relay":
            return
        for publisher in self.peers.values():
            codec = publisher.video_codec
            if codec is None or not publisher.negotiated:
                continue
            unable = [
                p
                for p in self.peers.values()
                if p is not publisher and p.negotiated and codec not in p.decodes
            ]
            if not unable:
                continue
            better = self._video_order(publisher, list(publisher.video_offered))[0]
            if better != codec:
                if publisher.codec_requested != better:
                    publisher.codec_requested = better
                    logger.info(
                        "room %s: %s should send %s instead of %s",
                        self.name,
                        publisher.participant,
                        better,
                        codec,
                    )
                    self._observer.renegotiation_needed(
                        publisher.participant, publisher.recv_counts()
                    )
                continue
            for subscriber in unable:
                self._report_unsupported(subscriber.participant, publisher.participant, codec)

    def _report_unsupported(self, subscriber: str, publisher: str, codec: str) -> None:
        """Name, once, a subscriber who cannot decode a publisher's video codec."""
        if (subscriber, publisher, codec) not in self._unsupported:
            self._unsupported.add((subscriber, publisher, codec))
            self._observer.video_unsupported(subscriber, publisher, codec_name(codec))

    def _first_frame_reporter(self, participant: str, kind: str) -> Callable[[], None]:
        return lambda: self._observer.first_frame(participant, kind)

    def _distribute(self) -> None:
        """Give every negotiated peer a slot for every other participant's publications."""
        for peer in self.peers.values():
            if not peer.negotiated:
                continue
            changed = False
            missing = dict.fromkeys(KINDS, 0)
            for (publisher, _slot), publication in self.publications.items():
                if publisher == peer.participant:
                    continue
                if any(s.track.publication is publication for s in peer.slots):
                    continue
                slot = peer.free_slot(publication.kind)
                if slot is None:
                    missing[publication.kind] += 1
                    continue
                _attach(slot.track, publication)
                changed = True
            if changed:
                self._observer.tracks_changed(peer.participant)
            if any(missing.values()):
                recv = {
                    kind: sum(1 for s in peer.slots if s.kind == kind) + missing[kind]
                    for kind in KINDS
                }
                self._observer.renegotiation_needed(peer.participant, recv)

    async def disconnect(self, participant: str) -> None:
        """Close `participant`'s peer but keep their publications and everyone's slots for
        them: they are expected back (a reload, a dropped network)."""
        peer = self.peers.pop(participant, None)
        if peer is not None:
            await self._drop_peer(peer)

    async def leave(self, participant: str) -> None:
        """`participant` is gone for good: close their peer and their publications."""
        peer = self.peers.pop(participant, None)
        if peer is not None:
            await self._drop_peer(peer)
        for key in [k for k in self.publications if k[0] == participant]:
            self._unpublish(participant, key[1])

    def _unpublish(self, participant: str, slot: str) -> None:
        """Close one publication: its subscribers' slots are free for the next one."""
        publication = self.publications.pop((participant, slot), None)
        if publication is None:
            return
        affected: set[str] = set()
        for down in list(publication.subscribers):
            for other in self.peers.values():
                if any(s.track is down for s in other.slots):
                    affected.add(other.participant)
        publication.close()
        if slot not in KINDS:
            self._observer.source_changed(participant, SOURCE_OF_SLOT[slot], False)
        for subscriber in affected:
            self._observer.tracks_changed(subscriber)

    async def _drop_peer(self, peer: MediaPeer) -> None:
        for slot, up in peer.up.items():
            publication = self.publications.get((peer.participant, slot))
            if publication is not None and publication.source is up:
                _set_source(publication, None)
        await peer.close()

    async def close(self) -> None:
        for participant in list(self.peers):
            await self.leave(participant)
        await self._tasks.aclose()


def _set_source(publication: AnyPublication, up: AnyUpTrack | None) -> None:
    if isinstance(publication, RelayPublication):
        if up is None or isinstance(up, RelayUpTrack):
            publication.set_source(up)
            return
    elif up is None or not isinstance(up, RelayUpTrack):
        publication.set_source(up)
        return
    raise TypeError("a publication and its source must be of the same media mode")


def _attach(track: AnyDownTrack, publication: AnyPublication) -> None:
    if isinstance(track, RelayDownTrack) and isinstance(publication, RelayPublication):
        track.attach(publication)
    elif isinstance(track, DownTrack) and isinstance(publication, Publication):
        track.attach(publication)
    else:
        raise TypeError("a down slot and its publication must be of the same media mode")
