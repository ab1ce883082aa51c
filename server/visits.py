"""Booking a visit and making its invite links: one path for the API, the CLI and the demo."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypedDict

from aiohttp import web

from rooms.cluster import NoNodeAvailable
from rooms.errors import InvalidTransition, VisitNotFound
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import VISIT_ID_PATTERN, VisitId, new_visit_id
from rooms.link_window import LinkWindow
from rooms.policy import Action
from rooms.principal import Principal
from rooms.roles import Role, Sector
from rooms.visit import (
    DEFAULT_MAX_PARTICIPANTS,
    DEFAULT_PLANNED_MINUTES,
    Seat,
    Visit,
    VisitKind,
)
from server import appkeys
from server.errors import ApiError
from server.trust import DEFAULT_MAX_LIFETIME
from signaling.node import NodeCallFailed

SeatRequest = tuple[Role, str | None, Sector | None]

#: Times the API accepts for a planned start (and query bounds): 2000 to 2100, UTC.
EARLIEST_TIME = 946_684_800
LATEST_TIME = 4_102_444_800
#: Longest display name of a seat.
MAX_NAME = 80


class FieldError(ApiError):
    """An `invalid-field` that names the field it is about (also as `error.field`): 400, or
    409 when the value is valid but the visit as it stands does not allow it."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__("invalid-field", message, status)
        self.field = field


class Keep(Enum):
    """A sentinel: "leave this field as it is", for a field whose new value may be None."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@dataclass(frozen=True)
class BookingChange:
    """What a PATCH changes; None (or KEEP, for planned_start) leaves a field as it is."""

    kind: VisitKind | None = None
    planned_start: float | Keep | None = KEEP
    planned_minutes: int | None = None
    waiting_room: bool | None = None
    max_participants: int | None = None

    def apply(self, visit: Visit, now: float | None = None) -> None:
        """Change `visit` in place, or raise (and change nothing that is kept)."""
        visit.ensure_bookable()
        if self.kind is not None:
            missing = visit.missing_roles(self.kind)
            if missing:
                raise FieldError(
                    "kind",
                    f"'kind' cannot become {self.kind.value}: the visit has no "
                    + " or ".join(role.value for role in missing)
                    + " seat",
                    409,
                )
        if self.max_participants is not None:
            visit.set_max_participants(self.max_participants)
        if self.kind is not None:
            visit.kind = self.kind
        if self.planned_start is not KEEP:
            visit.planned_start = self.planned_start
        if self.planned_minutes is not None:
            visit.planned_minutes = self.planned_minutes
        if self.waiting_room is not None:
            visit.waiting_room = self.waiting_room
        visit.touch(now)


async def book_visit(
    app: web.Application,
    principal: Principal,
    kind: VisitKind,
    seats: Sequence[SeatRequest],
    *,
    planned_start: float | None = None,
    planned_minutes: int = DEFAULT_PLANNED_MINUTES,
    waiting_room: bool = True,
    max_participants: int = DEFAULT_MAX_PARTICIPANTS,
) -> Visit:
    """Create the visit and its seats. The caller has authorized `principal` for CREATE_VISIT.

    Raises VisitFull when there are more seats than `max_participants`, and FieldError when a
    visit of `kind` lacks a seat it needs (a conference: a gp and a specialist)."""
    if principal.org is None:
        raise ApiError("org-required", "the creator's token names no organisation", 403)
    now = time.time()
    visit = Visit(
        id=new_visit_id(),
        kind=kind,
        org=principal.org,
        created_at=now,
        max_participants=max_participants,
        planned_start=planned_start,
        planned_minutes=planned_minutes,
        waiting_room=waiting_room,
    )
    for role, name, sector in seats:
        visit.add_seat(role, name, sector)
    missing = visit.missing_roles()
    if missing:
        raise FieldError(
            "participants",
            f"'participants' of a {kind.value} must include "
            + " and ".join(role.value for role in missing),
        )
    try:
        await app[appkeys.NODE].place_new(visit.id)
    except NoNodeAvailable as exc:
        raise ApiError("no-node-available", str(exc), 503) from None
    await app[appkeys.STORE].create(visit)
    app[appkeys.JANITOR].watch(visit)
    await app[appkeys.EVENTS].append(
        VisitEvent(
            visit=visit.id,
            kind=EventKind.VISIT_CREATED,
            role=principal.role.value,
            sector=principal.sector.value,
            org=visit.org,
            data={
                "kind": visit.kind.value,
                "seats": len(visit.seats),
                "planned_start": visit.planned_start,
                "planned_minutes": visit.planned_minutes,
            },
        )
    )
    for seat in visit.seats.values():
        await record_invited(app, visit, seat)
    return visit


async def record_invited(app: web.Application, visit: Visit, seat: Seat) -> None:
    await app[appkeys.EVENTS].append(
        VisitEvent(
            visit=visit.id,
            kind=EventKind.PARTICIPANT_INVITED,
            participant=seat.participant,
            role=seat.role.value,
            sector=seat.sector.value,
            org=visit.org,
        )
    )


async def update_visit(
    app: web.Application, visit_id: VisitId, change: Callable[[Visit], None]
) -> Visit:
    """Apply `change` to the stored visit and store the result; returns the visit as stored.

    Uses the store's atomic `update` where the store has one (`change` may then run more than
    once, on fresh copies, so it must only change the visit it is given); otherwise reads,
    changes and saves. If `change` raises, nothing is written.
    """
    store = app[appkeys.STORE]
    update = getattr(store, "update", None)
    if update is not None:
        updated = await update(visit_id, change)
        if isinstance(updated, Visit):
            return updated
        return await store.get(visit_id)
    visit = await store.get(visit_id)
    change(visit)
    await store.save(visit)
    return visit


async def cancel_booking(app: web.Application, principal: Principal, visit_id: VisitId) -> Visit:
    """Cancel a scheduled or open visit (the caller has authorized `principal` for END_VISIT):
    every link is refused from now on, and anyone connected is told and disconnected, on
    whichever node holds the visit."""
    cancelled = await update_visit(app, visit_id, Visit.cancel)
    try:
        elsewhere = await app[appkeys.NODE].on_owner(
            visit_id, "close-visit", {"reason": "visit-cancelled"}
        )
    except NodeCallFailed as exc:
        raise ApiError(exc.code, exc.message, 503) from None
    if elsewhere is None:
        hub = app[appkeys.HUBS].hubs.get(visit_id)
        if hub is not None:
            await hub.close_for_cancel("visit-cancelled")
    await app[appkeys.EVENTS].append(
        VisitEvent(
            visit=cancelled.id,
            kind=EventKind.VISIT_CANCELLED,
            role=principal.role.value,
            sector=principal.sector.value,
            org=cancelled.org,
        )
    )
    return cancelled


def link_window(app: web.Application) -> LinkWindow:
    return app[appkeys.SETTINGS].link_window()


class LinkStatus(TypedDict):
    planned_start: float | None
    opens_at: float | None
    closes_at: float | None
    window: str
    now: float


def link_status(app: web.Application, visit: Visit, now: float) -> LinkStatus:
    """What the join page needs to know of a link's opening hours: when it opens and closes
    (None for a visit planned for no time) and where `now` is in that window."""
    window = link_window(app)
    return LinkStatus(
        planned_start=visit.planned_start,
        opens_at=window.opens_at(visit),
        closes_at=window.closes_at(visit),
        window=window.phase(visit, now).value,
        now=now,
    )


def link_lifetime(app: web.Application, visit: Visit, role: Role, now: float) -> float:
    """Seconds an invite link lives: the configured hours, or longer, up to the role's longest
    token lifetime, so that a citizen's link booked days ahead still works in its window."""
    default = app[appkeys.SETTINGS].link_hours * 3600
    closes = link_window(app).closes_at(visit)
    if closes is None or closes - now <= default:
        return default
    # One second more: the issuer counts from the whole second before `now`.
    return max(default, min(math.ceil(closes - now) + 1, DEFAULT_MAX_LIFETIME[role]))


def ensure_live(visit: Visit) -> None:
    """Raise InvalidTransition, naming the state, unless people can still join the visit."""
    if not visit.is_live:
        raise InvalidTransition(f"visit {visit.id} has {visit.state.value}", visit.state.value)


def invite_links(app: web.Application, visit: Visit) -> list[dict[str, str]]:
    """A signed, visit-scoped, expiring link per seat; the token rides in the URL fragment,
    which browsers never send to a server, so it cannot reach an access log."""
    settings = app[appkeys.SETTINGS]
    issuer = app[appkeys.ISSUER]
    links = []
    now = time.time()
    for seat in visit.seats.values():
        token = issuer.sign(
            sub=seat.participant,
            role=seat.role,
            sector=seat.sector,
            lifetime=link_lifetime(app, visit, seat.role, now),
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


_VISIT_ID = re.compile(VISIT_ID_PATTERN)

#: How an API authenticates a request's token for an action on a visit (None: a malformed id).
Authenticate = Callable[[web.Request, Action, str | None], Awaitable[Principal]]


async def authorized_visit(
    request: web.Request,
    visit_id: str,
    action: Action,
    authenticate: Authenticate,
    client: str | None,
    principal: Principal | None = None,
) -> tuple[Principal, Visit]:
    """The visit the route names and the principal (authenticated now by `authenticate`
    unless given), authorized for `action`; audited either way. Raises VisitNotFound for an
    unknown or malformed id; a malformed id is never written to the audit log (it may be
    anything at all). The lookup of the JSON API and of FHIR alike."""
    well_formed = _VISIT_ID.fullmatch(visit_id) is not None
    if principal is None:
        principal = await authenticate(request, action, visit_id if well_formed else None)
    access = request.config_dict[appkeys.ACCESS]
    try:
        if not well_formed:
            raise VisitNotFound("no such visit")
        visit = await request.config_dict[appkeys.STORE].get(VisitId(visit_id))
    except VisitNotFound:
        await access.record(
            principal,
            action,
            visit_id if well_formed else None,
            client,
            allowed=False,
            reason="visit-not-found",
        )
        raise
    await access.authorize(principal, action, visit, client=client)
    return principal, visit
