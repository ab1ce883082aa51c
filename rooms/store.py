"""Live visit state behind one narrow interface.

`MemoryVisitStore` is the single-node default; `rooms.redis_store.RedisVisitStore` shares live
state between server nodes. Both keep a visit only as the JSON of `Visit.to_dict()`, so a caller
never shares a mutable `Visit` with the store or with another caller, and a field added to `Visit`
(and to its `to_dict`/`from_dict`) is stored without any change here. `open_visit_store` picks the
implementation from a Redis URL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

from rooms.errors import RoomsError, VisitNotFound
from rooms.ids import VisitId
from rooms.visit import Visit, VisitState

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_PREFIX = "screenvisit:"
DEFAULT_ENDED_TTL_SECONDS = 7 * 24 * 3600
"""How long a stored visit that has ended or been cancelled is kept by stores that expire them."""

FINISHED_STATES = frozenset({VisitState.ENDED, VisitState.CANCELLED})


class StoreConflict(RoomsError):
    """A read-modify-write kept losing to concurrent writers and gave up."""

    code = "store-conflict"


class StoreUnavailable(RoomsError):
    """The store's backing service cannot be reached."""

    code = "store-unavailable"


class StaleLease(RoomsError):
    """A write under a lease epoch older than one that has written the visit already."""

    code = "stale-lease"


def fenced(change: Callable[[Visit], None], epoch: int | None) -> Callable[[Visit], None]:
    """`change`, refused with StaleLease when the visit was written under a later epoch than
    `epoch` (None: unfenced, e.g. a booking change over the API)."""
    if epoch is None:
        return change

    def apply(visit: Visit) -> None:
        if visit.fence > epoch:
            raise StaleLease(f"visit {visit.id} is written under epoch {visit.fence} now")
        visit.fence = epoch
        change(visit)

    return apply


class VisitStore(Protocol):
    async def create(self, visit: Visit) -> None:
        """Store a new visit, or raise ValueError if one with its id exists."""
        ...

    async def get(self, visit_id: VisitId) -> Visit:
        """Return a copy of the visit, or raise VisitNotFound."""
        ...

    async def save(self, visit: Visit) -> None:
        """Replace a stored visit with `visit` (last writer wins), or raise VisitNotFound."""
        ...

    async def list_by_org(self, org: str) -> list[Visit]:
        """Copies of the organisation's stored visits, in no particular order."""
        ...

    async def update(
        self, visit_id: VisitId, change: Callable[[Visit], None], *, epoch: int | None = None
    ) -> Visit:
        """Apply `change` to a fresh copy of the visit and store it, atomically.

        With `epoch` (the writer's lease epoch) the write is fenced: StaleLease if a later
        epoch has written the visit, checked in the same atomic step (see `fenced`).

        No other write to the visit can land between the read and the write; `change` may be
        called more than once (on fresh copies) when a concurrent writer wins a race, so it must
        have no effect other than on the visit it is given, and must not call the store. If it
        raises, nothing is written and the exception propagates. Returns the visit as stored.
        Raises VisitNotFound, or StoreConflict if concurrent writers keep winning.
        """
        ...

    async def delete(self, visit_id: VisitId) -> None:
        """Forget the visit; a missing visit is not an error."""
        ...

    async def close(self) -> None:
        """Release what the store owns (connections); it is not used afterwards."""
        ...


def encode_visit(visit: Visit) -> str:
    """The stored form of a visit: the JSON of its whole `to_dict()`."""
    return json.dumps(visit.to_dict(), separators=(",", ":"), ensure_ascii=False)


def decode_visit(raw: str | bytes) -> Visit:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a stored visit is not a JSON object")
    return Visit.from_dict(data)


def is_finished(visit: Visit) -> bool:
    """True for a visit that has ended or been cancelled: it can no longer change state."""
    return visit.state in FINISHED_STATES


class _Entry(NamedTuple):
    org: str
    json: str


class MemoryVisitStore:
    """Keeps each visit as its JSON, so callers never share a mutable Visit. Never expires one."""

    def __init__(self) -> None:
        self._visits: dict[VisitId, _Entry] = {}
        self._lock = asyncio.Lock()

    async def create(self, visit: Visit) -> None:
        async with self._lock:
            if visit.id in self._visits:
                raise ValueError(f"visit {visit.id} exists")
            self._visits[visit.id] = _Entry(visit.org, encode_visit(visit))

    async def get(self, visit_id: VisitId) -> Visit:
        entry = self._visits.get(visit_id)
        if entry is None:
            raise VisitNotFound(f"no visit {visit_id}")
        return decode_visit(entry.json)

    async def save(self, visit: Visit) -> None:
        async with self._lock:
            if visit.id not in self._visits:
                raise VisitNotFound(f"no visit {visit.id}")
            self._visits[visit.id] = _Entry(visit.org, encode_visit(visit))

    async def list_by_org(self, org: str) -> list[Visit]:
        return [decode_visit(e.json) for e in self._visits.values() if e.org == org]

    async def update(
        self, visit_id: VisitId, change: Callable[[Visit], None], *, epoch: int | None = None
    ) -> Visit:
        change = fenced(change, epoch)
        async with self._lock:
            entry = self._visits.get(visit_id)
            if entry is None:
                raise VisitNotFound(f"no visit {visit_id}")
            visit = decode_visit(entry.json)
            change(visit)
            if visit.id != visit_id:
                raise ValueError(f"an update may not change the visit id ({visit_id})")
            self._visits[visit_id] = _Entry(visit.org, encode_visit(visit))
            return visit

    async def delete(self, visit_id: VisitId) -> None:
        async with self._lock:
            self._visits.pop(visit_id, None)

    async def close(self) -> None:
        return None


def describe_redis_url(redis_url: str) -> str:
    """Where a Redis URL points (scheme, host, port, or socket path), never its credentials."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname or '?'}:{port or 6379}"


def _without_secret(text: str, redis_url: str) -> str:
    """`text` with the URL's password (as written and unquoted) masked."""
    password = urlsplit(redis_url).password
    for secret in {password, unquote(password)} if password else ():
        text = text.replace(secret, "***")
    return text


async def open_redis(redis_url: str) -> Redis:
    """A new, checked Redis client for the URL (the caller closes it).

    Raises StoreUnavailable, naming the host but never the password, if Redis cannot be reached.
    """
    from redis.asyncio import from_url
    from redis.exceptions import RedisError

    where = describe_redis_url(redis_url)
    try:
        # A query-string socket_connect_timeout in the URL wins over this default.
        client = from_url(redis_url, decode_responses=True, socket_connect_timeout=5)
    except ValueError as exc:
        reason = _without_secret(str(exc), redis_url)
        raise StoreUnavailable(f"invalid Redis URL for {where} ({reason})") from None
    try:
        await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        reason = _without_secret(f"{type(exc).__name__}: {exc}", redis_url)
        raise StoreUnavailable(f"cannot reach Redis at {where} ({reason})") from None
    return client


async def open_visit_store(
    redis_url: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    ended_ttl_seconds: int | None = DEFAULT_ENDED_TTL_SECONDS,
    client: Redis | None = None,
) -> VisitStore:
    """A memory store for no URL, else a Redis store: on `client` if given (the caller keeps
    owning it), or on a new, checked client the store owns. The caller closes the store.

    Raises StoreUnavailable, naming the host but never the password, if Redis cannot be reached.
    """
    if not redis_url:
        return MemoryVisitStore()
    from rooms.redis_store import RedisVisitStore

    if client is not None:
        return RedisVisitStore(
            client, prefix, ended_ttl_seconds=ended_ttl_seconds, owns_client=False
        )
    return RedisVisitStore(await open_redis(redis_url), prefix, ended_ttl_seconds=ended_ttl_seconds)
