"""The CLI's error paths, run for real: one line with a hint, a non-zero exit, no traceback; and
the hints after `serve` name the port it serves on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.support.servers import RunningServer, cli, free_port, start_server


def offline(tmp_path: Path, port: int) -> RunningServer:
    """The CLI's environment for a data folder and port, with no server started by it."""
    return RunningServer(None, port, tmp_path / "data", tmp_path / "d.json", tmp_path / "log")  # type: ignore[arg-type]


async def test_a_busy_port_is_one_line_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _out, err = await cli(offline(tmp_path, port), "serve", "--no-demo")
    assert code != 0
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after the start-up log lines
    assert f"port {port}" in line and "in use" in line and "--port" in line


async def test_a_stopped_server_is_one_line_naming_its_port(tmp_path: Path) -> None:
    port = free_port()
    code, _out, err = await cli(offline(tmp_path, port), "visit", "create")
    assert code != 0
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert f"no server at http://127.0.0.1:{port}" in line
    assert f"screenvisit serve --port {port}" in line


async def test_the_hints_after_serve_repeat_its_port(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    try:
        assert server.process.stdout is not None
        hint = await asyncio.wait_for(server.process.stdout.readline(), timeout=30)
        assert f"screenvisit visit create --json --port {server.port}" in hint.decode()
    finally:
        await server.stop()
