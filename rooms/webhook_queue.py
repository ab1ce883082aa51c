"""The durable queue of webhook deliveries (migration 8), shared by every node on one database.

A message is queued once per endpoint; queuing it again (a replay from the outbox) changes
nothing, since (message, url) is unique. A deliverer claims due rows by moving their `due` on
by a lease, in one statement, so two nodes on one PostgreSQL do not both send a row at once;
a node that dies mid-delivery leaves the row to be claimed again when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rooms.sql import Database

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
#: Longest error text kept with a delivery (a status line or an exception's name).
MAX_ERROR = 200


@dataclass(frozen=True)
class Outgoing:
    """One message for one endpoint."""

    message: str
    url: str
    type: str
    body: str
    created_at: float


@dataclass(frozen=True)
class Claimed:
    id: int
    message: str
    url: str
    body: str
    created_at: float
    attempts: int


class SqlWebhookQueue:
    """The `webhook_deliveries` table; whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(self, rows: Sequence[Outgoing], now: float) -> None:
        for row in rows:
            await self._db.execute(
                "INSERT INTO webhook_deliveries (message, url, type, body, created_at, due)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message, url) DO NOTHING",
                row.message,
                row.url,
                row.type,
                row.body,
                row.created_at,
                now,
            )

    async def claim(self, now: float, lease: float, limit: int) -> list[Claimed]:
        """Due pending rows, oldest first, each counted as one more attempt and not due again
        until `now + lease` (unless `delivered` or `retry` says otherwise first)."""
        rows = await self._db.fetch(
            "UPDATE webhook_deliveries SET due = ?, attempts = attempts + 1"
            " WHERE state = ? AND due <= ? AND id IN (SELECT id FROM webhook_deliveries"
            " WHERE state = ? AND due <= ? ORDER BY due, id LIMIT ?)"
            " RETURNING id, message, url, body, created_at, attempts",
            now + lease,
            PENDING,
            now,
            PENDING,
            now,
            limit,
        )
        claimed = [Claimed(int(r[0]), r[1], r[2], r[3], float(r[4]), int(r[5])) for r in rows]
        return sorted(claimed, key=lambda c: c.id)

    async def delivered(self, id: int, now: float) -> None:
        await self._db.execute(
            "UPDATE webhook_deliveries SET state = ?, finished_at = ?, last_error = NULL"
            " WHERE id = ?",
            DELIVERED,
            now,
            id,
        )

    async def retry(self, id: int, due: float, error: str) -> None:
        await self._db.execute(
            "UPDATE webhook_deliveries SET due = ?, last_error = ? WHERE id = ? AND state = ?",
            due,
            error[:MAX_ERROR],
            id,
            PENDING,
        )

    async def give_up(self, id: int, now: float, error: str) -> None:
        await self._db.execute(
            "UPDATE webhook_deliveries SET state = ?, finished_at = ?, last_error = ? WHERE id = ?",
            FAILED,
            now,
            error[:MAX_ERROR],
            id,
        )

    async def next_due(self) -> float | None:
        """When the earliest pending row falls due, or None when nothing is pending."""
        rows = await self._db.fetch(
            "SELECT MIN(due) FROM webhook_deliveries WHERE state = ?", PENDING
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def counts(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")
        return {str(r[0]): int(r[1]) for r in rows}

    async def purge(self, finished_before: float) -> None:
        """Forget deliveries that finished (delivered or given up) before the given time."""
        await self._db.execute(
            "DELETE FROM webhook_deliveries WHERE state <> ? AND finished_at < ?",
            PENDING,
            finished_before,
        )
