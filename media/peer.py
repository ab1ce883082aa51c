"""One participant's RTCPeerConnection: its up tracks (what it publishes) and down slots.

The browser makes every offer (ARCHITECTURE.md: aiortc-initiated renegotiation breaks Chromium).
New m-lines get server transceivers created before setRemoteDescription, so codec preferences
decide the codecs: Opus, and VP8 or H264 video (media.codecs). A publisher is answered with the
codec the room picks for it first (`VideoOrder`: one every subscriber can decode), and a
subscriber's slots with every forwarded codec it can decode, so that each slot can carry any
publisher's codec as it is (media.rtpwriter picks the payload type per packet).

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
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.candidates import RefusedCandidate, RemoteCandidates, candidate_policy
from media.codecs import FORWARDED_MIME_TYPES, RTX, codec_preferences
from media.config import MediaConfig
from media.counters import MediaCounters
from media.directreceive import RECEIVER_CODECS, receive_directly
from media.downtrack import DownTrack
from media.errors import NegotiationFailed
from media.fanout import Fanout
from media.ice import drop_checks_from_refused_sources, restrict_host_candidates
from media.relay import RelayDownTrack, RelayUpTrack
from media.remb import PublisherRemb, watch_remb
from media.rtpwriter import SENDER_OCTET_COUNT, SENDER_PACKET_COUNT, RtpWriter
from media.rtt import peer_rtt
from media.sources import (
    DEFAULT_SOURCE,
    SLOT_OF,
    SOURCE_KIND,
    SOURCE_OF_SLOT,
    SOURCES,
    SourceForbidden,
    slot_kind,
)
from media.tasks import OwnedTasks
from media.uptrack import UpTrack

logger = logging.getLogger(__name__)

#: m-lines one offer may carry: one audio and one video up, and down slots for a full visit.
MAX_MEDIA_SECTIONS = 64


#: The forwarded video codecs (lower-case mime types), in the server's order of preference.
VIDEO_CODECS = tuple(m.lower() for m in FORWARDED_MIME_TYPES["video"] if m.lower() != RTX)

#: Given the video codecs a publisher offers (in VIDEO_CODECS order), the same codecs in the
#: order to answer them: the first one is what it will send.
VideoOrder = Callable[[list[str]], list[str]]

#: A publisher's incoming track and a down slot's track, in either media mode.
AnyUpTrack = UpTrack | RelayUpTrack
AnyDownTrack = DownTrack | RelayDownTrack


@dataclass
class DownSlot:
    mid: str
    kind: str
    transceiver: RTCRtpTransceiver
    track: AnyDownTrack


def forwarded_video(media: aiortc_sdp.MediaDescription) -> list[str]:
    """The forwarded video codecs an m-line lists in a form aiortc takes (H264: packetization
    mode 1, constrained baseline profile), in VIDEO_CODECS order."""
    listed = {
        local.mimeType.lower()
        for local in CODECS["video"]
        for remote in media.rtp.codecs
        if is_codec_compatible(local, remote)
    }
    return [mime for mime in VIDEO_CODECS if mime in listed]


def _describe(codec: RTCRtpCodecParameters) -> str:
    """A codec as an error message names it: H264 with its profile and packetization mode."""
    if codec.name.lower() != "h264":
        return codec.name
    profile = codec.parameters.get("profile-level-id", "42e01f")
    mode = codec.parameters.get("packetization-mode", "0")
    return f"H264 (profile-level-id {profile}, packetization-mode {mode})"


def codec_name(mime: str) -> str:
    """ "video/h264" -> "H264", for messages people read."""
    return mime.split("/", 1)[-1].upper()


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
        on_codec_refused: Callable[[str, str], None] | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        """`on_codec_refused(publisher, codec)`: this participant cannot decode what `publisher`
        sends (media.downtrack). `fanout` sends what the down slots forward (media.fanout)."""
        self.participant = participant
        self._config = config
        self._tasks = tasks
        self._counters = counters
        self._on_delivered = on_delivered
        self._on_codec_refused = on_codec_refused
        self._fanout = fanout
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
        #: What it publishes now, by publication slot ("audio", "video", "screen", "camera2"),
        #: and every up track it ever had, by mid (an up track outlives a paused share).
        self.up: dict[str, AnyUpTrack] = {}
        self._up_by_mid: dict[str, AnyUpTrack] = {}
        #: The source each sending mid was announced as (kept: a mid is one source for good).
        self._source_of_mid: dict[str, str] = {}
        #: One estimate for all the video it publishes (media.remb).
        self._remb = PublisherRemb()
        self.slots: list[DownSlot] = []
        self.negotiated = False
        #: The video codecs this participant can receive (from its offers), and those it
        #: offered to send; what it sends is the first of `video_sends`.
        self.decodes: frozenset[str] = frozenset(VIDEO_CODECS)
        self.video_offered: list[str] = []
        self.video_sends: list[str] = []
        #: The codec the room last asked this publisher to switch to (asked once).
        self.codec_requested: str | None = None
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

    @property
    def video_codec(self) -> str | None:
        """The video codec this participant publishes, once it publishes video."""
        publishing = any(slot_kind(slot) == "video" for slot in self.up)
        return self.video_sends[0] if self.video_sends and publishing else None

    async def answer(
        self,
        offer_sdp: str,
        video_order: VideoOrder | None = None,
        sources: dict[str, str] | None = None,
        allowed: frozenset[str] = SOURCES,
    ) -> str:
        """Apply the participant's offer and return our answer (complete, no trickle).
        `video_order` orders the codecs of the video it publishes (default: as offered);
        `sources` names the source of sending m-lines by mid (media.sources), each of which
        must be in `allowed` (else SourceForbidden, and nothing of the offer is applied)."""
        async with self._lock:
            if not offer_sdp.startswith("v=0"):
                raise NegotiationFailed("the offer is not an SDP session description")
            try:
                description = aiortc_sdp.SessionDescription.parse(offer_sdp)
            except Exception as exc:  # aiortc's parser raises several types on bad input
                raise NegotiationFailed(f"the offer could not be parsed: {exc}") from exc
            self._check_offer(description)
            sending = self._publishing(description, sources or {}, allowed)
            # Before aiortc sees it: a refused candidate never gets a single datagram.
            offer_sdp, self.refused_candidates = self._remote_candidates.filter_offer(offer_sdp)
            if self.refused_candidates:
                logger.info(
                    "refused %d remote ICE candidates (%s)",
                    len(self.refused_candidates),
                    ", ".join(sorted({r.reason for r in self.refused_candidates})),
                )
            self._learn_video(description, video_order)
            by_mid = {t.mid: t for t in self.pc.getTransceivers()}
            new_media = [m for m in description.media if m.rtp.muxId not in by_mid]
            for media in description.media:
                transceiver = by_mid.get(media.rtp.muxId)
                if transceiver is None:
                    direction = {
                        "sendonly": "recvonly",
                        "sendrecv": "recvonly",
                        "recvonly": "sendonly",
                    }
                    transceiver = self.pc.addTransceiver(
                        media.kind, direction=direction.get(media.direction or "", "inactive")
                    )
                publishing = media.direction in ("sendonly", "sendrecv")
                if media.kind == "video" and publishing and self.video_sends:
                    # Only the codec to send: aiortc as a client would reorder a longer list.
                    chosen = self.video_sends[:1]
                    transceiver.setCodecPreferences(codec_preferences("video", chosen))
                elif media.rtp.muxId not in by_mid:
                    transceiver.setCodecPreferences(codec_preferences(media.kind))
            for media in description.media:
                self._ssrc_by_mid[media.rtp.muxId] = _media_ssrc(media)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except Exception as exc:
                raise NegotiationFailed(f"the offer was refused: {exc}") from exc
            for transceiver in by_mid.values():
                if transceiver.kind == "video" and transceiver.direction == "recvonly":
                    # A publisher asked to switch codec: aiortc's receiver learns payload
                    # types only when it starts, so it is told of the new one here.
                    known = getattr(transceiver.receiver, RECEIVER_CODECS)
                    for codec in transceiver._codecs:
                        known.setdefault(codec.payloadType, codec)
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
            self._source_of_mid.update(sending)
            self.up = {
                SLOT_OF[source]: self._up_by_mid[mid]
                for mid, source in sending.items()
                if mid in self._up_by_mid
            }
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            # The sockets exist now (gathered). In relay mode no up track attaches, so only the
            # guard against datagrams that would end aiortc's receiving task applies.
            receive_directly(self.pc, self._counters)
            self.negotiated = True
            return self.pc.localDescription.sdp

    def _learn_video(
        self, description: aiortc_sdp.SessionDescription, video_order: VideoOrder | None
    ) -> None:
        """What video this participant can receive and send, from its offer; a video m-line
        with none of the forwarded codecs is refused by name (not with aiortc's vague error)."""
        receiving: set[str] = set()
        every: set[str] = set()
        for media in description.media:
            if media.kind != "video":
                continue
            codecs = forwarded_video(media)
            if not codecs:
                offered = sorted(
                    {_describe(c) for c in media.rtp.codecs if c.name.lower() != "rtx"}
                )
                raise NegotiationFailed(
                    f"video m-line {media.rtp.muxId} offers none of the codecs the server "
                    "forwards (VP8, H264 constrained baseline with packetization-mode 1); "
                    f"it offers {', '.join(offered) or 'nothing'}"
                )
            every.update(codecs)
            if media.direction in ("sendonly", "sendrecv"):
                self.video_offered = codecs
            else:
                receiving.update(codecs)
        if every:
            self.decodes = frozenset(receiving or every)
        if self.video_offered:
            order = video_order(list(self.video_offered)) if video_order else self.video_offered
            self.video_sends = list(order)

    def _check_offer(self, description: aiortc_sdp.SessionDescription) -> None:
        if not description.media:
            raise NegotiationFailed(
                "the offer has no media sections: a participant who sends nothing must still "
                "offer one receive-only transceiver of each kind"
            )
        if len(description.media) > MAX_MEDIA_SECTIONS:
            raise NegotiationFailed(f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
        for media in description.media:
            if media.kind not in ("audio", "video"):
                raise NegotiationFailed(f"media of kind {media.kind!r} is not supported")

    def _publishing(
        self,
        description: aiortc_sdp.SessionDescription,
        sources: dict[str, str],
        allowed: frozenset[str],
    ) -> dict[str, str]:
        """mid -> source of every m-line the offer sends on that the server receives: as
        announced, as announced before, or the kind's default (microphone, camera). At most
        one track of each source, of the source's kind, and only sources in `allowed`."""
        receiving = {
            t.mid for t in self.pc.getTransceivers() if t.direction == "recvonly" and t.mid
        }
        known = {t.mid for t in self.pc.getTransceivers() if t.mid}
        out: dict[str, str] = {}
        for media in description.media:
            mid = media.rtp.muxId
            if media.direction not in ("sendonly", "sendrecv"):
                continue
            if mid in known and mid not in receiving:
                continue  # a down slot the client turned around: nothing is received on it
            source = sources.get(mid) or self._source_of_mid.get(mid) or DEFAULT_SOURCE[media.kind]
            before = self._source_of_mid.get(mid)
            if before is not None and before != source:
                raise NegotiationFailed(f"m-line {mid} was announced as {before}, not {source}")
            if SOURCE_KIND.get(source) != media.kind:
                raise NegotiationFailed(f"m-line {mid} is {media.kind}, not a {source} track")
            if source in out.values():
                raise NegotiationFailed(f"a participant publishes at most one {source} track")
            if source not in allowed:
                raise SourceForbidden(source)
            out[mid] = source
        unknown = set(sources) - {m.rtp.muxId for m in description.media}
        if unknown:
            raise NegotiationFailed(
                f"'sources' names mids the offer does not have: {sorted(unknown)}"
            )
        return out

    def _add_up(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        mid = transceiver.mid or ""
        if mid in self._up_by_mid:
            return
        if self._config.media_mode == "relay":
            # Not tapped: the receiver decodes, and the relay hands decoded frames on.
            self._up_by_mid[mid] = RelayUpTrack(
                kind,
                transceiver.receiver,
                lambda: self._ssrc_by_mid.get(mid),
                self._tasks,
                self._counters,
            )
            return
        self._up_by_mid[mid] = UpTrack(
            kind,
            transceiver.receiver,
            lambda: self._ssrc_by_mid.get(mid),
            self._tasks,
            self._counters,
            self._remb,
            rtt=lambda: peer_rtt(self.pc),
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
            writer = RtpWriter(transceiver.sender, self._counters, self._fanout)
            track = DownTrack(
                transceiver.kind,
                writer,
                self._counters,
                self._first_delivery,
                self._codec_refused,
            )
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

    def recv_counts(self) -> dict[str, int]:
        """Its receiving slots per kind: what an offer made again must carry at least."""
        return {kind: sum(1 for s in self.slots if s.kind == kind) for kind in ("audio", "video")}

    def _codec_refused(self, track: DownTrack, codec: str) -> None:
        publication = track.publication
        if publication is not None and self._on_codec_refused is not None:
            self._on_codec_refused(publication.participant, codec)

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
                else {
                    "participant": publication.participant,
                    "kind": slot.kind,
                    "source": SOURCE_OF_SLOT[publication.slot],
                }
            )
        return out

    def sent(self) -> tuple[int, int]:
        """RTP packets and payload bytes sent to this participant so far (aiortc's sender
        counters, which media.rtpwriter keeps up to date when forwarding)."""
        packets = octets = 0
        for slot in self.slots:
            reported = vars(slot.transceiver.sender)
            packets += reported.get(SENDER_PACKET_COUNT, 0)
            octets += reported.get(SENDER_OCTET_COUNT, 0)
        return packets, octets

    async def close(self) -> None:
        """Close once; shielded, because an interrupted close leaves decoder threads behind."""
        if self._closing is None:
            packets, octets = self.sent()
            self._counters.packets_forwarded_closed += packets
            self._counters.bytes_forwarded_closed += octets
            for slot in self.slots:
                slot.track.stop()
            for up in self._up_by_mid.values():
                if isinstance(up, RelayUpTrack):
                    up.close()
            self._closing = asyncio.ensure_future(self.pc.close())
        await asyncio.shield(self._closing)
