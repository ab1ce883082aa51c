"""Per-socket message limits: a token bucket for each kind of client message.

A socket over a limit has the message refused (`too-many-messages`, with the seconds until the
next one would pass); each refusal costs a strike, and a socket out of strikes is closed
(`flooding`). So a page that bursts a little is told, and a flooder is cut off before what it
sends reaches anyone else's outbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rate:
    """`burst` messages at once, then `per_second` on average."""

    burst: float
    per_second: float


class TokenBucket:
    def __init__(self, rate: Rate, now: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be."""
        rate = self._rate
        self._tokens = min(rate.burst, self._tokens + (now - self._stamp) * rate.per_second)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        if rate.per_second <= 0:
            return float("inf")
        return (1 - self._tokens) / rate.per_second


#: Client message types by the bucket they draw from; a type not named here is not limited
#: beyond the socket's overall rate (`join` and `leave`, each meaningful once).
LIMIT_OF: dict[str, str] = {
    "chat": "chat",
    "offer": "offer",
    "media-restart": "media-restart",
    "media-state": "media-state",
    "assisting": "assisting",
    "ping": "ping",
    "end": "host",
    "admit": "host",
    "admit-all": "host",
    "decline": "host",
    "remove": "host",
    "readmit": "host",
    "mute-request": "host",
    "fallback-phone": "host",
    "outcome": "host",
}

#: Every frame, valid or not, also draws from this one.
ANY = "any"


def _default_rates() -> dict[str, Rate]:
    return {
        ANY: Rate(burst=60, per_second=20),
        "chat": Rate(burst=5, per_second=0.5),
        # A page offers again on every `renegotiate`: a dozen people arriving at once.
        "offer": Rate(burst=12, per_second=1),
        "media-restart": Rate(burst=3, per_second=0.1),
        "media-state": Rate(burst=10, per_second=2),
        "assisting": Rate(burst=5, per_second=1),
        "ping": Rate(burst=10, per_second=1),
        "host": Rate(burst=20, per_second=2),
    }


@dataclass(frozen=True)
class MessageLimits:
    rates: Mapping[str, Rate] = field(default_factory=_default_rates)
    #: Refusals a socket may collect before it is closed; they are forgiven at this rate.
    strikes: Rate = Rate(burst=10, per_second=0.2)

    def with_rate(self, limit: str, rate: Rate) -> MessageLimits:
        return MessageLimits({**self.rates, limit: rate}, self.strikes)


class SocketLimiter:
    """The buckets of one socket."""

    def __init__(self, limits: MessageLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._strikes = TokenBucket(limits.strikes, clock())

    def check(self, limit: str) -> float:
        """0.0 if a message drawing from `limit` may pass now, else seconds to wait."""
        rate = self._limits.rates.get(limit)
        if rate is None:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(limit)
        if bucket is None:
            bucket = self._buckets[limit] = TokenBucket(rate, now)
        return bucket.take(now)

    def strike(self) -> bool:
        """Count a refusal; True once the socket has used up its strikes."""
        return self._strikes.take(self._clock()) > 0
