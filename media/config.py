"""Settings the media engine needs, handed down by the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast, get_args

#: How the SFU carries media from a publisher to its subscribers:
#: `forward` hands the publisher's encoded frames to every subscriber untouched (the default);
#: `relay` is the baseline it is measured against: aiortc's MediaRelay, which decodes each
#: publisher once and encodes again for every subscriber (media/relay.py).
MediaMode = Literal["forward", "relay"]
MEDIA_MODES: tuple[MediaMode, ...] = get_args(MediaMode)

#: The forwarding path's last step (media.fanout): `auto` compiled when it is built, `on`
#: compiled or refuse to start, `off` Python.
Fastpath = Literal["auto", "on", "off"]
FASTPATHS: tuple[Fastpath, ...] = get_args(Fastpath)


def parse_fastpath(text: str) -> Fastpath:
    """`auto`, `on` or `off` (case and surrounding blanks ignored); ValueError otherwise."""
    value = text.strip().lower()
    if value in FASTPATHS:
        return cast(Fastpath, value)
    raise ValueError(f"fastpath must be one of {', '.join(FASTPATHS)}, got {text!r}")


def parse_media_mode(text: str) -> MediaMode:
    """`forward` or `relay` (case and surrounding blanks ignored); ValueError otherwise."""
    value = text.strip().lower()
    for mode in MEDIA_MODES:
        if value == mode:
            return mode
    raise ValueError(f"media mode must be one of {', '.join(MEDIA_MODES)}, got {text!r}")


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @classmethod
    def from_browser(cls, entry: dict[str, object]) -> IceServer:
        urls = entry["urls"]
        username, credential = entry.get("username"), entry.get("credential")
        return cls(
            urls=(urls,) if isinstance(urls, str) else tuple(str(u) for u in urls),  # type: ignore[attr-defined]
            username=username if isinstance(username, str) else None,
            credential=credential if isinstance(credential, str) else None,
        )

    def to_browser(self) -> dict[str, object]:
        out: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class MediaConfig:
    #: Local addresses offered as ICE host candidates; empty means every non-loopback interface.
    ice_hosts: tuple[str, ...] = ()
    #: STUN/TURN servers; empty by default, so the server contacts no third party.
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)
    #: `forward` (encoded frames, no decoding) or `relay` (decode + re-encode per subscriber).
    media_mode: MediaMode = "forward"
    #: Networks (CIDR) remote ICE candidates may lie in besides public addresses; None: the
    #: non-public ICE hosts themselves (media.candidates).
    ice_allowed_networks: tuple[str, ...] | None = None
    #: Compiled or Python forwarding (media.fanout).
    fastpath: Fastpath = "auto"

    def __post_init__(self) -> None:
        if self.media_mode not in MEDIA_MODES:
            raise ValueError(f"unknown media mode {self.media_mode!r}")
        if self.fastpath not in FASTPATHS:
            raise ValueError(f"unknown fastpath {self.fastpath!r}")
