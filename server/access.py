"""Access decisions in one place: authenticate, authorize, rate-limit, and audit every one.

The audit log records time, subject, sector, org, role, action, visit, result, reason and client
address for every decision, allowed or refused, and never a token or a name.

Refusals before authentication cost an attacker nothing, so they must cost the server little:
the address's limit is checked before anything is written, and their repeats are folded into one
counted row per address, reason and minute (`AuditLog.count`), with bounded fields only.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import jwt

from rooms.audit import AuditLog, AuditRecord, token_digest
from rooms.errors import AuthenticationFailed, NotDurable, NotPermitted
from rooms.ids import VISIT_ID_PATTERN
from rooms.policy import Action, authorize
from rooms.principal import Principal
from rooms.visit import Visit
from server.auth import MAX_TOKEN_BYTES, TokenVerifier
from server.ratelimit import AuthFailureLimiter, rate_key

logger = logging.getLogger(__name__)

MAX_AUDITED_ISSUER = 96
VISIT_ID = re.compile(VISIT_ID_PATTERN)
SEAT_TOKEN_ORG_NOT_ALLOWED = "seat-token-org-not-allowed"


def audited_visit(visit: str | None) -> str | None:
    """A visit id as the audit log may keep it: only one of the shape this server makes, never
    whatever a request put in its place."""
    return visit if visit is not None and VISIT_ID.fullmatch(visit) else None


def _unverified_issuer(token: str) -> str | None:
    """The `iss` a refused token claims, for the audit trail (never its subject: it may be a CPR
    number, which is exactly why it was refused)."""
    if len(token) > MAX_TOKEN_BYTES:
        return None
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
        #: Refusals by reason since start (read by the metrics at scrape time).
        self.refusals: Counter[str] = Counter()

    async def authenticate(
        self, token: str, *, action: Action, client: str | None, visit: str | None = None
    ) -> Principal:
        """The token's principal, or AuthenticationFailed (recorded, and counted per address)."""
        if await self._limiter.blocked(client):
            await self._refused_token(token, action, visit, client, "rate-limited")
            raise _rate_limited()
        try:
            return await self.verifier.authenticate(token)
        except AuthenticationFailed as exc:
            await self._limiter.failure(client)
            await self._refused_token(token, action, visit, client, exc.code)
            raise

    async def refuse_request(
        self,
        action: Action,
        client: str | None,
        reason: str,
        *,
        principal: Principal | None = None,
    ) -> None:
        """Audit a malformed request (a body or message that is not valid JSON, or a message
        before `join`) as a counted row, and count it against the address like a failed token.
        Raise AuthenticationFailed `rate-limited` (429), audited likewise, when the address is
        already past its limit."""
        if await self._limiter.blocked(client):
            await self._keep(self._refusal(action, client, "rate-limited", principal), counted=True)
            raise _rate_limited()
        await self._limiter.failure(client)
        await self._keep(self._refusal(action, client, reason, principal), counted=True)

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
            if (
                principal.visit is not None
                and visit is not None
                and not self.verifier.may_seat(principal, visit.org)
            ):
                raise NotPermitted(
                    "this link's issuer may not open seats in this organisation's visits",
                    code=SEAT_TOKEN_ORG_NOT_ALLOWED,
                )
            authorize(principal, action, visit)
        except NotPermitted as exc:
            await self.record(
                principal,
                action,
                visit_id or (visit.id if visit else None),
                client,
                allowed=False,
                reason=exc.code if exc.code != "forbidden" else exc.message,
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
        result = "allowed" if allowed else "refused"
        await self._keep(_decision(action, result, reason, principal, visit, client))

    async def note_malformed(
        self,
        principal: Principal,
        action: Action,
        client: str | None,
        reason: str,
        *,
        visit: str | None = None,
    ) -> None:
        """Audit a malformed message from an authenticated session as a counted row. It is not
        counted against the address: others behind the same one (a care home's network) would
        pay for one participant's broken client."""
        await self._keep(self._refusal(action, client, reason, principal, visit), counted=True)

    def _refusal(
        self,
        action: Action,
        client: str | None,
        reason: str,
        principal: Principal | None,
        visit: str | None = None,
    ) -> AuditRecord:
        return _decision(action, "refused", reason, principal, visit, rate_key(client))

    async def _refused_token(
        self, token: str, action: Action, visit: str | None, client: str | None, reason: str
    ) -> None:
        """A refused token: counted per address (its /64 for IPv6), reason and minute; of the
        token only the issuer it claims and a digest are kept."""
        await self._keep(
            AuditRecord(
                action=action.value,
                result="refused",
                reason=reason,
                issuer=_unverified_issuer(token),
                visit=audited_visit(visit),
                client=rate_key(client),
                token=token_digest(token),
            ),
            counted=True,
        )

    async def _keep(self, record: AuditRecord, *, counted: bool = False) -> None:
        """Durable when it returns (database or outbox). A decision neither could keep is
        logged, and the access goes on: a visit must not fail on its paperwork."""
        if record.result == "refused":
            self.refusals[record.reason or "unknown"] += 1
        try:
            if counted:
                await self._audit.count(record)
            else:
                await self._audit.record(record)
        except NotDurable:
            logger.error("audit record lost (database and outbox failed): %s", record.action)


def _rate_limited() -> AuthenticationFailed:
    return AuthenticationFailed(
        "rate-limited", "too many failed attempts from this address; wait a minute", 429
    )


def _decision(
    action: Action,
    result: str,
    reason: str | None,
    principal: Principal | None,
    visit: str | None,
    client: str | None,
) -> AuditRecord:
    """The audit record of one decision about `principal` (None before authentication)."""
    return AuditRecord(
        action=action.value,
        result=result,
        reason=reason,
        subject=principal.subject if principal else None,
        issuer=principal.issuer if principal else None,
        sector=principal.sector.value if principal else None,
        org=principal.org if principal else None,
        role=principal.role.value if principal else None,
        visit=audited_visit(visit),
        client=client,
    )
