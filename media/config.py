"""Settings the media engine needs, handed down by the server."""

from __future__ import annotations

from dataclasses import dataclass, field


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
