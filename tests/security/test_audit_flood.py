"""Audit without amplification: a flood of hostile joins must not flood the audit store.

A real server process, real WebSocket clients: 300 sockets each send a 64 KiB `join` (a huge
token claiming a huge issuer, and a huge visit id). The SQLite file, checkpointed, may grow by
less than 1 MB, and no stored audit row may be larger than a few hundred bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
from pathlib import Path

import aiohttp

from rooms.sql import PostgresDatabase
from signaling.messages import MAX_MESSAGE_BYTES
from tests.sqlbackends import backend_for
from tests.support.servers import RunningServer, cli, start_server

SOCKETS = 300
AT_ONCE = 30
MAX_GROWTH_BYTES = 1_000_000
MAX_ROW_BYTES = 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def noise(chars: int) -> str:
    """Random text: as an attacker would send it, nothing a database can compress away."""
    return secrets.token_urlsafe(chars)[:chars]


def hostile_join(i: int) -> str:
    """A `join` just under the protocol's 64 KiB limit, all of it attacker data."""
    claims = {"iss": "https://evil.example/" + noise(12_000), "sub": f"0101901234-{i}"}
    token = ".".join(
        (_b64(b'{"alg":"ES256","kid":"k"}'), _b64(json.dumps(claims).encode()), noise(8_000))
    )
    message = {"type": "join", "token": token, "visit": ""}
    room = MAX_MESSAGE_BYTES - len(json.dumps(message)) - 64
    message["visit"] = f"v-{i}-" + noise(room)
    text = json.dumps(message)
    assert MAX_MESSAGE_BYTES - 128 < len(text) <= MAX_MESSAGE_BYTES
    return text


async def one_hostile_socket(http: aiohttp.ClientSession, url: str, i: int) -> str:
    async with http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(hostile_join(i))
        msg = await ws.receive(timeout=60)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        reply = json.loads(msg.data)
        assert reply["type"] == "error" and reply["fatal"] is True, reply
        code: str = reply["code"]
        return code


def checkpointed_size(db_path: Path) -> int:
    """The database file's size once its write-ahead log is folded in (server stopped)."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db_path.stat().st_size


def audit_rows(db_path: Path) -> list[tuple[int, int]]:
    """(stored bytes, count) of every audit row."""
    with sqlite3.connect(db_path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(audit)")]
        length = " + ".join(f"COALESCE(LENGTH(CAST({c} AS BLOB)), 0)" for c in columns)
        count = "count" if "count" in columns else "1"
        return [(int(n), int(c)) for n, c in conn.execute(f"SELECT {length}, {count} FROM audit")]


async def flood(server: RunningServer) -> list[str]:
    url = server.base_url.replace("http", "ws", 1) + "/ws"
    codes: list[str] = []
    async with aiohttp.ClientSession() as http:
        for start in range(0, SOCKETS, AT_ONCE):
            batch = range(start, min(start + AT_ONCE, SOCKETS))
            codes += await asyncio.gather(*(one_hostile_socket(http, url, i) for i in batch))
    return codes


async def test_three_hundred_64k_joins_grow_the_audit_store_by_less_than_1_mb(
    tmp_path: Path,
) -> None:
    """On SQLite, the default: the file's growth, its write-ahead log folded in."""
    first = await start_server(tmp_path)
    assert await first.stop() == 0
    db_path = first.data_dir / "metadata.sqlite3"
    before = await asyncio.to_thread(checkpointed_size, db_path)

    server = await start_server(tmp_path, log_name="flood.log")
    try:
        codes = await flood(server)
    finally:
        assert await server.stop() == 0
    after = await asyncio.to_thread(checkpointed_size, db_path)
    rows = await asyncio.to_thread(audit_rows, db_path)
    growth = after - before
    print(
        f"\naudit flood: {SOCKETS} joins of {MAX_MESSAGE_BYTES} bytes -> store grew {growth} bytes,"
        f" {len(rows)} audit rows, largest {max(n for n, _ in rows)} bytes,"
        f" counted {sum(c for _, c in rows)} refusals"
    )
    assert len(codes) == SOCKETS
    assert "rate-limited" in codes  # the limit tripped, and still every refusal was answered
    assert growth < MAX_GROWTH_BYTES, growth
    assert max(n for n, _ in rows) <= MAX_ROW_BYTES
    assert sum(c for _, c in rows) == SOCKETS  # every refusal is counted, none lost
    # The operator sees the flood as a few counted lines, not 300 lines of attacker data.
    code, out, err = await cli(server, "audit")
    assert code == 0, err
    lines = [line for line in out.splitlines() if "refused" in line]
    assert len(lines) == len(rows) and any(f"count={max(c for _, c in rows)}" in ln for ln in lines)
    assert all(len(line) < 400 for line in lines), out
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]


async def pg_audit(url: str) -> tuple[int, list[tuple[int, int]]]:
    """The audit table's size on disk (with its indexes and TOAST), and (bytes, count) of each
    row."""
    db = PostgresDatabase(url, max_size=1)
    await db.open()
    try:
        await db.execute("VACUUM audit")
        size = (await db.fetch("SELECT pg_total_relation_size('audit')"))[0][0]
        columns = await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit'"
        )
        count = "count" if ("count",) in columns else "1"
        rows = await db.fetch(f"SELECT pg_column_size(audit.*), {count} FROM audit")
        return int(size), [(int(n), int(c)) for n, c in rows]
    finally:
        await db.close()


async def test_the_same_flood_on_postgresql(tmp_path: Path) -> None:
    """On PostgreSQL: the audit relation's growth on disk."""
    async with backend_for("postgresql", tmp_path) as location:
        assert location.url is not None
        env = {"SCREENVISIT_DATABASE_URL": location.url}
        server = await start_server(tmp_path, env=env)
        try:
            before, _ = await pg_audit(location.url)
            codes = await flood(server)
        finally:
            assert await server.stop() == 0
        after, rows = await pg_audit(location.url)
    growth = after - before
    print(
        f"\naudit flood on PostgreSQL: audit relation grew {growth} bytes, {len(rows)} rows,"
        f" largest {max(n for n, _ in rows)} bytes, counted {sum(c for _, c in rows)} refusals"
    )
    assert "rate-limited" in codes and len(codes) == SOCKETS
    assert growth < MAX_GROWTH_BYTES, growth
    assert max(n for n, _ in rows) <= MAX_ROW_BYTES
    assert sum(c for _, c in rows) == SOCKETS
    assert "Traceback" not in server.log.read_text()
