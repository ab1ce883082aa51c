"""`screenvisit visit list|show|cancel|end`: the organisation's visits, through the running
server's API, as a GP of `--org` with a five-minute token signed by the server's own key."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
from typing import Any

from rooms.roles import Role, Sector
from rooms.visit import VisitState
from server.cli_common import add_setting_flags, call_server, settings_from, time_flag

_STAFF = (Role.GP, Sector.GENERAL_PRACTICE)


def _clock(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M")


def _visit_line(visit: dict[str, Any]) -> str:
    roles = ",".join(seat["role"] for seat in visit.get("seats", []))
    return (
        f"{visit['id']}  {visit['state']:9s} {visit['kind']:12s} "
        f"{_clock(visit.get('planned_start')):16s}  {roles}"
    )


def visit_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    query: dict[str, str] = {}
    if args.state:
        query["state"] = args.state
    for flag, name in (("--from", "from_"), ("--to", "to")):
        when = time_flag(flag, getattr(args, name))
        if when is not None:
            query[name.rstrip("_")] = repr(when)
    data = asyncio.run(call_server(settings, *_STAFF, "/api/visits", method="GET", query=query))
    visits = data["visits"]
    if args.json:
        print(json.dumps(visits))
        return 0
    if not visits:
        print(f"no visits for organisation {settings.org}")
        return 0
    print(f"{'visit':22s}  {'state':9s} {'kind':12s} {'planned':16s}  seats")
    for visit in visits:
        print(_visit_line(visit))
    return 0


def visit_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    visit = asyncio.run(call_server(settings, *_STAFF, f"/api/visits/{args.visit}", method="GET"))
    if args.json:
        print(json.dumps(visit))
        return 0
    connected = set(visit.get("connected", []))
    print(f"visit {visit['id']} ({visit['kind']}), {visit['state']}")
    print(f"  planned   {_clock(visit.get('planned_start'))}, {visit['planned_minutes']} min")
    print(f"  waiting room {'on' if visit['waiting_room'] else 'off'}")
    for seat in visit["seats"]:
        here = "in the call" if seat["participant"] in connected else ""
        removed = "removed" if seat["participant"] in visit.get("removed", []) else ""
        print(f"  {seat['participant']}  {seat['role']:12s} {seat['sector']:17s} {here}{removed}")
    return 0


def _act(args: argparse.Namespace, action: str, done: str) -> int:
    settings = settings_from(args)
    data = asyncio.run(call_server(settings, *_STAFF, f"/api/visits/{args.visit}/{action}", {}))
    print(f"visit {data['visit']} {done} (state: {data['state']})")
    return 0


def visit_cancel(args: argparse.Namespace) -> int:
    return _act(args, "cancel", "cancelled: its links are refused")


def visit_end(args: argparse.Namespace) -> int:
    return _act(args, "end", "ended for everyone")


def add_visit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`list`, `show`, `cancel` and `end` under `screenvisit visit`."""
    p_list = commands.add_parser("list", help="the organisation's visits, newest planned first")
    p_list.add_argument("--state", choices=[s.value for s in VisitState])
    p_list.add_argument(
        "--from", dest="from_", help="planned from then: an ISO date or time, or a period (7d)"
    )
    p_list.add_argument("--to", help="planned until then: an ISO date or time, or a period")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    add_setting_flags(p_list)
    p_list.set_defaults(func=visit_list)

    for name, func, text in (
        ("show", visit_show, "one visit: its booking and who is in the call now"),
        ("cancel", visit_cancel, "cancel a booked visit: its links stop working at once"),
        ("end", visit_end, "end a visit for everyone in it"),
    ):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("visit", help="the visit's id")
        if name == "show":
            parser.add_argument("--json", action="store_true", help="print JSON")
        add_setting_flags(parser)
        parser.set_defaults(func=func)
