"""The record of every booking: one row per visit in the metadata database (`bookings`).

A row holds the JSON of `Visit.to_dict()` beside the columns it is found by. Live state (memory
or Redis) is a cache that `rooms.durable_store.DurableVisitStore` rebuilds from these rows.
Writes are ordered by the visit's `revision`: a row is only ever replaced by a higher revision,
so two nodes whose writes of one visit land in the wrong order still leave the newer copy.
A finished visit's row keeps no seat names: nobody can join it any more, and the record holds
no more personal data than the visit still needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from typing import Protocol

import asyncpg  # type: ignore[import-untyped]

from rooms.ids import VisitId
from rooms.sql import Database
from rooms.store import FINISHED_STATES, StoreUnavailable, encode_visit, is_finished
from rooms.visit import BOOKING_STATES, Visit

_COLUMNS = "visit, org, state, planned_start, revision, updated_at, data"


class RecordUnavailable(StoreUnavailable):
    """The database that holds the booking record cannot be reached."""

    code = "record-unavailable"


class VisitArchive(Protocol):
    async def insert(self, visit: Visit) -> None:
        """Record a new visit, or raise ValueError if one with its id is recorded."""
        ...

    async def put(self, visit: Visit) -> None:
        """Record `visit` unless a copy of it with a higher revision is recorded already."""
        ...

    async def get(self, visit_id: VisitId) -> Visit | None: ...

    async def list_by_org(self, org: str, *, finished_since: float = 0.0) -> list[Visit]:
        """The organisation's visits; finished ones only if changed at `finished_since` or later."""
        ...

    async def not_started(self) -> list[Visit]:
        """Every visit still scheduled or open (booked, nobody in the call yet)."""
        ...

    async def delete(self, visit_id: VisitId) -> None: ...


@contextlib.contextmanager
def _database_unavailable_as_record_error() -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise RecordUnavailable(
            f"the booking record is unavailable ({type(exc).__name__})"
        ) from exc


def recorded_form(visit: Visit) -> Visit:
    """The copy of `visit` the record keeps: without seat names once it is finished."""
    if not is_finished(visit):
        return visit
    seats = {p: dataclasses.replace(seat, name=None) for p, seat in visit.seats.items()}
    return dataclasses.replace(visit, seats=seats)


class SqlVisitArchive:
    """The `bookings` table of a `Database` (migration 6); whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _row(self, visit: Visit) -> tuple[object, ...]:
        kept = recorded_form(visit)
        return (
            kept.id,
            kept.org,
            kept.state.value,
            kept.planned_start,
            kept.revision,
            kept.updated_at,
            encode_visit(kept),
        )

    async def insert(self, visit: Visit) -> None:
        with _database_unavailable_as_record_error():
            rows = await self._db.fetch(
                f"INSERT INTO bookings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (visit) DO NOTHING RETURNING visit",
                *self._row(visit),
            )
        if not rows:
            raise ValueError(f"visit {visit.id} is recorded already")

    async def put(self, visit: Visit) -> None:
        with _database_unavailable_as_record_error():
            await self._db.execute(
                f"INSERT INTO bookings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (visit) DO UPDATE SET org = excluded.org,"
                " state = excluded.state, planned_start = excluded.planned_start,"
                " revision = excluded.revision, updated_at = excluded.updated_at,"
                " data = excluded.data WHERE bookings.revision < excluded.revision",
                *self._row(visit),
            )

    async def get(self, visit_id: VisitId) -> Visit | None:
        visits = await self._select("WHERE visit = ?", visit_id)
        return visits[0] if visits else None

    async def list_by_org(self, org: str, *, finished_since: float = 0.0) -> list[Visit]:
        finished = sorted(state.value for state in FINISHED_STATES)
        return await self._select(
            "WHERE org = ? AND (state NOT IN (?, ?) OR updated_at >= ?)",
            org,
            *finished,
            finished_since,
        )

    async def not_started(self) -> list[Visit]:
        states = sorted(state.value for state in BOOKING_STATES)
        return await self._select("WHERE state IN (?, ?)", *states)

    async def delete(self, visit_id: VisitId) -> None:
        with _database_unavailable_as_record_error():
            await self._db.execute("DELETE FROM bookings WHERE visit = ?", visit_id)

    async def _select(self, where: str, *params: object) -> list[Visit]:
        with _database_unavailable_as_record_error():
            rows = await self._db.fetch(f"SELECT data FROM bookings {where}", *params)
        return [Visit.from_dict(json.loads(row[0])) for row in rows]
