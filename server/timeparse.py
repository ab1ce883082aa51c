"""One parser for the times operators and evaluators type: an ISO 8601 date or time (UTC when it
names no zone), or a period back from now (`30m`, `12h`, `7d`, `2w`)."""

from __future__ import annotations

import datetime
import re
from typing import Final

UNITS: Final = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PERIOD: Final = re.compile(r"(\d{1,6})([mhdw])")
HINT: Final = (
    "use an ISO date or time (2026-11-01, 2026-11-01T08:00+01:00)"
    " or a period back from now (7d, 12h, 2w)"
)


def parse_when(text: str, now: float) -> float:
    """`text` as a Unix time; ValueError (whose message quotes `text` and gives the forms) when
    it is neither form."""
    value = text.strip()
    period = _PERIOD.fullmatch(value)
    if period is not None:
        return now - int(period.group(1)) * UNITS[period.group(2)]
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: {HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()
