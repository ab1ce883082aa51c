"""pydantic against msgspec on the signaling hot path of a three-person call, side by side.

    python3 -m bench.signaling_messages [--rounds 20000]

Inbound: decode and validate what a client sends (offers, media state, chat, pings), through
`signaling.messages.parse_client_message` (pydantic) and an equivalent msgspec tagged union.
Outbound: build and encode what the server sends (answers with their track map, track maps,
media state, chat, pongs, quality, a participant joining), as the server does (a model, its
wire dict, json.dumps) and as msgspec would (a Struct, msgspec.json.encode). Prints microseconds
per message and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from signaling import down
from signaling.messages import parse_client_message

SDP = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host\r\n" * 40
TRACKS = {str(mid): {"participant": f"p-{mid % 3}", "kind": "video"} for mid in range(6)}
PARTICIPANT = {
    "participant": "p-1",
    "role": "nurse",
    "sector": "municipality",
    "name": None,
    "audio": True,
    "video": True,
    "host": False,
    "assisting": False,
    "reconnecting": False,
    "quality": "good",
}
INBOUND = [
    json.dumps(m)
    for m in (
        {"type": "offer", "id": "offer-1", "sdp": SDP},
        {"type": "media-state", "audio": True, "video": False},
        {"type": "ping", "id": "7"},
        {"type": "chat", "text": "Can you hear me?"},
        {"type": "ping"},
    )
]


class _Up(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    ref: str | None = msgspec.field(default=None, name="id")


class _Offer(_Up, tag="offer"):
    sdp: str


class _MediaState(_Up, tag="media-state"):
    audio: bool
    video: bool


class _Chat(_Up, tag="chat"):
    text: str


class _Ping(_Up, tag="ping"):
    pass


class _Down(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    pass


class _Slot(msgspec.Struct):
    participant: str
    kind: str
    source: str = "camera"


class _Participant(msgspec.Struct, omit_defaults=True):
    participant: str
    role: str
    sector: str
    name: str | None
    audio: bool
    video: bool
    assisting: bool
    reconnecting: bool
    host: bool | None = None
    quality: str | None = None


class _Answer(_Down, tag="answer"):
    sdp: str
    tracks: dict[str, _Slot | None]


class _Tracks(_Down, tag="tracks"):
    tracks: dict[str, _Slot | None]


class _MediaStateChanged(_Down, tag="media-state"):
    participant: str
    audio: bool
    video: bool


class _ChatPosted(_Down, tag="chat"):
    participant: str
    text: str
    time: float


class _Pong(_Down, tag="pong"):
    ref: str | None = None


class _Quality(_Down, tag="quality"):
    participant: str
    level: str


class _Joined(_Down, tag="participant-joined"):
    participant: _Participant


_DECODER = msgspec.json.Decoder(_Offer | _MediaState | _Chat | _Ping)


def _pydantic_out() -> list[bytes]:
    return [
        json.dumps(m.wire()).encode()
        for m in (
            down.Answer(sdp=SDP, tracks=TRACKS),
            down.Tracks(tracks=TRACKS),
            down.MediaStateChanged(participant="p-1", audio=True, video=False),
            down.ChatPosted(participant="p-1", text="Can you hear me?", time=1.0),
            down.Pong(ref="7"),
            down.Quality(participant="p-2", level="fair"),
            down.ParticipantJoined(participant=PARTICIPANT),
        )
    ]


def _msgspec_out() -> list[bytes]:
    slots: dict[str, _Slot | None] = {mid: _Slot(**slot) for mid, slot in TRACKS.items()}
    return [
        msgspec.json.encode(m)
        for m in (
            _Answer(sdp=SDP, tracks=slots),
            _Tracks(tracks=slots),
            _MediaStateChanged(participant="p-1", audio=True, video=False),
            _ChatPosted(participant="p-1", text="Can you hear me?", time=1.0),
            _Pong(ref="7"),
            _Quality(participant="p-2", level="fair"),
            _Joined(participant=msgspec.convert(PARTICIPANT, _Participant)),
        )
    ]


def _per_message(run: Callable[[], Any], messages: int, rounds: int) -> float:
    """Microseconds per message, best of three."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        best = min(best, time.perf_counter() - start)
    return best / rounds / messages * 1e6


def measure(rounds: int) -> dict[str, dict[str, float]]:
    """{"inbound" | "outbound": {"pydantic": us, "msgspec": us, "ratio": pydantic/msgspec}}."""
    assert [json.loads(a) for a in _pydantic_out()] == [json.loads(b) for b in _msgspec_out()]
    results = {
        "inbound": {
            "pydantic": _per_message(
                lambda: [parse_client_message(raw) for raw in INBOUND], len(INBOUND), rounds
            ),
            "msgspec": _per_message(
                lambda: [_DECODER.decode(raw) for raw in INBOUND], len(INBOUND), rounds
            ),
        },
        "outbound": {
            "pydantic": _per_message(_pydantic_out, 7, rounds),
            "msgspec": _per_message(_msgspec_out, 7, rounds),
        },
    }
    for figures in results.values():
        figures["ratio"] = figures["pydantic"] / figures["msgspec"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    results = measure(parser.parse_args().rounds)
    for path, figures in results.items():
        print(
            f"{path:9} pydantic {figures['pydantic']:6.2f} us/msg   msgspec"
            f" {figures['msgspec']:6.2f} us/msg   ratio {figures['ratio']:.1f}x"
        )


if __name__ == "__main__":
    main()
