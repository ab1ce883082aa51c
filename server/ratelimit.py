"""Failed authentications per client address, in a sliding window."""

from __future__ import annotations

import time
from collections import deque


class FailureLimiter:
    """After `max_failures` failures within `window` seconds, an address is refused until the
    oldest of them ages out. Only failures count, so a person who mistypes nothing is never
    limited; a script trying tokens is."""

    def __init__(
        self, max_failures: int, window: float = 60.0, max_addresses: int = 10_000
    ) -> None:
        self._max = max_failures
        self._window = window
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, address: str | None) -> bool:
        if address is None or self._max <= 0:
            return False
        failures = self._failures.get(address)
        if failures is None:
            return False
        self._expire(failures, time.monotonic())
        return len(failures) >= self._max

    def failure(self, address: str | None) -> None:
        if address is None or self._max <= 0:
            return
        now = time.monotonic()
        if address not in self._failures and len(self._failures) >= self._max_addresses:
            self._sweep(now)
        failures = self._failures.setdefault(address, deque())
        self._expire(failures, now)
        failures.append(now)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self._window:
            failures.popleft()

    def _sweep(self, now: float) -> None:
        for address in list(self._failures):
            self._expire(self._failures[address], now)
            if not self._failures[address]:
                del self._failures[address]
        while len(self._failures) >= self._max_addresses:
            self._failures.pop(next(iter(self._failures)))
