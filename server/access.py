"""Access decisions in one place: authenticate, authorize, rate-limit, and audit every one.

The audit log records time, subject, sector, org, role, action, visit, result, reason and client
address for every decision, allowed or refused, and never a token or a name.
"""

from __future__ import annotations

import logging

import jwt

from rooms.audit import AuditLog, AuditRecord
from rooms.errors import AuthenticationFailed, NotDurable, NotPermitted
from rooms.policy import Action, authorize
from rooms.principal import Principal
from rooms.visit import Visit
from server.auth import TokenVerifier
from server.ratelimit import AuthFailureLimiter

logger = logging.getLogger(__name__)

MAX_AUDITED_ISSUER = 200


def _unverified_issuer(token: str) -> str | None:
    """The `iss` a refused token claims, for the audit trail (never its subject: it may be a CPR
    number, which is exactly why it was refused)."""
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return iss[:MAX_AUDITED_ISSUER] if isinstance(iss, str) else None


class AccessControl:
    def __init__(
        self, verifier: TokenVerifier, audit: AuditLog, limiter: AuthFailureLimiter
    ) -> None:
        self.verifier = verifier
        self._audit = audit
        self._limiter = limiter

    async def authenticate(
        self, token: str, *, action: Action, client: str | None, visit: str | None = None
    ) -> Principal:
        """The token's principal, or AuthenticationFailed (recorded, and counted per address)."""
        if await self._limiter.blocked(client):
            await self._refused_token(token, action, visit, client, "rate-limited")
            raise AuthenticationFailed(
                "rate-limited", "too many failed attempts from this address; wait a minute", 429
            )
        try:
            return await self.verifier.authenticate(token)
        except AuthenticationFailed as exc:
            await self._limiter.failure(client)
            await self._refused_token(token, action, visit, client, exc.code)
            raise

    async def authorize(
        self,
        principal: Principal,
        action: Action,
        visit: Visit | None,
        *,
        client: str | None,
        visit_id: str | None = None,
    ) -> None:
        """Apply the policy table and record the decision; raise NotPermitted when refused."""
        try:
            authorize(principal, action, visit)
        except NotPermitted as exc:
            await self.record(
                principal,
                action,
                visit_id or (visit.id if visit else None),
                client,
                allowed=False,
                reason=exc.message,
            )
            raise
        await self.record(
            principal, action, visit_id or (visit.id if visit else None), client, allowed=True
        )

    async def record(
        self,
        principal: Principal | None,
        action: Action,
        visit: str | None,
        client: str | None,
        *,
        allowed: bool,
        reason: str | None = None,
    ) -> None:
        await self._keep(
            AuditRecord(
                action=action.value,
                result="allowed" if allowed else "refused",
                reason=reason,
                subject=principal.subject if principal else None,
                issuer=principal.issuer if principal else None,
                sector=principal.sector.value if principal else None,
                org=principal.org if principal else None,
                role=principal.role.value if principal else None,
                visit=visit,
                client=client,
            )
        )

    async def _refused_token(
        self, token: str, action: Action, visit: str | None, client: str | None, reason: str
    ) -> None:
        await self._keep(
            AuditRecord(
                action=action.value,
                result="refused",
                reason=reason,
                subject=None,
                issuer=_unverified_issuer(token),
                sector=None,
                org=None,
                role=None,
                visit=visit,
                client=client,
            )
        )

    async def _keep(self, record: AuditRecord) -> None:
        """Durable when it returns (database or outbox). A decision neither could keep is
        logged, and the access goes on: a visit must not fail on its paperwork."""
        try:
            await self._audit.record(record)
        except NotDurable:
            logger.error("audit record lost (database and outbox failed): %s", record.action)
