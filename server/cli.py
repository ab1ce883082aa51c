"""`screenvisit`: serve, visit create, bot."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import errno
import getpass
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rooms.audit import AuditRecord, SqlAuditLog
from rooms.eventlog import SqlEventLog
from rooms.principal import Principal
from rooms.roles import CONSOLE_ROLES, DEFAULT_SECTOR, Role, Sector
from rooms.sql import open_database
from rooms.visit import VisitKind
from server.auth import TokenIssuer
from server.cli_common import (
    add_setting_flags,
    call_server,
    port_flag,
    settings_from,
    time_flag,
)
from server.cli_tokens import add_mint_command
from server.cli_visits import add_visit_commands
from server.config import Settings
from server.keys import load_or_create_signing_key
from server.reports import EXPORTS, Filters, gather, load_pseudonymizer, render_export
from server.trust import TrustConfigError
from server.workers import run_workers, without_workers_flag

# The server's application and the bots (aiohttp's web server, aiortc, PyAV) are imported by the
# commands that run them, not by every command: `visit create`, `token revoke` or `audit` start
# in about half the time.
if TYPE_CHECKING:
    from aiohttp import web

    from signaling.bot import BotOptions
    from signaling.loadtest import VisitCreator

logger = logging.getLogger("screenvisit")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- serve ------------------------------------------------------------------------------------


def _demo_visit(announcement: list[str]) -> Any:
    """Start-up hook: book one demo visit and add its links to the start-up announcement
    (development default only)."""
    from server import appkeys
    from server.console_session import console_url
    from server.visits import book_visit, invite_links, links_by_role

    async def hook(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        host = Principal(
            subject="demo",
            issuer=settings.issuer,
            role=Role.GP,
            sector=Sector.GENERAL_PRACTICE,
            org=settings.org,
        )
        seats = [(Role.CITIZEN, None, None), (Role.NURSE, None, None), (Role.GP, None, None)]
        visit = await book_visit(app, host, VisitKind.ASSISTED, seats)
        announcement.append(f"Demo visit {visit.id}; open each link in its own browser window:")
        for role, url in links_by_role(invite_links(app, visit)).items():
            announcement.append(f"  {role:8s} {url}")
        announcement.append(f"Staff console (one-time sign-in link, 10 min): {console_url(app)}")
        yield

    return hook


def _prepare_shared_files(settings: Settings) -> None:
    """Keys and the SQLite schema, made once before several workers start on them."""
    load_or_create_signing_key(settings.key_path)
    load_pseudonymizer(settings.data_dir)

    async def migrate() -> None:
        db = await open_database(settings.database_url or None, settings.database_path)
        await db.close()

    asyncio.run(migrate())


def serve(args: argparse.Namespace) -> int:
    from server import appkeys, httpserver
    from server.app import create_app, drain_before_stop
    from server.eventloop import new_event_loop
    from server.logs import configure_logging

    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format)
    if args.workers > 1:
        if not settings.redis_url:
            raise SystemExit(
                "screenvisit: --workers needs SCREENVISIT_REDIS_URL: the workers share live"
                " state and relay signaling through Redis"
            )
        _prepare_shared_files(settings)
        return run_workers(without_workers_flag(args.argv), args.workers, settings.node_name)
    app = create_app(settings, stop_process=lambda: os.kill(os.getpid(), signal.SIGTERM))
    announcement = [
        f"screenvisit is listening on {settings.base_url}",
        f"Create a visit:  screenvisit visit create --json{port_flag(settings)}",
    ]
    demo = args.demo if args.demo is not None else _is_loopback(settings.host)
    if demo:
        app.cleanup_ctx.append(_demo_visit(announcement))

    def announce() -> None:
        # Called once the site is bound: only then is "listening" true, and scripts (and the
        # tests) may connect as soon as they read the first line.
        for line in announcement:
            print(line, flush=True)

    loop, loop_kind = new_event_loop(use_uvloop=settings.uvloop)
    logger.info("event loop: %s", loop_kind)
    try:
        httpserver.run(
            app,
            host=settings.host,
            port=settings.port,
            limiter=app[appkeys.CONNECTIONS],
            header_timeout=settings.http_header_timeout,
            announce=announce,
            access_log_format='%a "%r" %s %b %Tf',
            shutdown_timeout=10,
            reuse_port=args.reuse_port or None,
            drain=lambda: drain_before_stop(app),
            drain_timeout=settings.drain_timeout,
            new_loop=lambda: loop,
        )
    except TrustConfigError as exc:
        raise SystemExit(f"screenvisit: bad trust file: {exc}") from None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise SystemExit(
            f"screenvisit: port {settings.port} on {settings.host} is in use (another"
            " screenvisit?): stop that one, or serve on another port with --port"
        ) from None
    return 0


async def _create_visit(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    host_role = Role.SPECIALIST if args.specialist else Role.GP
    host_sector = Sector.REGION if args.specialist else Sector.GENERAL_PRACTICE
    participants: list[dict[str, Any]] = [{"role": "citizen"}, {"role": "nurse"}]
    participants.append({"role": host_role.value})
    participants += [{"role": "relative"}] * args.relative
    participants += [{"role": "interpreter"}] * args.interpreter
    for entry, name in zip(participants, args.names or [], strict=False):
        if name:
            entry["name"] = name
    body: dict[str, Any] = {"kind": args.kind, "participants": participants}
    if args.no_waiting_room:
        body["waiting_room"] = False
    return await call_server(settings, host_role, host_sector, "/api/visits", body)


def visit_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = asyncio.run(_create_visit(settings, args))
    if args.json:
        print(json.dumps({"visit": data["visit"], "links": data["links"]}))
    else:
        print(f"Visit {data['visit']}:")
        for role, url in data["links"].items():
            print(f"  {role:12s} {url}")
    return 0


# --- console-link -------------------------------------------------------------------------------


def console_link(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    role = Role(args.role)
    if role not in CONSOLE_ROLES:
        raise SystemExit(
            f"screenvisit: --role is one of {', '.join(sorted(r.value for r in CONSOLE_ROLES))}"
        )
    key = load_or_create_signing_key(settings.key_path)
    issuer = TokenIssuer(settings.issuer, settings.audience, key)
    sector = Sector(args.sector) if args.sector else DEFAULT_SECTOR[role]
    from server.console_session import sign_link

    token = sign_link(issuer, role=role, org=settings.org, name=args.name, sector=sector)
    print(f"{settings.base_url}/console#{token}")
    return 0


# --- drain --------------------------------------------------------------------------------------


def drain(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = asyncio.run(call_server(settings, Role.ADMIN, Sector.REGION, "/api/admin/drain", {}))
    print(f"node {data['node']} is draining ({data['visits']} visit(s) on it)")
    return 0


# --- token revoke, audit ----------------------------------------------------------------------


def token_revoke(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    body: dict[str, Any] = {"jti": args.jti}
    if args.expires_at is not None:
        body["expires_at"] = args.expires_at
    data = asyncio.run(
        call_server(settings, Role.ADMIN, Sector.REGION, "/api/admin/revocations", body)
    )
    print(f"revoked {data['jti']}; closed {data['closed_sessions']} live session(s)")
    return 0


async def _read_audit(settings: Settings, args: argparse.Namespace) -> list[AuditRecord]:
    db = await open_database(settings.database_url or None, settings.database_path)
    try:
        audit = SqlAuditLog(db)
        records = await audit.query(
            visit=args.visit,
            subject=args.subject,
            since=time_flag("--since", args.since),
            limit=args.limit,
        )
        # Reading the audit log is itself an access to be logged.
        await audit.record(
            AuditRecord(
                action="read-audit",
                result="allowed",
                reason="command line",
                subject=f"local-operator:{getpass.getuser()}",
                issuer=None,
                sector=None,
                org=None,
                role="admin",
                visit=args.visit,
                client="local",
            )
        )
        return records
    finally:
        await db.close()


def audit(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    records = asyncio.run(_read_audit(settings, args))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records]))
        return 0
    for r in records:
        when = datetime.datetime.fromtimestamp(r.time, datetime.UTC).isoformat(timespec="seconds")
        print(
            f"{when} {r.result:8s} {r.action:14s} visit={r.visit or '-'} role={r.role or '-'} "
            f"sector={r.sector or '-'} org={r.org or '-'} sub={r.subject or '-'} "
            f"client={r.client or '-'} reason={r.reason or '-'}"
            + (f" token={r.token}" if r.token else "")
            + (f" count={r.count}" if r.count > 1 else "")
        )
    return 0


# --- report export ----------------------------------------------------------------------------


async def _export(settings: Settings, args: argparse.Namespace) -> str:
    from tqdm import tqdm

    db = await open_database(settings.database_url or None, settings.database_path)
    try:
        pseudonyms = await asyncio.to_thread(load_pseudonymizer, settings.data_dir)
        filters = Filters(
            since=args.since_time,
            until=args.until_time,
            kind=args.kind,
            sector=args.sector,
        )
        with tqdm(
            total=None,
            unit=" visits",
            desc="export",
            file=sys.stderr,
            disable=not (args.progress if args.progress is not None else sys.stderr.isatty()),
            leave=False,
        ) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            summaries = await gather(db, SqlEventLog(db), settings.org, filters, advance)
        await SqlAuditLog(db).record(
            AuditRecord(
                action="read-evaluation",
                result="allowed",
                reason=f"export {args.format}",
                subject=f"local-operator:{getpass.getuser()}",
                issuer=None,
                sector=None,
                org=settings.org,
                role="evaluator",
                visit=None,
                client="local",
            )
        )
        return await render_export(args.format, summaries, pseudonyms)
    finally:
        await db.close()


def report_export(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    args.since_time = time_flag("--since", args.since)
    args.until_time = time_flag("--until", args.until)
    text = asyncio.run(_export(settings, args))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# --- bot --------------------------------------------------------------------------------------


def bot(args: argparse.Namespace) -> int:
    from signaling.bot import BotError, BotOptions

    options = BotOptions(
        seconds=args.seconds,
        ice_hosts=tuple(args.ice_host) if args.ice_host is not None else None,
        width=args.width,
        height=args.height,
        fps=args.fps,
        hue=args.hue,
        admit_all=args.admit_all,
        decode=not args.no_decode,
        send=() if args.receive_only else tuple(args.send or ("audio", "video")),
        video_codecs=(f"video/{args.video_codec}",) if args.video_codec else None,
    )
    logging.basicConfig(level=logging.WARNING)
    try:
        report = asyncio.run(_run_bot_until_signal(args.link, options))
    except BotError as exc:
        out = {"error": {"code": exc.code, "message": exc.message}}
        print(json.dumps(out) if args.json else f"screenvisit bot: {exc.code}: {exc.message}")
        return 2
    data = report.to_dict()
    code, verdict = _bot_verdict(data, args.seconds)
    if verdict:
        data["verdict"] = verdict
    if args.json:
        print(json.dumps(data))
    else:
        print(f"joined visit {data['visit']} as {data['role']} in {data['join_seconds']:.2f} s")
        for remote in data["remotes"]:
            print(
                f"  {remote['role']:12s} video {remote['video_frames']:5d} frames "
                f"{remote['resolution'][0]}x{remote['resolution'][1]}, "
                f"audio {remote['audio_frames']:5d} frames, first frame after "
                f"{remote['first_frame_seconds']} s"
            )
    if verdict:
        print(f"screenvisit bot: {verdict}", file=sys.stderr)
    return code


#: `screenvisit bot`'s exit codes beyond 0 (it took part) and 2 (the first join failed).
BOT_NEVER_ADMITTED = 3
BOT_REFUSED = 4


def _bot_verdict(report: dict[str, Any], seconds: float) -> tuple[int, str | None]:
    """Exit code and a one-line verdict when the bot did not take part as asked: refused (a
    fatal error: declined, removed, revoked) or left waiting until its time was up."""
    refusals = [e for e in report["errors"] if e.get("fatal")]
    if refusals:
        first = refusals[0]
        return BOT_REFUSED, f"refused: {first['code']}: {first['message']}"
    if report["waited_seconds"] is None:
        return (
            BOT_NEVER_ADMITTED,
            f"waited {seconds:g} s in the waiting room and was never let in",
        )
    return 0, None


async def _run_bot_until_signal(link: str, options: BotOptions) -> Any:
    from signaling.bot import run_bot

    task = asyncio.ensure_future(run_bot(link, options))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


# --- loadtest ---------------------------------------------------------------------------------


def loadtest(args: argparse.Namespace) -> int:
    from signaling.bot import BotError
    from signaling.loadtest import LoadTestOptions, render, run_load_test, token_visit_creator

    options = LoadTestOptions(
        url=args.url, rooms=args.rooms, seconds=args.seconds, width=args.width, height=args.height
    )
    create: VisitCreator
    if args.token:
        create = token_visit_creator(args.url, args.token)
    else:
        # As `visit create` does: a five-minute GP token signed with this server's own key.
        parts = urlsplit(args.url)
        settings = dataclasses.replace(
            settings_from(args), host=parts.hostname or "127.0.0.1", port=parts.port or 80
        )

        async def create(body: dict[str, Any]) -> dict[str, Any]:
            return await call_server(
                settings, Role.GP, Sector.GENERAL_PRACTICE, "/api/visits", body
            )

    logging.basicConfig(level=logging.WARNING)
    try:
        summary = asyncio.run(run_load_test(options, create))
    except BotError as exc:
        raise SystemExit(f"screenvisit loadtest: {exc.code}: {exc.message}") from None
    print(json.dumps(summary) if args.json else render(summary))
    return 0 if summary["bots_joined"] == summary["bots_attempted"] else 1


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="screenvisit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p_serve = commands.add_parser("serve", help="run the server")
    p_serve.add_argument(
        "--demo",
        dest="demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="book a demo visit and print its links (default: when on loopback)",
    )
    p_serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N server processes (one node each, sharing the port and Redis); needs"
        " SCREENVISIT_REDIS_URL",
    )
    p_serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    add_setting_flags(p_serve)
    p_serve.set_defaults(func=serve)

    p_drain = commands.add_parser(
        "drain",
        help="drain the node at --host/--port: no new visits; it stops once its visits end, or"
        " hands them to other nodes after the drain timeout",
    )
    add_setting_flags(p_drain)
    p_drain.set_defaults(func=drain)

    p_visit = commands.add_parser("visit", help="manage visits")
    visit_commands = p_visit.add_subparsers(dest="visit_command", required=True)
    p_create = visit_commands.add_parser("create", help="book a visit and print its links")
    p_create.add_argument("--json", action="store_true", help="print JSON")
    p_create.add_argument("--kind", default="consultation", choices=[k.value for k in VisitKind])
    host = p_create.add_mutually_exclusive_group()
    host.add_argument("--gp", action="store_true", help="a GP hosts the visit (the default)")
    host.add_argument("--specialist", action="store_true", help="a hospital specialist hosts it")
    p_create.add_argument(
        "--relative",
        type=int,
        nargs="?",
        const=1,
        default=0,
        help="add N relatives (default 1 when given)",
    )
    p_create.add_argument(
        "--interpreter",
        type=int,
        nargs="?",
        const=1,
        default=0,
        help="add N interpreters (default 1 when given)",
    )
    p_create.add_argument(
        "--names", nargs="*", help="display names in seat order: citizen, nurse, host, others"
    )
    p_create.add_argument(
        "--no-waiting-room",
        action="store_true",
        help="everyone enters directly (default: non-hosts wait to be let in)",
    )
    add_setting_flags(p_create)
    p_create.set_defaults(func=visit_create)
    add_visit_commands(visit_commands)

    p_console = commands.add_parser(
        "console-link", help="print a one-time sign-in link to the staff console (10 minutes)"
    )
    p_console.add_argument("--role", required=True, choices=sorted(r.value for r in CONSOLE_ROLES))
    p_console.add_argument("--name", default=None, help="the staff member's name, as shown")
    p_console.add_argument("--sector", choices=[s.value for s in Sector], default=None)
    add_setting_flags(p_console)
    p_console.set_defaults(func=console_link)

    p_token = commands.add_parser("token", help="manage tokens")
    token_commands = p_token.add_subparsers(dest="token_command", required=True)
    p_revoke = token_commands.add_parser("revoke", help="revoke a token now, by its jti")
    p_revoke.add_argument("jti", help="the token's id (its `jti` claim)")
    p_revoke.add_argument(
        "--expires-at",
        type=float,
        default=None,
        help="Unix time after which the token is dead anyway (default: 14 days)",
    )
    add_setting_flags(p_revoke)
    p_revoke.set_defaults(func=token_revoke)
    add_mint_command(token_commands)

    p_audit = commands.add_parser("audit", help="read the audit log")
    p_audit.add_argument("--visit", help="only this visit")
    p_audit.add_argument("--subject", help="only this token subject")
    p_audit.add_argument(
        "--since", help="only after then: a Unix time, an ISO date or time, or a period (7d)"
    )
    p_audit.add_argument("--limit", type=int, default=1000)
    p_audit.add_argument("--json", action="store_true", help="print JSON")
    add_setting_flags(p_audit)
    p_audit.set_defaults(func=audit)

    p_report = commands.add_parser("report", help="evaluation data")
    report_commands = p_report.add_subparsers(dest="report_command", required=True)
    p_export = report_commands.add_parser(
        "export", help="export pseudonymous per-visit evaluation data"
    )
    p_export.add_argument("--format", choices=sorted(EXPORTS), default="csv")
    p_export.add_argument(
        "--since", help="visits from then: an ISO date or time, or a period back from now (7d)"
    )
    p_export.add_argument(
        "--until", help="visits before then: an ISO date or time, or a period back (1d)"
    )
    p_export.add_argument("--kind", choices=[k.value for k in VisitKind])
    p_export.add_argument("--sector", choices=[s.value for s in Sector])
    p_export.add_argument("--out", help="write to this file instead of standard output")
    p_export.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on standard error (default: when it is a terminal)",
    )
    add_setting_flags(p_export)
    p_export.set_defaults(func=report_export)

    p_bot = commands.add_parser("bot", help="join a visit as a headless participant")
    p_bot.add_argument("link", help="an invite link")
    p_bot.add_argument("--seconds", type=float, default=10.0, help="how long to stay")
    p_bot.add_argument("--json", action="store_true", help="print JSON")
    p_bot.add_argument(
        "--ice-host",
        action="append",
        default=None,
        help="local address to offer as ICE candidate (repeatable)",
    )
    p_bot.add_argument("--width", type=int, default=640)
    p_bot.add_argument("--height", type=int, default=480)
    p_bot.add_argument("--fps", type=int, default=30)
    p_bot.add_argument("--hue", type=int, default=0, help="tint of the synthetic picture")
    p_bot.add_argument(
        "--admit-all", action="store_true", help="as the visit's host, let in everyone who waits"
    )
    p_bot.add_argument(
        "--no-decode",
        action="store_true",
        help="light mode: send a loop encoded once, count encoded frames without decoding",
    )
    p_bot.add_argument(
        "--receive-only",
        action="store_true",
        help="send nothing, as a browser whose camera and microphone were refused",
    )
    p_bot.add_argument(
        "--send",
        action="append",
        choices=["audio", "video"],
        help="publish only this kind (repeatable; default: audio and video)",
    )
    p_bot.add_argument(
        "--video-codec",
        choices=["VP8", "H264"],
        help="offer only this video codec, to send and to receive (H264: as some iPhones)",
    )
    p_bot.set_defaults(func=bot)

    p_load = commands.add_parser(
        "loadtest", help="run N three-way visits of light bots against a server"
    )
    p_load.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    p_load.add_argument("--rooms", type=int, default=1, help="visits, three bots each")
    p_load.add_argument("--seconds", type=float, default=10.0, help="how long the bots stay")
    p_load.add_argument(
        "--token", help="bearer token to book visits (default: sign one with the local key)"
    )
    p_load.add_argument("--width", type=int, default=640)
    p_load.add_argument("--height", type=int, default=480)
    p_load.add_argument("--json", action="store_true", help="print JSON")
    add_setting_flags(p_load)
    p_load.set_defaults(func=loadtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
