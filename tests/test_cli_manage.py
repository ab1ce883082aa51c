"""The operator's day-to-day commands, run for real against a running server: `visit list`,
`show`, `cancel` and `end`; `token mint`; `report export`'s progress bar; `bot`'s verdict when it
is never let in or is refused; and `--help` that puts a command's own options first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
import pytest_asyncio

from tests.support.servers import RunningServer, cli, run_bot, start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path_factory.mktemp("cli-manage"))
    yield running
    await running.stop()


async def test_visit_list_show_cancel_and_end(server: RunningServer) -> None:
    booked = await server.create_visit()
    other = await server.create_visit("--no-waiting-room")
    visit = booked["visit"]

    code, out, err = await cli(server, "visit", "list")
    assert code == 0, err
    assert visit in out and other["visit"] in out
    line = next(line for line in out.splitlines() if line.startswith(visit))
    assert "scheduled" in line and "citizen,nurse,gp" in line

    code, out, err = await cli(server, "visit", "show", visit, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == visit and [s["role"] for s in shown["seats"]][:3] == [
        "citizen",
        "nurse",
        "gp",
    ]

    code, out, err = await cli(server, "visit", "cancel", visit)
    assert code == 0, err
    assert f"visit {visit} cancelled" in out
    # The link is refused from now on.
    report = await run_bot(booked["links"]["citizen"], 1)
    assert report["exit_code"] == 2 and report["error"] == {
        "code": "visit-closed",
        "message": "this visit was cancelled",
    }, report

    code, out, err = await cli(server, "visit", "list", "--state", "cancelled", "--json")
    assert code == 0, err
    assert [v["id"] for v in json.loads(out)] == [visit]

    code, out, err = await cli(server, "visit", "end", other["visit"])
    assert code == 0, err
    assert "ended for everyone" in out
    code, out, _err = await cli(server, "visit", "show", other["visit"])
    assert f"visit {other['visit']} (consultation), ended" in out


async def test_an_unknown_visit_is_one_line(server: RunningServer) -> None:
    code, out, err = await cli(server, "visit", "show", "no-such-visit")
    assert code != 0 and out == ""
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("screenvisit: ") and "visit" in line


async def test_a_minted_evaluator_token_opens_the_report_and_is_audited(
    server: RunningServer,
) -> None:
    code, out, err = await cli(server, "token", "mint", "--role", "evaluator", "--hours", "2")
    assert code == 0, err
    token = out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["role"] == "evaluator" and claims["org"] == "demo"
    assert claims["exp"] - claims["iat"] == 2 * 3600
    assert f"{server.base_url}/evaluation#{token}" in err

    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.base_url + "/api/evaluation/report", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()

    code, out, err = await cli(server, "audit", "--json")
    assert code == 0, err
    minted = [r for r in json.loads(out) if r["action"] == "mint-token"]
    assert minted and claims["jti"] in minted[-1]["reason"]
    assert token not in out  # the audit log keeps the jti, never the token


async def test_a_token_beyond_its_roles_lifetime_is_refused_in_one_line(
    server: RunningServer,
) -> None:
    code, out, err = await cli(server, "token", "mint", "--role", "admin", "--hours", "3")
    assert code != 0 and out == ""
    [line] = err.strip().splitlines()
    assert "--hours" in line and "at most 1 h" in line


async def test_a_bot_never_let_in_says_so_and_exits_non_zero(server: RunningServer) -> None:
    visit = await server.create_visit()
    report = await run_bot(visit["links"]["citizen"], 1.5)
    assert report["exit_code"] == 3, report
    assert report["waited_seconds"] is None
    assert "never let in" in report["verdict"]


async def test_a_declined_bot_says_it_was_refused(server: RunningServer) -> None:
    visit = await server.create_visit()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as gp,
    ):
        token = visit["links"]["gp"].split("#", 1)[1]
        await gp.send_json({"type": "join", "visit": visit["visit"], "token": token})
        bot = asyncio.create_task(run_bot(visit["links"]["citizen"], 20))
        async for message in gp:
            data = json.loads(message.data)
            if data["type"] == "waiting":
                await gp.send_json(
                    {"type": "decline", "participant": data["participant"]["participant"]}
                )
                break
        report = await asyncio.wait_for(bot, timeout=30)
    assert report["exit_code"] == 4, report
    assert report["verdict"].startswith("refused: declined"), report


async def test_export_shows_progress_on_request(server: RunningServer, tmp_path: Path) -> None:
    out_file = tmp_path / "visits.csv"
    code, _out, err = await cli(server, "report", "export", "--progress", "--out", str(out_file))
    assert code == 0, err
    assert "export" in err and "visits" in err  # tqdm's bar, on standard error
    assert out_file.read_text().startswith("visit")
    code, _out, err = await cli(server, "report", "export", "--out", str(out_file))
    assert code == 0 and err == ""  # not a terminal: no bar


async def test_help_lists_the_commands_own_options_first(server: RunningServer) -> None:
    code, out, _err = await cli(server, "visit", "create", "--help")
    assert code == 0
    usage = out[: out.index("\n\n")]
    assert usage.index("--no-waiting-room") < usage.index("--port")
    assert out.index("server settings:") > out.index("--no-waiting-room")
