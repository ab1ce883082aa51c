"""The one parser for every time the API and the CLI accept: a Unix time, an ISO 8601 date or
time (UTC when it names no zone, unless a zone is required), or a period back from now (`30m`,
`12h`, `7d`, `2w`); and a calendar day (FHIR's `date` search)."""

from __future__ import annotations

import datetime
import math
import re
from typing import Final

UNITS: Final = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PERIOD: Final = re.compile(r"(\d{1,6})([mhdw])")
_NUMBER: Final = re.compile(r"-?\d{1,12}(\.\d{1,9})?")
#: Longer text is no time of any form.
MAX_TEXT: Final = 64
HINT: Final = (
    "use an ISO date or time (2026-11-01, 2026-11-01T08:00+01:00)"
    " or a period back from now (7d, 12h, 2w)"
)
ZONED_HINT: Final = "use a Unix time or an ISO 8601 time with a timezone (2030-05-01T09:30+02:00)"
DAY_HINT: Final = "use a day as YYYY-MM-DD (2026-12-07)"
_DAY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(text: str) -> datetime.date:
    """`text` as a calendar day, exactly YYYY-MM-DD; ValueError (quoting it) otherwise."""
    if not _DAY.fullmatch(text):
        raise ValueError(f"{text[:MAX_TEXT]!r} is not a day: {DAY_HINT}")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day: {DAY_HINT}") from None


def parse_when(
    value: str | float, now: float, *, periods: bool = True, zone_required: bool = False
) -> float:
    """`value` as a Unix time; ValueError (whose message quotes it and gives the forms) when it
    is none of the forms allowed. A number, or a string of digits, is a Unix time already."""
    hint = ZONED_HINT if zone_required else HINT
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time: {hint}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{value!r} is not a time: {hint}") from None
        if not math.isfinite(seconds):
            raise ValueError(f"{value!r} is not a time: {hint}")
        return seconds
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"{value[:MAX_TEXT]!r}... is not a time: {hint}")
    if _NUMBER.fullmatch(text):
        return float(text)
    period = _PERIOD.fullmatch(text) if periods else None
    if period is not None:
        return now - int(period.group(1)) * UNITS[period.group(2)]
    try:
        parsed = datetime.datetime.fromisoformat(text)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            if zone_required:
                raise ValueError("no zone")
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a time: {hint}") from None
