"""One time parser: every date, time and period that the API (the JSON API and FHIR) and the CLI
take from text is read by server/timeparse.py, and nowhere else."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from server.timeparse import parse_day

ROOT = Path(__file__).resolve().parent.parent
#: Reading a time from text; formatting one (fromtimestamp, isoformat) is not parsing.
PARSING = re.compile(r"\b(fromisoformat|strptime|dateutil|parse_datetime)\b")


def test_only_the_time_parser_reads_times_from_text() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("server", "rooms", "signaling", "media")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "server" / "timeparse.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PARSING.search(line)
    ]
    assert readers == [], "parse times with server.timeparse"


def test_a_day_is_an_iso_date() -> None:
    assert parse_day("2026-12-07") == datetime.date(2026, 12, 7)
    for bad in ("04-12-2026", "2026-12", "20261207", "2026-12-07T09:00", "2026-02-30", "", "x"):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_day(bad)
