"""One participant's RTCPeerConnection: its up tracks (what it publishes) and down slots.

The browser makes every offer (ARCHITECTURE.md: aiortc-initiated renegotiation breaks Chromium).
New m-lines get server transceivers created before setRemoteDescription, so codec preferences
hold everyone to VP8 and Opus and a subscriber always receives the publisher's codec.

The media mode (`MediaConfig.media_mode`) decides what the up tracks and down slots are: in
`forward` mode the publisher's RTP packets go down untouched (UpTrack, DownTrack, RtpWriter);
in `relay` mode the receiver decodes and each subscriber's sender encodes again (media/relay.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from media.candidates import RefusedCandidate, RemoteCandidates, candidate_policy
from media.codecs import codec_preferences
from media.config import MediaConfig
from media.counters import MediaCounters
from media.directreceive import receive_directly
from media.downtrack import DownTrack
from media.errors import NegotiationFailed
from media.ice import drop_checks_from_refused_sources, restrict_host_candidates
from media.relay import RelayDownTrack, RelayUpTrack
from media.remb import watch_remb
from media.rtpwriter import RtpWriter
from media.tasks import OwnedTasks
from media.uptrack import UpTrack

logger = logging.getLogger(__name__)

#: m-lines one offer may carry: one audio and one video up, and down slots for a full visit.
MAX_MEDIA_SECTIONS = 64


#: A publisher's incoming track and a down slot's track, in either media mode.
AnyUpTrack = UpTrack | RelayUpTrack
AnyDownTrack = DownTrack | RelayDownTrack


@dataclass
class DownSlot:
    mid: str
    kind: str
    transceiver: RTCRtpTransceiver
    track: AnyDownTrack


def _media_ssrc(media: aiortc_sdp.MediaDescription) -> int | None:
    for group in media.ssrc_group:
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    return media.ssrc[0].ssrc if media.ssrc else None


class MediaPeer:
    def __init__(
        self,
        participant: str,
        config: MediaConfig,
        tasks: OwnedTasks,
        counters: MediaCounters,
        on_state: Callable[[str], None],
        on_delivered: Callable[[str], None] | None = None,
    ) -> None:
        self.participant = participant
        self._config = config
        self._tasks = tasks
        self._counters = counters
        self._on_delivered = on_delivered
        self._delivered: set[str] = set()
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(list(s.urls), s.username, s.credential) for s in config.ice_servers
                ],
                # BALANCED would leave a second same-kind transceiver, created before the
                # offer's BUNDLE group is applied, on an orphaned transport that never starts.
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self.up: dict[str, AnyUpTrack] = {}
        self.slots: list[DownSlot] = []
        self.negotiated = False
        self._ssrc_by_mid: dict[str, int | None] = {}
        self._lock = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None
        self._remote_candidates = RemoteCandidates(
            candidate_policy(config.ice_hosts, config.ice_allowed_networks)
        )
        #: The remote candidates the last offer named that the server will not contact.
        self.refused_candidates: list[RefusedCandidate] = []

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            on_state(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the participant's offer and return our answer (complete, no trickle)."""
        async with self._lock:
            if not offer_sdp.startswith("v=0"):
                raise NegotiationFailed("the offer is not an SDP session description")
            try:
                description = aiortc_sdp.SessionDescription.parse(offer_sdp)
            except Exception as exc:  # aiortc's parser raises several types on bad input
                raise NegotiationFailed(f"the offer could not be parsed: {exc}") from exc
            self._check_offer(description)
            # Before aiortc sees it: a refused candidate never gets a single datagram.
            offer_sdp, self.refused_candidates = self._remote_candidates.filter_offer(offer_sdp)
            if self.refused_candidates:
                logger.info(
                    "refused %d remote ICE candidates (%s)",
                    len(self.refused_candidates),
                    ", ".join(sorted({r.reason for r in self.refused_candidates})),
                )
            known = {t.mid for t in self.pc.getTransceivers()}
            new_media = [m for m in description.media if m.rtp.muxId not in known]
            for media in new_media:
                direction = {"sendonly": "recvonly", "sendrecv": "recvonly", "recvonly": "sendonly"}
                transceiver = self.pc.addTransceiver(
                    media.kind, direction=direction.get(media.direction or "", "inactive")
                )
                transceiver.setCodecPreferences(codec_preferences(media.kind))
            for media in description.media:
                self._ssrc_by_mid[media.rtp.muxId] = _media_ssrc(media)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except Exception as exc:
                raise NegotiationFailed(f"the offer was refused: {exc}") from exc
            restrict_host_candidates(self.pc, self._config.ice_hosts)
            drop_checks_from_refused_sources(self.pc, self._remote_candidates.refuses)
            new_mids = {m.rtp.muxId: m for m in new_media}
            for transceiver in self.pc.getTransceivers():
                if transceiver.mid not in new_mids:
                    continue
                if transceiver.direction == "recvonly":
                    self._add_up(transceiver)
                elif transceiver.direction == "sendonly":
                    self._add_slot(transceiver)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            # The sockets exist now (gathered). In relay mode no up track attaches, so only the
            # guard against datagrams that would end aiortc's receiving task applies.
            receive_directly(self.pc, self._counters)
            self.negotiated = True
            return self.pc.localDescription.sdp

    def _check_offer(self, description: aiortc_sdp.SessionDescription) -> None:
        if not description.media:
            raise NegotiationFailed("the offer has no media sections")
        if len(description.media) > MAX_MEDIA_SECTIONS:
            raise NegotiationFailed(f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
        sending: dict[str, int] = {}
        for media in description.media:
            if media.kind not in ("audio", "video"):
                raise NegotiationFailed(f"media of kind {media.kind!r} is not supported")
            if media.direction in ("sendonly", "sendrecv"):
                sending[media.kind] = sending.get(media.kind, 0) + 1
        for kind, count in sending.items():
            already = 1 if kind in self.up else 0
            new = count - already
            if count > 1 or new < 0:
                raise NegotiationFailed(f"a participant publishes at most one {kind} track")

    def _add_up(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        if kind in self.up:
            return
        if self._config.media_mode == "relay":
            # Not tapped: the receiver decodes, and the relay hands decoded frames on.
            self.up[kind] = RelayUpTrack(
                kind, transceiver.receiver.track, self._tasks, self._counters
            )
            return
        mid = transceiver.mid or ""
        self.up[kind] = UpTrack(
            kind,
            transceiver.receiver,
            lambda: self._ssrc_by_mid.get(mid),
            self._tasks,
            self._counters,
        )

    def _add_slot(self, transceiver: RTCRtpTransceiver) -> None:
        track: AnyDownTrack
        if self._config.media_mode == "relay":
            # Decoded frames: the sender encodes them, and answers PLI/FIR with its own encoder.
            track = RelayDownTrack(
                transceiver.kind, self._counters, self._tasks, self._first_delivery
            )
            transceiver.sender.replaceTrack(track)
        else:
            writer = RtpWriter(transceiver.sender)
            track = DownTrack(transceiver.kind, writer, self._counters, self._first_delivery)
            transceiver.sender.replaceTrack(track)
            # A subscriber's PLI/FIR must reach the publisher; aiortc would only flag its own
            # encoder.
            setattr(transceiver.sender, "_send_keyframe", track.request_keyframe)  # noqa: B010
            if transceiver.kind == "video":
                # Its REMB caps the publisher it receives (media.remb).
                watch_remb(transceiver.sender, track.on_remb)
        self.slots.append(DownSlot(transceiver.mid or "", transceiver.kind, transceiver, track))

    def _first_delivery(self, track: AnyDownTrack) -> None:
        """The first frame of a kind sent to this participant: media flows down to them."""
        if track.kind not in self._delivered and self._on_delivered is not None:
            self._delivered.add(track.kind)
            self._on_delivered(track.kind)

    def free_slot(self, kind: str) -> DownSlot | None:
        for slot in self.slots:
            if slot.kind == kind and slot.track.publication is None:
                return slot
        return None

    def track_map(self) -> dict[str, dict[str, str] | None]:
        out: dict[str, dict[str, str] | None] = {}
        for slot in self.slots:
            publication = slot.track.publication
            out[slot.mid] = (
                None
                if publication is None
                else {"participant": publication.participant, "kind": slot.kind}
            )
        return out

    async def close(self) -> None:
        """Close once; shielded, because an interrupted close leaves decoder threads behind."""
        if self._closing is None:
            for slot in self.slots:
                slot.track.stop()
            for up in self.up.values():
                if isinstance(up, RelayUpTrack):
                    up.close()
            self._closing = asyncio.ensure_future(self.pc.close())
        await asyncio.shield(self._closing)
