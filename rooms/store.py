"""Live visit state behind one narrow interface. The memory store is the single-node default."""

from __future__ import annotations

import asyncio
from typing import Protocol

from rooms.errors import VisitNotFound
from rooms.ids import VisitId
from rooms.visit import Visit


class VisitStore(Protocol):
    async def create(self, visit: Visit) -> None: ...

    async def get(self, visit_id: VisitId) -> Visit:
        """Return a copy of the visit, or raise VisitNotFound."""
        ...

    async def save(self, visit: Visit) -> None: ...

    async def list_by_org(self, org: str) -> list[Visit]: ...


class MemoryVisitStore:
    """Keeps visits as serialised dicts so callers never share a mutable Visit."""

    def __init__(self) -> None:
        self._visits: dict[VisitId, dict[str, object]] = {}
        self._lock = asyncio.Lock()

    async def create(self, visit: Visit) -> None:
        async with self._lock:
            if visit.id in self._visits:
                raise ValueError(f"visit {visit.id} exists")
            self._visits[visit.id] = visit.to_dict()

    async def get(self, visit_id: VisitId) -> Visit:
        data = self._visits.get(visit_id)
        if data is None:
            raise VisitNotFound(f"no visit {visit_id}")
        return Visit.from_dict(data)

    async def save(self, visit: Visit) -> None:
        async with self._lock:
            if visit.id not in self._visits:
                raise VisitNotFound(f"no visit {visit.id}")
            self._visits[visit.id] = visit.to_dict()

    async def list_by_org(self, org: str) -> list[Visit]:
        return [Visit.from_dict(d) for d in self._visits.values() if d["org"] == org]
