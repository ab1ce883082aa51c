"""Which remote ICE candidates the server may send to.

Every remote candidate makes the server send STUN checks to the address it names; unfiltered, one
offer made it send 1,811 datagrams to 400 addresses of the offerer's choosing, including the
server's own network. A candidate is accepted only if its address is public or lies in a
configured network, and at most MAX_REMOTE_CANDIDATES distinct ones are accepted per peer.
Loopback, link-local (cloud metadata at 169.254.169.254), private and other special ranges are
refused unless configured; unspecified and multicast addresses always. Hostname candidates (mDNS
`*.local`) are refused before aioice sees them: resolving one would send multicast queries and
yield an address nobody checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_REMOTE_CANDIDATES = 20
CANDIDATE_PREFIX = "a=candidate:"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RefusedCandidate:
    """A remote candidate the server will not contact: its address as offered, and why."""

    address: str
    port: int | None
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"address": self.address, "port": self.port, "reason": self.reason}


def parse_networks(texts: Iterable[str]) -> tuple[IpNetwork, ...]:
    """`10.0.0.0/8`, `127.0.0.1` (one address) ...; ValueError names a bad entry."""
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts)


def implied_networks(ice_hosts: Sequence[str]) -> tuple[IpNetwork, ...]:
    """What the ICE hosts imply when no networks are configured: a non-public address the
    server offers media on (127.0.0.1 in development and tests) may be a client's too."""
    networks: list[IpNetwork] = []
    for host in ice_hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not address.is_global:
            networks.append(ipaddress.ip_network(address))
    return tuple(networks)


def _special_range(address: IpAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return "multicast"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class CandidatePolicy:
    allowed: tuple[IpNetwork, ...] = ()
    limit: int = MAX_REMOTE_CANDIDATES

    def refusal(self, host: str) -> str | None:
        """Why the server must not send to `host`, or None when it may."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "mdns-hostname" if host.lower().rstrip(".").endswith(".local") else "hostname"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified or address.is_multicast:
            return _special_range(address)
        if any(address in network for network in self.allowed):
            return None
        return _special_range(address)


def candidate_policy(
    ice_hosts: Sequence[str], allowed_networks: Sequence[str] | None
) -> CandidatePolicy:
    """The configured networks, or (None) those the ICE hosts imply."""
    if allowed_networks is None:
        return CandidatePolicy(implied_networks(ice_hosts))
    return CandidatePolicy(parse_networks(allowed_networks))


class RemoteCandidates:
    """One peer's accepted remote candidates, across its offers."""

    def __init__(self, policy: CandidatePolicy) -> None:
        self._policy = policy
        self._accepted: set[tuple[int, str, str, int]] = set()

    def refuses(self, host: str) -> bool:
        return self._policy.refusal(host) is not None

    def filter_offer(self, offer_sdp: str) -> tuple[str, list[RefusedCandidate]]:
        """The offer without the candidates it may not use, and those refused."""
        lines = offer_sdp.split("\r\n") if "\r\n" in offer_sdp else offer_sdp.split("\n")
        newline = "\r\n" if "\r\n" in offer_sdp else "\n"
        kept: list[str] = []
        refused: list[RefusedCandidate] = []
        for line in lines:
            if line.startswith(CANDIDATE_PREFIX):
                refusal = self._check(line[len(CANDIDATE_PREFIX) :])
                if refusal is not None:
                    refused.append(refusal)
                    continue
            kept.append(line)
        return newline.join(kept), refused

    def _check(self, text: str) -> RefusedCandidate | None:
        # Here, not at the top: the settings (server/config.py) use this module, and the
        # command line's light commands need them without loading aiortc.
        from aiortc import sdp as aiortc_sdp

        try:
            candidate = aiortc_sdp.candidate_from_sdp(text)
            port = int(candidate.port)
        except Exception:  # aiortc's parser raises several types (even AssertionError)
            return RefusedCandidate(text[:64], None, "malformed")
        reason = self._policy.refusal(candidate.ip)
        if reason is not None:
            return RefusedCandidate(candidate.ip, port, reason)
        key = (candidate.component, candidate.protocol.lower(), candidate.ip, port)
        if key not in self._accepted:
            if len(self._accepted) >= self._policy.limit:
                return RefusedCandidate(candidate.ip, port, "too-many-candidates")
            self._accepted.add(key)
        return None
