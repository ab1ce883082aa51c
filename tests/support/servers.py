"""A real screenvisit server in its own process, as an operator would run it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rooms.roles import Role, Sector
from server.auth import TokenIssuer
from server.keys import load_or_create_signing_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    process: asyncio.subprocess.Process
    port: int
    data_dir: Path
    decode_report: Path
    log: Path
    #: More environment for the server and the CLI commands run against it.
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SCREENVISIT_DATA_DIR": str(self.data_dir),
            "SCREENVISIT_PORT": str(self.port),
            "SCREENVISIT_HOST": "127.0.0.1",
            **self.extra_env,
        }

    async def create_visit(self, *extra: str) -> dict[str, Any]:
        """Book a visit with the real CLI, as an operator would."""
        code, out, err = await cli(self, "visit", "create", "--json", *extra)
        assert code == 0, err
        data: dict[str, Any] = json.loads(out)
        return data

    def staff_token(self) -> str:
        """A GP's five-minute token signed by the server's own key, as `screenvisit visit` makes."""
        key = load_or_create_signing_key(self.data_dir / "signing-key.pem")
        return TokenIssuer("screenvisit-local", "screenvisit", key).sign(
            sub="gp-" + secrets.token_hex(4),
            role=Role.GP,
            sector=Sector.GENERAL_PRACTICE,
            lifetime=300,
            org="demo",
        )

    async def book(self, *, waiting_room: bool = True) -> dict[str, Any]:
        """Book a visit (citizen, nurse, GP) over the API, as `visit create --json` does but
        without a CLI process each time (for tests that book many): its id and links."""
        body = {
            "kind": "consultation",
            "participants": [{"role": "citizen"}, {"role": "nurse"}, {"role": "gp"}],
            "waiting_room": waiting_room,
        }
        headers = {"Authorization": f"Bearer {self.staff_token()}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.base_url + "/api/visits", json=body, headers=headers) as response,
        ):
            data: dict[str, Any] = await response.json()
            assert response.status == 201, data
            return {"visit": data["visit"], "links": data["links"]}

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.base_url + "/healthz") as r:
            data: dict[str, Any] = await r.json()
            return data

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=20)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


async def cli(server: RunningServer, *args: str) -> tuple[int, str, str]:
    """Run `screenvisit ARGS` against `server`, as an operator would; (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=server.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_server(
    tmp: Path,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_name: str = "server.log",
) -> RunningServer:
    """Start a server on `port` (a free one by default) with its data in `tmp`/data: a second
    server on the same `tmp` and `port` takes over from the first (give it its own `log_name`)."""
    port = free_port() if port is None else port
    data_dir = tmp / "data"
    log = tmp / log_name
    server = RunningServer(None, port, data_dir, tmp / "decode.json", log, dict(env or {}))  # type: ignore[arg-type]
    env = server.env() | {"SCREENVISIT_DECODE_REPORT": str(server.decode_report)}
    handle = await asyncio.to_thread(log.open, "wb")  # handed to the child process
    server.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.decode_guard",
        "serve",
        "--no-demo",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=handle,
    )
    handle.close()
    assert server.process.stdout is not None
    # Ready when it says so: the first line is printed once every resource is up (a start can
    # take half a minute on a two-core machine under a full test load).
    try:
        line = await asyncio.wait_for(server.process.stdout.readline(), timeout=60)
    except TimeoutError:
        await server.stop()  # not left running (with `--workers`, restarting its workers)
        raise
    if b"listening on" not in line:
        await server.stop()
        raise RuntimeError(f"server did not start: {line!r}\n{log.read_text()}")
    return server


async def run_bot(link: str, seconds: float, *extra: str) -> dict[str, Any]:
    """Run `screenvisit bot` as its own process and return its JSON report."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "bot",
        link,
        "--seconds",
        str(seconds),
        "--json",
        "--width",
        "320",
        "--height",
        "240",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert out, f"bot printed nothing: {err.decode()[-2000:]}"
    report: dict[str, Any] = json.loads(out)
    report["exit_code"] = proc.returncode
    return report
