"""Settings. Each is an environment variable SCREENVISIT_<NAME> and a `serve` flag --<name>.

SETTINGS below is the one table; README's settings table is generated from the same entries.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.candidates import parse_networks
from media.config import (
    Fastpath,
    IceServer,
    MediaConfig,
    MediaMode,
    parse_fastpath,
    parse_media_mode,
)
from rooms.cluster import DEFAULT_NODE_TTL
from rooms.link_window import LinkWindow
from rooms.outcomes import DEFAULT_OUTCOMES


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return "SCREENVISIT_" + self.name.upper().replace("-", "_")

    @property
    def flag(self) -> str:
        return "--" + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "address the HTTP server listens on"),
    Setting("port", "8080", "port the HTTP server listens on"),
    Setting("data-dir", "./screenvisit-data", "folder for the signing key and the SQLite metadata"),
    Setting("public-url", "", "base URL in invite links (default http://HOST:PORT)"),
    Setting(
        "ice-hosts",
        "127.0.0.1",
        "comma-separated local addresses offered as ICE candidates;"
        " empty offers every non-loopback interface",
    ),
    Setting(
        "ice-allowed-networks",
        "",
        "comma-separated networks (CIDR) a client's ICE candidates may be in besides public"
        " addresses, e.g. 10.20.0.0/16 for clients on your own network; empty allows only the"
        " non-public ICE hosts themselves (127.0.0.1 by default). Loopback, link-local, private"
        " and other special ranges are refused unless listed",
    ),
    Setting(
        "ice-servers",
        "[]",
        'STUN/TURN servers as JSON, e.g. [{"urls": ["turn:turn.example'
        ':443"], "username": "u", "credential": "c"}]; none by default',
    ),
    Setting("issuer", "screenvisit-local", "the `iss` this server puts in the links it signs"),
    Setting("audience", "screenvisit", "the `aud` every token must carry"),
    Setting("org", "demo", "organisation id used by `visit create` for the visit's host"),
    Setting("link-hours", "12", "how long an invite link stays valid, in hours"),
    Setting(
        "link-opens-minutes",
        "15",
        "minutes before a planned start from which its links open the visit (the join page"
        " says when it opens, and opens it by itself then)",
    ),
    Setting(
        "link-grace-minutes",
        "30",
        "minutes after a planned end until which its links still open the visit (a call in"
        " progress is never cut off)",
    ),
    Setting("log-level", "info", "debug, info, warning or error"),
    Setting(
        "reconnect-grace",
        "60",
        "seconds a dropped participant keeps seat and media without the waiting room again",
    ),
    Setting(
        "empty-timeout",
        "1800",
        "seconds after a visit's planned end (or creation) before one nobody joined is closed",
    ),
    Setting(
        "outcomes",
        "handled-remotely,physical-visit-needed,referred-to-hospital,admission-avoided,"
        "new-video-visit,other",
        "the clinical outcomes a host picks from when a visit ends (comma-separated codes)",
    ),
    Setting("quality-interval", "5", "seconds between connection-quality samples"),
    Setting("departure-timeout", "120", "seconds after everyone has left before the visit ends"),
    Setting(
        "media-silence",
        "6",
        "seconds without a packet from a publishing participant whose socket lives before it is"
        " cut off (media-failed, reason no-media-received)",
    ),
    Setting(
        "knock-pause",
        "60",
        "seconds a guest the host declined waits before knocking again (shown as a repeat)",
    ),
    Setting(
        "redis-url",
        "",
        "Redis URL for live visit state (redis://host:6379/0); empty keeps it in memory",
    ),
    Setting(
        "database-url",
        "",
        "PostgreSQL URL for metadata and the audit log"
        " (postgresql://...); empty keeps them in SQLite in the data folder",
    ),
    Setting(
        "database-timeout",
        "5",
        "seconds one database statement may take (SQLite also waits this long for a lock);"
        " a slower one fails, and events and outcomes then go to the outbox",
    ),
    Setting(
        "database-connect-timeout",
        "5",
        "seconds connecting to PostgreSQL (or waiting for a pooled connection) may take",
    ),
    Setting(
        "outbox-dir",
        "",
        "folder of the local outbox that keeps events and outcomes while the database is down"
        " (default DATA_DIR/outbox); with SQLite, put it on another filesystem than the"
        " data folder, so that a full disk does not take both",
    ),
    Setting("trust-file", "", "JSON file naming the trusted token issuers (see README)"),
    Setting("dev-issuers", "false", "allow HS256 development issuers in the trust file"),
    Setting("uvloop", "true", "run on uvloop (Linux, when installed); false: the standard loop"),
    Setting(
        "fastpath",
        "auto",
        "forwarding's last step (header, SRTP, send): auto compiled when built, on compiled or"
        " refuse to start, off Python",
    ),
    Setting(
        "evaluation-days",
        "1825",
        "days pseudonymous evaluation data (events, quality, outcomes, answers) is kept",
    ),
    Setting("audit-days", "183", "days the audit log is kept before automatic deletion"),
    Setting(
        "auth-failures-per-minute",
        "20",
        "failed authentications one client address may make per minute before it is refused",
    ),
    Setting(
        "trusted-proxies",
        "",
        "comma-separated reverse-proxy addresses whose X-Forwarded-For is believed",
    ),
    Setting(
        "node-id",
        "",
        "this node's id among the nodes sharing one Redis (default HOSTNAME-PORT)",
    ),
    Setting(
        "announce-address",
        "",
        "the address this node registers and offers for media (its ICE host candidate);"
        " default the first of the ICE hosts",
    ),
    Setting(
        "node-ttl",
        "6",
        "seconds a node's registration in Redis lives without a heartbeat (it renews it every"
        " third of that): a node silent longer is taken for dead and its visits move",
    ),
    Setting(
        "drain-timeout",
        "60",
        "seconds a stopping (SIGTERM) or drained node waits for its visits to end before it"
        " hands them to other nodes",
    ),
    Setting(
        "frame-ancestors",
        "'none'",
        "CSP frame-ancestors sources that may embed the pages in a frame (e.g. an EHR:"
        " https://ehr.example.dk); 'none' forbids framing",
    ),
    Setting(
        "http-header-timeout",
        "10",
        "seconds a client has to send a request's headers after connecting or after the previous"
        " response (also how long an idle keep-alive connection stays open)",
    ),
    Setting("http-body-timeout", "20", "seconds a client has to send a request's body"),
    Setting(
        "http-connections-per-address",
        "100",
        "open HTTP connections (not yet a WebSocket) one client address may hold; more are"
        " closed at once. Trusted proxies are exempt",
    ),
    Setting(
        "media-mode",
        "forward",
        "forward: encoded frames go to subscribers untouched; relay: aiortc's MediaRelay"
        " decodes each publisher and re-encodes for every subscriber (a baseline, far more CPU)",
    ),
    Setting(
        "metrics-port",
        "",
        "port of the Prometheus /metrics endpoint (each `serve --workers` worker adds its"
        " number); empty serves none",
    ),
    Setting("metrics-host", "127.0.0.1", "address the /metrics endpoint listens on"),
    Setting("log-format", "console", "json (one JSON object a line) or console"),
    Setting(
        "webhook-url",
        "",
        "comma-separated endpoints that receive signed lifecycle webhooks; empty sends none",
    ),
    Setting(
        "webhook-secret",
        "",
        "the webhooks' signing secret, whsec_ and base64 (needed with a webhook URL)",
    ),
    Setting(
        "webhook-first-retry",
        "5",
        "seconds before a failed webhook is sent again; each retry waits twice as long"
        " (at most an hour), for 24 hours",
    ),
    Setting(
        "worker",
        "0",
        "this process's number under `serve --workers` (set by the supervisor): a metrics label",
    ),
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./screenvisit-data")
    public_url: str = ""
    ice_hosts: tuple[str, ...] = ("127.0.0.1",)
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)
    #: None: what the ICE hosts imply (media.candidates).
    ice_allowed_networks: tuple[str, ...] | None = None
    issuer: str = "screenvisit-local"
    audience: str = "screenvisit"
    org: str = "demo"
    link_hours: float = 12.0
    link_opens_minutes: float = 15.0
    link_grace_minutes: float = 30.0
    log_level: str = "info"
    reconnect_grace: float = 60.0
    departure_timeout: float = 120.0
    media_silence: float = 6.0
    knock_pause: float = 60.0
    quality_interval: float = 5.0
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES
    empty_timeout: float = 1800.0
    redis_url: str = ""
    database_url: str = ""
    database_timeout: float = 5.0
    database_connect_timeout: float = 5.0
    outbox_dir: Path | None = None
    trust_file: Path | None = None
    dev_issuers: bool = False
    uvloop: bool = True
    fastpath: Fastpath = "auto"
    audit_days: float = 183.0
    evaluation_days: float = 1825.0
    auth_failures_per_minute: int = 20
    trusted_proxies: tuple[str, ...] = ()
    media_mode: MediaMode = "forward"
    node_id: str = ""
    announce_address: str = ""
    node_ttl: float = DEFAULT_NODE_TTL
    drain_timeout: float = 60.0
    frame_ancestors: str = "'none'"
    http_header_timeout: float = 10.0
    http_body_timeout: float = 20.0
    http_connections_per_address: int = 100
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "console"
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    webhook_first_retry: float = 5.0
    worker: int = 0

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "metadata.sqlite3"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "signing-key.pem"

    @property
    def node_name(self) -> str:
        return self.node_id or f"{socket.gethostname()}-{self.port}"

    @property
    def media_address(self) -> str:
        """Where this node receives media: the announced address, or the first ICE host."""
        return self.announce_address or (self.ice_hosts[0] if self.ice_hosts else self.host)

    def link_window(self) -> LinkWindow:
        return LinkWindow(self.link_opens_minutes * 60, self.link_grace_minutes * 60)

    def media(self) -> MediaConfig:
        hosts = (self.announce_address,) if self.announce_address else self.ice_hosts
        return MediaConfig(
            ice_hosts=hosts,
            ice_servers=self.ice_servers,
            ice_allowed_networks=self.ice_allowed_networks,
            fastpath=self.fastpath,
        )

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Defaults, then SCREENVISIT_* variables, then explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        raw = {s.name: env.get(s.env, s.default) for s in SETTINGS}
        for name, value in (overrides or {}).items():
            if value is not None:
                raw[name.replace("_", "-")] = str(value)
        try:
            return cls(
                host=raw["host"],
                port=int(raw["port"]),
                data_dir=Path(raw["data-dir"]),
                public_url=raw["public-url"],
                ice_hosts=_list(raw["ice-hosts"]),
                ice_servers=parse_ice_servers(raw["ice-servers"]),
                ice_allowed_networks=_networks(raw["ice-allowed-networks"]),
                issuer=raw["issuer"],
                audience=raw["audience"],
                org=raw["org"],
                link_hours=float(raw["link-hours"]),
                link_opens_minutes=_not_negative(raw["link-opens-minutes"]),
                link_grace_minutes=_not_negative(raw["link-grace-minutes"]),
                log_level=raw["log-level"],
                reconnect_grace=float(raw["reconnect-grace"]),
                departure_timeout=float(raw["departure-timeout"]),
                media_silence=_positive(raw["media-silence"]),
                knock_pause=float(raw["knock-pause"]),
                quality_interval=float(raw["quality-interval"]),
                outcomes=_list(raw["outcomes"]) or DEFAULT_OUTCOMES,
                empty_timeout=float(raw["empty-timeout"]),
                redis_url=raw["redis-url"],
                database_url=raw["database-url"],
                database_timeout=_positive(raw["database-timeout"]),
                database_connect_timeout=_positive(raw["database-connect-timeout"]),
                outbox_dir=Path(raw["outbox-dir"]) if raw["outbox-dir"] else None,
                trust_file=Path(raw["trust-file"]) if raw["trust-file"] else None,
                dev_issuers=_flag(raw["dev-issuers"]),
                uvloop=_flag(raw["uvloop"]),
                fastpath=parse_fastpath(raw["fastpath"]),
                audit_days=float(raw["audit-days"]),
                evaluation_days=float(raw["evaluation-days"]),
                auth_failures_per_minute=int(raw["auth-failures-per-minute"]),
                trusted_proxies=_list(raw["trusted-proxies"]),
                media_mode=parse_media_mode(raw["media-mode"]),
                node_id=raw["node-id"],
                announce_address=raw["announce-address"],
                node_ttl=_positive(raw["node-ttl"]),
                drain_timeout=float(raw["drain-timeout"]),
                frame_ancestors=parse_frame_ancestors(raw["frame-ancestors"]),
                http_header_timeout=_positive(raw["http-header-timeout"]),
                http_body_timeout=_positive(raw["http-body-timeout"]),
                http_connections_per_address=int(_positive(raw["http-connections-per-address"])),
                metrics_port=int(raw["metrics-port"]) if raw["metrics-port"] else None,
                metrics_host=raw["metrics-host"],
                log_format=_log_format(raw["log-format"]),
                webhook_urls=_list(raw["webhook-url"]),
                webhook_secret=_webhook_secret(raw["webhook-secret"], raw["webhook-url"]),
                webhook_first_retry=_positive(raw["webhook-first-retry"]),
                worker=int(raw["worker"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise SettingsError(str(exc)) from exc


class SettingsError(ValueError):
    pass


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _networks(text: str) -> tuple[str, ...] | None:
    networks = _list(text)
    if not networks:
        return None
    return tuple(str(network) for network in parse_networks(networks))


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("json", "console"):
        raise SettingsError(f"log-format must be json or console, not {text!r}")
    return value


def _webhook_secret(secret: str, urls: str) -> str:
    """The secret as given, checked: never echoed in an error."""
    if not _list(urls):
        return secret
    if not secret.startswith("whsec_"):
        raise SettingsError("webhook-url needs webhook-secret, a whsec_... value")
    body = secret[len("whsec_") :]
    try:
        if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", body) or not base64.b64decode(body + "=="):
            raise ValueError
    except ValueError:
        raise SettingsError("webhook-secret is not whsec_ followed by base64") from None
    return secret


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise SettingsError(f"expected a positive number, got {text!r}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise SettingsError(f"expected a number of at least 0, got {text!r}")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"expected true or false, got {text!r}")


def parse_frame_ancestors(text: str) -> str:
    """A CSP source list: space-separated sources, nothing that could end the directive or the
    header (no `;`, `,`, quotes other than 'self' and 'none', control characters)."""
    if any(not c.isascii() or not (c.isprintable() or c == " ") for c in text):
        raise SettingsError("frame-ancestors holds a control or non-ASCII character")
    sources = text.split(" ")
    sources = [source for source in sources if source]
    if not sources:
        raise SettingsError("frame-ancestors needs at least one source ('none' forbids framing)")
    for source in sources:
        if source not in ("'none'", "'self'") and any(c in source for c in ";,'\""):
            raise SettingsError(f"frame-ancestors: {source!r} is not a CSP source")
    if "'none'" in sources and len(sources) > 1:
        raise SettingsError("frame-ancestors: 'none' cannot be combined with other sources")
    return " ".join(sources)


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    data = json.loads(text or "[]")
    if not isinstance(data, list):
        raise SettingsError("ice-servers must be a JSON list")
    servers = []
    for entry in data:
        urls = entry["urls"]
        servers.append(
            IceServer(
                urls=tuple([urls] if isinstance(urls, str) else urls),
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return tuple(servers)
