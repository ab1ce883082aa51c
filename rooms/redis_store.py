"""Live visit state in Redis, shared by every server node that uses the same Redis and prefix.

Each visit is one string key holding the JSON of `Visit.to_dict()`; a set per organisation indexes
its visits. Every write of an existing visit is an optimistic transaction (WATCH the visit's key,
read it, MULTI, write, EXEC), retried with jittered backoff when another writer got in first, so
two nodes admitting to the same visit at once both land. A visit that has ended or been cancelled
expires after `ended_ttl_seconds`; its id leaves the org index the next time that org is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from rooms.errors import VisitNotFound
from rooms.ids import VisitId
from rooms.store import (
    DEFAULT_ENDED_TTL_SECONDS,
    DEFAULT_PREFIX,
    StoreConflict,
    StoreUnavailable,
    decode_visit,
    encode_visit,
    fenced,
    is_finished,
)
from rooms.visit import Visit

VISIT_KEY = "{prefix}visit:{visit_id}"  # string: JSON of Visit.to_dict(); expires once finished
ORG_VISITS_KEY = "{prefix}org:{org}:visits"  # set of visit ids; may name expired visits

DEFAULT_MAX_ATTEMPTS = 10
_FIRST_BACKOFF_SECONDS = 0.005
_MAX_BACKOFF_SECONDS = 0.5


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def redis_unavailable_as_store_error() -> Iterator[None]:
    """Turn Redis being unreachable into StoreUnavailable, the error callers handle."""
    try:
        yield
    except (RedisError, OSError) as exc:
        if isinstance(exc, WatchError):
            raise
        raise StoreUnavailable(f"live state is unavailable ({type(exc).__name__})") from exc


class RedisVisitStore:
    """A `VisitStore` in Redis. Works with clients with or without `decode_responses`."""

    def __init__(
        self,
        client: Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        ended_ttl_seconds: int | None = DEFAULT_ENDED_TTL_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        owns_client: bool = True,
    ) -> None:
        """`ended_ttl_seconds=None` keeps finished visits forever. `close()` closes the client
        unless `owns_client` is false."""
        if ended_ttl_seconds is not None and ended_ttl_seconds <= 0:
            raise ValueError("ended_ttl_seconds must be positive (or None to keep visits)")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client
        self._prefix = prefix
        self._ended_ttl_seconds = ended_ttl_seconds
        self._max_attempts = max_attempts
        self._owns_client = owns_client

    @property
    def client(self) -> Redis:
        return self._client

    @property
    def prefix(self) -> str:
        return self._prefix

    def visit_key(self, visit_id: VisitId) -> str:
        return VISIT_KEY.format(prefix=self._prefix, visit_id=visit_id)

    def org_key(self, org: str) -> str:
        return ORG_VISITS_KEY.format(prefix=self._prefix, org=org)

    async def create(self, visit: Visit) -> None:
        with redis_unavailable_as_store_error():
            key = self.visit_key(visit.id)
            async with self._client.pipeline(transaction=True) as pipe:
                # WATCH makes the index entry land only together with the visit; SET NX refuses an
                # existing visit even if the watched key was written between the check and EXEC.
                await pipe.watch(key)
                if await pipe.exists(key):
                    raise ValueError(f"visit {visit.id} exists")
                pipe.multi()
                pipe.set(key, encode_visit(visit), nx=True, ex=self._ttl_for(visit))
                pipe.sadd(self.org_key(visit.org), visit.id)
                try:
                    created, _ = await pipe.execute()
                except WatchError:
                    created = False
            if not created:
                raise ValueError(f"visit {visit.id} exists")

    async def get(self, visit_id: VisitId) -> Visit:
        with redis_unavailable_as_store_error():
            raw = await self._client.get(self.visit_key(visit_id))
            if raw is None:
                raise VisitNotFound(f"no visit {visit_id}")
            return decode_visit(raw)

    async def save(self, visit: Visit) -> None:
        with redis_unavailable_as_store_error():
            await self._transact(visit.id, lambda _stored: visit)

    async def update(
        self, visit_id: VisitId, change: Callable[[Visit], None], *, epoch: int | None = None
    ) -> Visit:
        # Checked on the copy read under WATCH: a write under a later epoch in between fails
        # the EXEC, and the retry sees it.
        change = fenced(change, epoch)
        with redis_unavailable_as_store_error():

            def apply(stored: Visit) -> Visit:
                change(stored)
                if stored.id != visit_id:
                    raise ValueError(f"an update may not change the visit id ({visit_id})")
                return stored

            return await self._transact(visit_id, apply)

    async def delete(self, visit_id: VisitId) -> None:
        with redis_unavailable_as_store_error():
            key = self.visit_key(visit_id)
            for attempt in range(self._max_attempts):
                async with self._client.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return
                    org = decode_visit(raw).org
                    pipe.multi()
                    pipe.delete(key)
                    pipe.srem(self.org_key(org), visit_id)
                    try:
                        await pipe.execute()
                        return
                    except WatchError:
                        pass
                await self._backoff(attempt)
            raise StoreConflict(f"could not delete visit {visit_id}: {self._gave_up}")

    async def list_by_org(self, org: str) -> list[Visit]:
        with redis_unavailable_as_store_error():
            org_key = self.org_key(org)
            ids = sorted(_text(member) for member in await self._client.smembers(org_key))
            if not ids:
                return []
            raws = await self._client.mget([self.visit_key(VisitId(i)) for i in ids])
            visits: list[Visit] = []
            gone: list[VisitId] = []
            for visit_id, raw in zip(ids, raws, strict=True):
                if raw is None:
                    gone.append(VisitId(visit_id))
                    continue
                visit = decode_visit(raw)
                if visit.org == org:
                    visits.append(visit)
            if gone:
                await self._forget_gone(org_key, gone)
            return visits

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @property
    def _gave_up(self) -> str:
        return f"concurrent writers won {self._max_attempts} attempts in a row"

    def _ttl_for(self, visit: Visit) -> int | None:
        return self._ended_ttl_seconds if is_finished(visit) else None

    async def _transact(self, visit_id: VisitId, compute: Callable[[Visit], Visit]) -> Visit:
        """Read the visit under WATCH, write `compute(copy)` in MULTI/EXEC; retry on conflict."""
        key = self.visit_key(visit_id)
        for attempt in range(self._max_attempts):
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    raise VisitNotFound(f"no visit {visit_id}")
                stored = decode_visit(raw)
                old_org = stored.org
                visit = compute(stored)
                pipe.multi()
                self._queue_write(pipe, visit, old_org)
                try:
                    await pipe.execute()
                    return visit
                except WatchError:
                    pass
            await self._backoff(attempt)
        raise StoreConflict(f"could not write visit {visit_id}: {self._gave_up}")

    def _queue_write(self, pipe: Pipeline, visit: Visit, old_org: str) -> None:
        key = self.visit_key(visit.id)
        # A plain SET clears any earlier expiry; a finished visit gets one.
        pipe.set(key, encode_visit(visit), ex=self._ttl_for(visit))
        if old_org != visit.org:
            pipe.srem(self.org_key(old_org), visit.id)
        pipe.sadd(self.org_key(visit.org), visit.id)

    async def _forget_gone(self, org_key: str, gone: list[VisitId]) -> None:
        """Drop expired visits from an org index, unless one was re-created meanwhile."""
        keys = [self.visit_key(visit_id) for visit_id in gone]
        async with self._client.pipeline(transaction=True) as pipe:
            await pipe.watch(*keys)
            if await pipe.exists(*keys):
                return  # rare: try again on a later listing
            pipe.multi()
            pipe.srem(org_key, *gone)
            try:
                await pipe.execute()
            except WatchError:
                pass

    @staticmethod
    async def _backoff(attempt: int) -> None:
        ceiling = min(_MAX_BACKOFF_SECONDS, _FIRST_BACKOFF_SECONDS * 2**attempt)
        await asyncio.sleep(random.uniform(0, ceiling))
