"""Every shared service of the app, under one typed key each (no module-level state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from aiohttp import web
from redis.asyncio import Redis

from media.sfu import Sfu
from rooms.actor_refs import SqlActorRefs
from rooms.audit import AuditLog
from rooms.booking_archive import VisitArchive
from rooms.durable import DurableWriter
from rooms.eventlog import EventLog
from rooms.exports import Pseudonymizer
from rooms.janitor import EmptyVisitJanitor
from rooms.outcomes import OutcomeRecorder
from rooms.quality_log import QualityBatcher
from rooms.sql import Database
from rooms.store import VisitStore
from server.access import AccessControl
from server.auth import TokenIssuer, TokenVerifier
from server.config import Settings
from server.console_feed import ConsoleChanges
from server.httpserver import ConnectionLimiter
from server.oidc import OidcSignIn
from server.reports import ReportWorkers
from server.revocation import RevocationList
from signaling.node import ClusterNode
from signaling.registry import HubRegistry
from signaling.services import SignalingServices

if TYPE_CHECKING:
    # Modules that read their own keys from here: typed for mypy only, or each import is a cycle.
    from server.drain import Drainer
    from server.metrics import Metrics
    from server.webhooks import WebhookDeliverer

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
DURABLE = web.AppKey("durable", DurableWriter)
AUDIT = web.AppKey("audit", AuditLog)
ACCESS = web.AppKey("access", AccessControl)
REVOCATIONS = web.AppKey("revocations", RevocationList)
JANITOR = web.AppKey("janitor", EmptyVisitJanitor)
OUTCOMES = web.AppKey("outcomes", OutcomeRecorder)
QUALITY = web.AppKey("quality", QualityBatcher)
PSEUDONYMS = web.AppKey("pseudonyms", Pseudonymizer)
REPORTS = web.AppKey("reports", ReportWorkers)
ISSUER = web.AppKey("issuer", TokenIssuer)
VERIFIER = web.AppKey("verifier", TokenVerifier)
STORE = web.AppKey("store", VisitStore)
BOOKINGS = web.AppKey("bookings", VisitArchive)
EVENTS = web.AppKey("events", EventLog)
SFU = web.AppKey("sfu", Sfu)
SIGNALING = web.AppKey("signaling", SignalingServices)
HUBS = web.AppKey("hubs", HubRegistry)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
REDIS = web.AppKey("redis", Redis)
NODE = web.AppKey("node", ClusterNode)
DRAINER: web.AppKey[Drainer] = web.AppKey("drainer")
CONNECTIONS = web.AppKey("connections", ConnectionLimiter)
WEBHOOKS: web.AppKey[WebhookDeliverer] = web.AppKey("webhooks")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CONSOLE = web.AppKey("console", ConsoleChanges)
OIDC = web.AppKey("oidc", OidcSignIn)
#: Kept by the FHIR sub-application (server/fhir.py).
ACTOR_REFS = web.AppKey("actor-refs", SqlActorRefs)
