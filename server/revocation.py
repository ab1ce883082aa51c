"""Revoked token ids: checked on every authentication, kept until the token would have expired."""

from __future__ import annotations

import time
from typing import Protocol

from rooms.sql import Database


class RevocationStore(Protocol):
    async def add(self, jti: str, expires_at: float) -> None: ...

    async def active(self, now: float) -> list[tuple[str, float]]: ...


class RevocationList:
    """In memory for the per-request check, persisted so a restart does not forget."""

    def __init__(self, store: RevocationStore) -> None:
        self._store = store
        self._revoked: dict[str, float] = {}

    async def load(self) -> None:
        self._revoked = dict(await self._store.active(time.time()))

    def is_revoked(self, jti: str) -> bool:
        expires_at = self._revoked.get(jti)
        if expires_at is None:
            return False
        if expires_at < time.time() - 3600:
            # Long expired: the token is refused for its exp anyway.
            del self._revoked[jti]
            return False
        return True

    async def revoke(self, jti: str, expires_at: float) -> None:
        await self._store.add(jti, expires_at)
        self._revoked[jti] = expires_at

    def remember(self, jti: str, expires_at: float) -> None:
        """A revocation another node stored (and announced on the bus)."""
        self._revoked[jti] = expires_at


class SqlRevocationStore:
    """The `revocations` table (migration 3 in rooms/sql.py)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, jti: str, expires_at: float) -> None:
        await self._db.execute("DELETE FROM revocations WHERE jti = ?", jti)
        await self._db.execute(
            "INSERT INTO revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)",
            jti,
            expires_at,
            time.time(),
        )

    async def active(self, now: float) -> list[tuple[str, float]]:
        await self._db.execute("DELETE FROM revocations WHERE expires_at < ?", now - 3600)
        rows = await self._db.fetch("SELECT jti, expires_at FROM revocations")
        return [(str(row[0]), float(row[1])) for row in rows]
