"""`screenvisit report export --since/--until`: ISO dates and periods back from now (7d) through
one time parser; a bad value is a one-line error with a hint, a non-zero exit, no traceback."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

import pytest

from bench.evaluation_report import fill
from server.config import Settings
from server.timeparse import parse_when
from tests.support.servers import RunningServer, cli, free_port

DAY = 86400.0


def offline(tmp_path: Path) -> RunningServer:
    """The CLI's environment for a data folder, with no server running."""
    data = tmp_path / "data"
    return RunningServer(None, free_port(), data, tmp_path / "d.json", tmp_path / "log")  # type: ignore[arg-type]


def test_one_parser_for_iso_times_and_periods_back_from_now() -> None:
    now = 1_780_000_000.0
    assert parse_when("7d", now) == now - 7 * DAY
    assert parse_when("12h", now) == now - 12 * 3600
    assert parse_when("2w", now) == now - 14 * DAY
    assert parse_when("2026-11-01", now) == 1_793_491_200.0
    assert parse_when("2026-11-01T10:00:00+01:00", now) == 1_793_491_200.0 + 9 * 3600
    assert parse_when("1793491200", now) == parse_when(1_793_491_200, now) == 1_793_491_200.0
    for bad in ("yesterday", "-7d", "7y", "", "nan", "1e400"):
        with pytest.raises(ValueError, match="ISO date"):
            parse_when(bad, now)


@pytest.mark.parametrize(
    ("command", "flag"),
    [("report export", "--since"), ("report export", "--until"), ("audit", "--since")],
)
async def test_a_bad_time_is_one_line_with_a_hint(tmp_path: Path, command: str, flag: str) -> None:
    code, _out, err = await cli(offline(tmp_path), *command.split(), flag, "yesterday")
    assert code != 0
    assert "Traceback" not in err
    [last] = err.strip().splitlines()
    assert flag in last and "yesterday" in last and "7d" in last and "2026-11-01" in last


async def test_since_a_period_back_from_now_counts_only_that_period(tmp_path: Path) -> None:
    server = offline(tmp_path)
    path = Settings(data_dir=server.data_dir).database_path
    await asyncio.to_thread(fill, path, 60, 30, time.time(), "demo")
    code, out, err = await cli(server, "report", "export", "--org", "demo")
    assert code == 0, err
    assert len(list(csv.DictReader(io.StringIO(out)))) == 60
    code, out, err = await cli(server, "report", "export", "--org", "demo", "--since", "7d")
    assert code == 0, err
    week = list(csv.DictReader(io.StringIO(out)))
    assert 0 < len(week) < 60
    cutoff = time.time() - 7 * DAY - 60
    assert all(_unix(row["started_at"]) >= cutoff for row in week)


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
