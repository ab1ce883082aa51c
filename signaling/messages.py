"""Client-to-server ("up") messages of the signaling protocol, as pydantic models: one tagged
union, validated strictly, refused with the protocol's precise codes (see PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from media.candidates import RefusedCandidate
from rooms.call import HOST_MESSAGES
from signaling.down import Error
from signaling.errors import ProtocolError
from signaling.safejson import JsonRefused, load_json

#: Largest text message a client may send; an offer for a full visit is about 20 KiB.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CHAT_CHARS = 500

#: The codes `parse_client_message` refuses a message with: it is not a message of the protocol.
MALFORMED_CODES = frozenset(
    {
        "message-too-large",
        "malformed-json",
        "json-too-deep",
        "number-too-large",
        "invalid-message",
        "unknown-type",
        "invalid-field",
    }
)


class UpMessage(BaseModel):
    """A message a client sends; `id` (any string) comes back as `ref` in the answer."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    ref: str | None = Field(default=None, alias="id")


class Join(UpMessage):
    """The first message of every socket: the invite link's token and its visit."""

    type: Literal["join"] = "join"
    token: str
    visit: str


class Offer(UpMessage):
    type: Literal["offer"] = "offer"
    sdp: str
    #: mid -> source ("camera", "microphone", "screen", "camera2") of the tracks it sends.
    sources: dict[str, str] | None = None


class MediaState(UpMessage):
    type: Literal["media-state"] = "media-state"
    audio: bool
    video: bool


class EndVisit(UpMessage):
    type: Literal["end"] = "end"


class Admit(UpMessage):
    type: Literal["admit"] = "admit"
    participant: str


class AdmitAll(UpMessage):
    type: Literal["admit-all"] = "admit-all"


class Decline(UpMessage):
    type: Literal["decline"] = "decline"
    participant: str


class Remove(UpMessage):
    type: Literal["remove"] = "remove"
    participant: str


class Readmit(UpMessage):
    type: Literal["readmit"] = "readmit"
    participant: str


class MuteRequest(UpMessage):
    type: Literal["mute-request"] = "mute-request"
    participant: str


class FallbackPhone(UpMessage):
    type: Literal["fallback-phone"] = "fallback-phone"


class RecordOutcome(UpMessage):
    type: Literal["outcome"] = "outcome"
    outcome: str
    note: str | None = None


class Chat(UpMessage):
    type: Literal["chat"] = "chat"
    text: str = Field(max_length=MAX_CHAT_CHARS, pattern=r"\S")


class Assisting(UpMessage):
    type: Literal["assisting"] = "assisting"
    on: bool


class MediaRestart(UpMessage):
    type: Literal["media-restart"] = "media-restart"


class Leave(UpMessage):
    type: Literal["leave"] = "leave"


class Ping(UpMessage):
    type: Literal["ping"] = "ping"


#: Messages only the visit's host may send: those HOST_MESSAGES (the one rights table, in
#: rooms.call) names, each authorized against the action it gives.
HOST_TYPES = frozenset(HOST_MESSAGES)
HostMessage = (
    EndVisit
    | Admit
    | AdmitAll
    | Decline
    | Remove
    | Readmit
    | MuteRequest
    | FallbackPhone
    | RecordOutcome
)

ClientMessage = (
    Join | Offer | MediaState | HostMessage | Chat | Assisting | MediaRestart | Leave | Ping
)

UP_MESSAGES: tuple[type[UpMessage], ...] = (
    Join,
    Offer,
    MediaState,
    EndVisit,
    Admit,
    AdmitAll,
    Decline,
    Remove,
    Readmit,
    MuteRequest,
    FallbackPhone,
    RecordOutcome,
    Chat,
    Assisting,
    MediaRestart,
    Leave,
    Ping,
)


def _tag(model: type[BaseModel]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


#: type on the wire -> model
SCHEMAS: dict[str, type[UpMessage]] = {_tag(m): m for m in UP_MESSAGES}
#: model -> its type on the wire
TYPE_OF: dict[type, str] = {m: kind for kind, m in SCHEMAS.items()}

_UNION: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)


def _refusal(raw: str) -> ProtocolError:
    """What is wrong with a message the union refused, as the protocol's error code."""
    try:
        data: Any = load_json(raw)
    except JsonRefused as exc:
        return ProtocolError(exc.code, exc.message)
    if not isinstance(data, dict):
        return ProtocolError("invalid-message", "a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        return ProtocolError("invalid-message", "a message needs a string field 'type'")
    model = SCHEMAS.get(kind)
    if model is None:
        return ProtocolError("unknown-type", f"unknown message type {kind!r}")
    try:
        model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        if kind == "chat" and error["type"] == "string_too_long":
            return ProtocolError(
                "chat-too-long", f"a chat message has at most {MAX_CHAT_CHARS} characters"
            )
        if error["type"] == "extra_forbidden":
            return ProtocolError("invalid-field", f"unknown field {where!r} in {kind!r}")
        return ProtocolError("invalid-field", f"field {where!r} of {kind!r}: {error['msg']}")
    return ProtocolError("invalid-message", "the message could not be read")


#: The sources an offer may name (rooms.policy.SOURCES), and how many mids at most.
OFFER_SOURCES = frozenset({"microphone", "camera", "screen", "camera2"})
MAX_OFFER_SOURCES = 8


def parse_client_message(raw: str) -> ClientMessage:
    """Parse and validate one client message, or raise ProtocolError with a precise code.

    A valid message takes one pass through pydantic's JSON parser; anything else is read again
    with `safejson` to say exactly what is wrong with it."""
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "message-too-large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        message = _UNION.validate_json(raw)
    except ValueError:
        raise _refusal(raw) from None
    if isinstance(message, Offer) and message.sources is not None:
        _check_sources(message.sources)
    return message


def _check_sources(sources: dict[str, Any]) -> None:
    if len(sources) > MAX_OFFER_SOURCES:
        raise ProtocolError("invalid-field", f"'sources' names at most {MAX_OFFER_SOURCES} mids")
    for mid, source in sources.items():
        if len(mid) > 16 or not isinstance(source, str):
            raise ProtocolError("invalid-field", "'sources' maps short mids to source names")
        if source not in OFFER_SOURCES:
            raise ProtocolError(
                "unknown-source",
                f"unknown source {source!r}; one of {', '.join(sorted(OFFER_SOURCES))}",
            )


def error_message(
    code: str, message: str, ref: str | None = None, fatal: bool = False, **details: Any
) -> Error:
    """An `error` message; `details` are its optional fields (e.g. `retry_after`)."""
    return Error(code=code, message=message, fatal=fatal, ref=ref, **details)


def refused_candidates_message(
    refused: Sequence[RefusedCandidate], ref: str | None = None
) -> Error:
    """Not fatal: the call goes on over the candidates that were accepted."""
    reasons = ", ".join(f"{r.address}:{r.port} ({r.reason})" for r in refused)
    return Error(
        code="ice-candidate-refused",
        message=f"the server will not contact {len(refused)} of the offer's ICE candidates:"
        f" {reasons}",
        fatal=False,
        ref=ref,
        candidates=[r.to_json() for r in refused],
    )
