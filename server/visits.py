"""Booking a visit and making its invite links: one path for the API, the CLI and the demo."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web

from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import new_visit_id
from rooms.principal import Principal
from rooms.roles import Role, Sector
from rooms.visit import Visit, VisitKind
from server import appkeys
from server.errors import ApiError

SeatRequest = tuple[Role, str | None, Sector | None]


async def book_visit(
    app: web.Application, principal: Principal, kind: VisitKind, seats: Sequence[SeatRequest]
) -> Visit:
    """Create the visit and its seats. The caller has authorized `principal` for CREATE_VISIT."""
    if principal.org is None:
        raise ApiError("org-required", "the creator's token names no organisation", 403)
    visit = Visit(id=new_visit_id(), kind=kind, org=principal.org, created_at=time.time())
    for role, name, sector in seats:
        visit.add_seat(role, name, sector)
    await app[appkeys.STORE].create(visit)
    await app[appkeys.EVENTS].append(
        VisitEvent(
            visit=visit.id,
            kind=EventKind.VISIT_CREATED,
            role=principal.role.value,
            sector=principal.sector.value,
            org=visit.org,
            data={"kind": visit.kind.value, "seats": len(visit.seats)},
        )
    )
    return visit


def invite_links(app: web.Application, visit: Visit) -> list[dict[str, str]]:
    """A signed, visit-scoped, expiring link per seat; the token rides in the URL fragment,
    which browsers never send to a server, so it cannot reach an access log."""
    settings = app[appkeys.SETTINGS]
    issuer = app[appkeys.ISSUER]
    links = []
    for seat in visit.seats.values():
        token = issuer.sign(
            sub=seat.participant,
            role=seat.role,
            sector=seat.sector,
            lifetime=settings.link_hours * 3600,
            visit=visit.id,
            org=visit.org,
            name=seat.name,
        )
        links.append(
            {
                "participant": seat.participant,
                "role": seat.role.value,
                "url": f"{settings.base_url}/v/{visit.id}#{token}",
            }
        )
    return links


def links_by_role(participants: list[dict[str, str]]) -> dict[str, str]:
    """The first link of each role; a second seat of a role is keyed role-2, role-3, ..."""
    out: dict[str, str] = {}
    for entry in participants:
        key, n = entry["role"], 1
        while key in out:
            n += 1
            key = f"{entry['role']}-{n}"
        out[key] = entry["url"]
    return out
