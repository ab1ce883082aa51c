"""A `VisitStore` whose record is SQL and whose cache is live state (memory or Redis).

Every write reaches the record before it returns: a new visit is recorded first and then cached;
a change goes through the cache's atomic `update` (which orders concurrent writers) and is then
recorded with the visit's revision raised by one, so the record never goes back to an older
copy. A read the cache cannot answer (a node restarted, or Redis came back empty) rebuilds the
visit in the cache from the record. So a booking the API acknowledged outlives its live state.

A new visit the record cannot take is never cached. With a `DurableWriter`, a change the
database cannot take right now (it is down or slow) goes to the writer's fsynced outbox and
reaches the record once the database is back, so a call's admissions and host actions go on
during an outage. A change neither can keep (or, without a writer, the database cannot) raises
`RecordUnavailable` (so nobody is told it was saved) though the cache already holds it: the
next recorded change of that visit carries it into the record too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from rooms.booking_archive import RecordUnavailable, VisitArchive
from rooms.durable import DurableWriter
from rooms.errors import NotDurable, VisitNotFound
from rooms.ids import VisitId
from rooms.store import DEFAULT_ENDED_TTL_SECONDS, StoreUnavailable, VisitStore, fenced
from rooms.visit import Visit

logger = logging.getLogger(__name__)


def register_booking_writes(writer: DurableWriter, archive: VisitArchive) -> None:
    """How `writer` records a changed booking (before it replays what a last run left in its
    outbox). Idempotent: the record only ever takes a higher revision."""
    writer.register("booking", lambda raw: archive.put(Visit.from_dict(raw)))


class DurableVisitStore:
    """A `VisitStore`: `cache` holds live state, `archive` the record it is rebuilt from. Closing
    it closes the cache; the archive's database belongs to whoever opened it."""

    def __init__(
        self,
        cache: VisitStore,
        archive: VisitArchive,
        *,
        ended_ttl_seconds: float = DEFAULT_ENDED_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        writer: DurableWriter | None = None,
    ) -> None:
        """`ended_ttl_seconds`: how long a finished visit is listed (as Redis keeps it);
        `writer`: where changes go while the database cannot take them (register its booking
        writes with `register_booking_writes`)."""
        self.cache = cache
        self.archive = archive
        self._writer = writer
        self._ended_ttl_seconds = ended_ttl_seconds
        self._clock = clock

    async def create(self, visit: Visit) -> None:
        await self.archive.insert(visit)
        await self.cache.create(visit)

    async def get(self, visit_id: VisitId) -> Visit:
        try:
            return await self.cache.get(visit_id)
        except VisitNotFound:
            return await self._restore(visit_id)

    async def save(self, visit: Visit) -> None:
        fresh = Visit.from_dict(visit.to_dict())

        def replace(stored: Visit) -> None:
            fresh.revision = stored.revision
            for field in dataclasses.fields(Visit):
                setattr(stored, field.name, getattr(fresh, field.name))

        await self.update(visit.id, replace)

    async def update(
        self, visit_id: VisitId, change: Callable[[Visit], None], *, epoch: int | None = None
    ) -> Visit:
        change = fenced(change, epoch)

        def recorded_change(visit: Visit) -> None:
            change(visit)
            visit.revision += 1

        try:
            visit = await self.cache.update(visit_id, recorded_change)
        except VisitNotFound:
            await self._restore(visit_id)
            visit = await self.cache.update(visit_id, recorded_change)
        if self._writer is None:
            await self.archive.put(visit)
            return visit
        try:
            await self._writer.write("booking", visit.to_dict())
        except NotDurable:
            raise RecordUnavailable("the booking record is unavailable") from None
        return visit

    async def list_by_org(self, org: str) -> list[Visit]:
        """The record's visits of `org` (finished ones for `ended_ttl_seconds`), each replaced by
        its cached copy when that is as new; while the cache is unreachable, the record alone
        (it has every acknowledged change)."""
        finished_since = self._clock() - self._ended_ttl_seconds
        listed = await self.archive.list_by_org(org, finished_since=finished_since)
        visits = {visit.id: visit for visit in listed}
        with contextlib.suppress(StoreUnavailable):
            for cached in await self.cache.list_by_org(org):
                recorded = visits.get(cached.id)
                if recorded is None or cached.revision >= recorded.revision:
                    visits[cached.id] = cached
        return list(visits.values())

    async def delete(self, visit_id: VisitId) -> None:
        await self.archive.delete(visit_id)
        await self.cache.delete(visit_id)

    async def close(self) -> None:
        await self.cache.close()

    async def _restore(self, visit_id: VisitId) -> Visit:
        """Put the recorded visit back in the cache; raise VisitNotFound if none is recorded."""
        visit = await self.archive.get(visit_id)
        if visit is None:
            raise VisitNotFound(f"no visit {visit_id}")
        # The lease epochs went with the live state: a new era of leases starts from 1.
        visit.fence = 0
        try:
            await self.cache.create(visit)
        except ValueError:
            # Another reader (or node) put it back first, and may have changed it since.
            return await self.cache.get(visit_id)
        logger.info("visit %s: live state rebuilt from the booking record", visit_id)
        return visit
