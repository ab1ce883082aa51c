"""Server-to-client ("down") messages of the signaling protocol, as pydantic models.

Built where they are sent and turned into the wire dict by `wire()`: the session's outbox, the
relay between nodes and the socket carry plain JSON objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

QualityLevel = Literal["good", "fair", "poor"]


def _absent(value: object) -> bool:
    return value is None


class DownModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DownMessage(DownModel):
    def wire(self) -> dict[str, Any]:
        """The JSON object sent to the client."""
        return self.model_dump(mode="json")


class SeatInfo(DownModel):
    """A seat of the visit: pseudonymous id, role, sector and display name."""

    participant: str
    role: str
    sector: str
    name: str | None


class ParticipantInfo(SeatInfo):
    """A participant as the tiles show them."""

    audio: bool
    video: bool
    host: bool | None = Field(default=None, exclude_if=_absent)
    assisting: bool
    reconnecting: bool
    quality: QualityLevel | None = Field(default=None, exclude_if=_absent)


class VisitInfo(DownModel):
    id: str
    kind: str
    state: str
    #: Unix time the call began (its first participant), None before; `now` is the server's
    #: time, so that a page counts the visit's length with no regard to its own clock.
    started_at: float | None
    now: float


class Recv(DownModel):
    """How many receive-only transceivers of each kind an offer should carry."""

    audio: int = Field(ge=0)
    video: int = Field(ge=0)


class TrackSlot(DownModel):
    participant: str
    kind: Literal["audio", "video"]
    #: What the track carries: the face camera and microphone, a shared screen, a second camera.
    source: Literal["microphone", "camera", "screen", "camera2"] = "camera"


class ChatPosted(DownMessage):
    type: Literal["chat"] = "chat"
    participant: str
    text: str
    time: float


class CallState(DownModel):
    """What a participant entering the call needs: who is there, the chat, the slots."""

    participants: list[ParticipantInfo]
    chat: list[ChatPosted]
    recv: Recv


class Joined(DownMessage, CallState):
    type: Literal["joined"] = "joined"
    visit: VisitInfo
    you: ParticipantInfo
    reconnect: bool
    waiting: bool
    ice_servers: list[dict[str, Any]]
    #: The sources this seat may publish (policy and the token's `sources` grant).
    sources: list[Literal["microphone", "camera", "screen", "camera2"]]
    waiting_room: list[ParticipantInfo] | None = Field(default=None, exclude_if=_absent)
    outcomes: list[str] | None = Field(default=None, exclude_if=_absent)
    barred: list[SeatInfo] | None = Field(default=None, exclude_if=_absent)


class Admitted(DownMessage, CallState):
    type: Literal["admitted"] = "admitted"


class Answer(DownMessage):
    type: Literal["answer"] = "answer"
    sdp: str
    tracks: dict[str, TrackSlot | None]


class Tracks(DownMessage):
    type: Literal["tracks"] = "tracks"
    tracks: dict[str, TrackSlot | None]


class Renegotiate(DownMessage):
    type: Literal["renegotiate"] = "renegotiate"
    recv: Recv


class VideoUnsupported(DownMessage):
    type: Literal["video-unsupported"] = "video-unsupported"
    participant: str
    codec: str


class MediaRestarted(DownMessage):
    type: Literal["media-restarted"] = "media-restarted"
    recv: Recv


class ParticipantJoined(DownMessage):
    type: Literal["participant-joined"] = "participant-joined"
    participant: ParticipantInfo


class ParticipantReconnected(DownMessage):
    type: Literal["participant-reconnected"] = "participant-reconnected"
    participant: ParticipantInfo


class ParticipantReconnecting(DownMessage):
    type: Literal["participant-reconnecting"] = "participant-reconnecting"
    participant: str


class ParticipantLeft(DownMessage):
    type: Literal["participant-left"] = "participant-left"
    participant: str


class MediaStateChanged(DownMessage):
    type: Literal["media-state"] = "media-state"
    participant: str
    audio: bool
    video: bool


class AssistingChanged(DownMessage):
    type: Literal["assisting"] = "assisting"
    participant: str
    on: bool


class Quality(DownMessage):
    type: Literal["quality"] = "quality"
    participant: str
    level: QualityLevel


class Waiting(DownMessage):
    type: Literal["waiting"] = "waiting"
    participant: ParticipantInfo
    repeat: bool


class WaitingEnded(DownMessage):
    type: Literal["waiting-ended"] = "waiting-ended"
    participant: str


class Barred(DownMessage):
    type: Literal["barred"] = "barred"
    participant: SeatInfo


class Readmitted(DownMessage):
    type: Literal["readmitted"] = "readmitted"
    participant: str


class MuteAsked(DownMessage):
    type: Literal["mute-request"] = "mute-request"
    by: str | None


class FallbackPhoneAnnounced(DownMessage):
    type: Literal["fallback-phone"] = "fallback-phone"
    by: str | None


class OutcomeRecorded(DownMessage):
    type: Literal["outcome-recorded"] = "outcome-recorded"
    outcome: str
    ref: str | None = Field(default=None, exclude_if=_absent)


class VisitEnded(DownMessage):
    type: Literal["visit-ended"] = "visit-ended"
    #: Why: ended by a host, by the server, or cancelled by its booker (the page says which).
    reason: Literal["ended", "cancelled"] = "ended"


class ServerShutdown(DownMessage):
    type: Literal["server-shutdown"] = "server-shutdown"
    moving: bool
    seconds: float


class Pong(DownMessage):
    type: Literal["pong"] = "pong"
    ref: str | None = Field(default=None, exclude_if=_absent)


class RefusedCandidateInfo(DownModel):
    address: str
    port: int
    reason: str


class Error(DownMessage):
    """A refused message or a closing session; see PROTOCOL.md for the codes."""

    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool
    ref: str | None = Field(default=None, exclude_if=_absent)
    retry_after: float | None = Field(default=None, exclude_if=_absent)
    candidates: list[RefusedCandidateInfo] | None = Field(default=None, exclude_if=_absent)


DOWN_MESSAGES: tuple[type[DownMessage], ...] = (
    Joined,
    Admitted,
    Answer,
    Tracks,
    Renegotiate,
    VideoUnsupported,
    MediaRestarted,
    ParticipantJoined,
    ParticipantReconnecting,
    ParticipantReconnected,
    ParticipantLeft,
    MediaStateChanged,
    AssistingChanged,
    Quality,
    ChatPosted,
    Waiting,
    WaitingEnded,
    Barred,
    Readmitted,
    MuteAsked,
    FallbackPhoneAnnounced,
    OutcomeRecorded,
    VisitEnded,
    ServerShutdown,
    Pong,
    Error,
)
