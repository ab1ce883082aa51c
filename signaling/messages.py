"""Message schemas of the signaling protocol (see PROTOCOL.md), validated field by field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from media.candidates import RefusedCandidate
from signaling.errors import ProtocolError
from signaling.safejson import JsonRefused, load_json

#: Largest text message a client may send; an offer for a full visit is about 20 KiB.
MAX_MESSAGE_BYTES = 64 * 1024

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


@dataclass(frozen=True)
class Join:
    token: str
    visit: str
    ref: str | None = None


@dataclass(frozen=True)
class Offer:
    sdp: str
    ref: str | None = None
    #: mid -> source ("camera", "microphone", "screen", "camera2") of the tracks it sends.
    sources: dict[str, str] | None = None


@dataclass(frozen=True)
class MediaState:
    audio: bool
    video: bool
    ref: str | None = None


@dataclass(frozen=True)
class EndVisit:
    ref: str | None = None


@dataclass(frozen=True)
class Admit:
    participant: str
    ref: str | None = None


@dataclass(frozen=True)
class AdmitAll:
    ref: str | None = None


@dataclass(frozen=True)
class Decline:
    participant: str
    ref: str | None = None


@dataclass(frozen=True)
class Remove:
    participant: str
    ref: str | None = None


@dataclass(frozen=True)
class Readmit:
    participant: str
    ref: str | None = None


@dataclass(frozen=True)
class MuteRequest:
    participant: str
    ref: str | None = None


@dataclass(frozen=True)
class FallbackPhone:
    ref: str | None = None


@dataclass(frozen=True)
class RecordOutcome:
    outcome: str
    note: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class Chat:
    text: str
    ref: str | None = None


@dataclass(frozen=True)
class Assisting:
    on: bool
    ref: str | None = None


@dataclass(frozen=True)
class MediaRestart:
    ref: str | None = None


@dataclass(frozen=True)
class Leave:
    ref: str | None = None


@dataclass(frozen=True)
class Ping:
    ref: str | None = None


#: Messages only the visit's host may send.
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

MAX_CHAT_CHARS = 500

#: type -> (class, {field: python type})
SCHEMAS: dict[str, tuple[type, dict[str, type]]] = {
    "join": (Join, {"token": str, "visit": str}),
    "offer": (Offer, {"sdp": str}),
    "media-state": (MediaState, {"audio": bool, "video": bool}),
    "end": (EndVisit, {}),
    "admit": (Admit, {"participant": str}),
    "admit-all": (AdmitAll, {}),
    "decline": (Decline, {"participant": str}),
    "remove": (Remove, {"participant": str}),
    "readmit": (Readmit, {"participant": str}),
    "mute-request": (MuteRequest, {"participant": str}),
    "fallback-phone": (FallbackPhone, {}),
    "outcome": (RecordOutcome, {"outcome": str}),
    "chat": (Chat, {"text": str}),
    "assisting": (Assisting, {"on": bool}),
    "media-restart": (MediaRestart, {}),
    "leave": (Leave, {}),
    "ping": (Ping, {}),
}

#: class -> its type on the wire
TYPE_OF: dict[type, str] = {cls: kind for kind, (cls, _fields) in SCHEMAS.items()}

#: type -> {field: python type} of fields that may be left out.
OPTIONAL: dict[str, dict[str, type]] = {"outcome": {"note": str}, "offer": {"sources": dict}}

#: The sources an offer may name (rooms.policy.SOURCES), and how many mids at most.
OFFER_SOURCES = frozenset({"microphone", "camera", "screen", "camera2"})
MAX_OFFER_SOURCES = 8


def parse_client_message(raw: str) -> ClientMessage:
    """Parse and validate one client message, or raise ProtocolError with a precise code."""
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "message-too-large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        data: Any = load_json(raw)
    except JsonRefused as exc:
        raise ProtocolError(exc.code, exc.message) from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid-message", "a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid-message", "a message needs a string field 'type'")
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError("unknown-type", f"unknown message type {kind!r}")
    cls, fields = schema
    ref = data.get("id")
    if ref is not None and not isinstance(ref, str):
        raise ProtocolError("invalid-field", "field 'id' must be a string")
    optional = OPTIONAL.get(kind, {})
    unknown = set(data) - set(fields) - set(optional) - {"type", "id"}
    if unknown:
        raise ProtocolError("invalid-field", f"unknown field(s) {sorted(unknown)} in {kind!r}")
    values: dict[str, Any] = {}
    for name, expected in fields.items():
        if name not in data:
            raise ProtocolError("invalid-field", f"{kind!r} needs field {name!r}")
        value = data[name]
        if type(value) is not expected:
            raise ProtocolError(
                "invalid-field", f"field {name!r} of {kind!r} must be a {expected.__name__}"
            )
        values[name] = value
    for name, expected in optional.items():
        if name in data and data[name] is not None:
            if type(data[name]) is not expected:
                raise ProtocolError(
                    "invalid-field", f"field {name!r} of {kind!r} must be a {expected.__name__}"
                )
            values[name] = data[name]
    if kind == "chat" and len(values["text"]) > MAX_CHAT_CHARS:
        raise ProtocolError(
            "chat-too-long", f"a chat message has at most {MAX_CHAT_CHARS} characters"
        )
    if kind == "chat" and not values["text"].strip():
        raise ProtocolError("invalid-field", "a chat message needs some text")
    if kind == "offer" and "sources" in values:
        _check_sources(values["sources"])
    message: ClientMessage = cls(**values, ref=ref)
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
    code: str, message: str, ref: str | None = None, fatal: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message, "fatal": fatal}
    if ref is not None:
        out["ref"] = ref
    return out


def refused_candidates_message(
    refused: Sequence[RefusedCandidate], ref: str | None = None
) -> dict[str, Any]:
    """Not fatal: the call goes on over the candidates that were accepted."""
    reasons = ", ".join(f"{r.address}:{r.port} ({r.reason})" for r in refused)
    out = error_message(
        "ice-candidate-refused",
        f"the server will not contact {len(refused)} of the offer's ICE candidates: {reasons}",
        ref,
    )
    out["candidates"] = [r.to_json() for r in refused]
    return out
