"""The app factory: each resource made in its own cleanup_ctx entry, torn down in reverse."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from importlib import resources

import jinja2
from aiohttp import web

from media.sfu import Sfu
from rooms.audit import AuditRetention
from rooms.audit_repeats import CoalescingAuditLog
from rooms.booking_archive import SqlVisitArchive
from rooms.cluster import ClusterState, MemoryClusterState, NodeId
from rooms.durable import DurableAuditLog, DurableEventLog, DurableOutcomeStore, DurableWriter
from rooms.durable_store import DurableVisitStore, register_booking_writes
from rooms.janitor import EmptyVisitJanitor
from rooms.outbox import FileOutbox
from rooms.outcomes import OutcomeRecorder
from rooms.quality_log import (
    QualityBatcher,
    QualityRecord,
    SqlQualityLog,
    SurveyStore,
)
from rooms.redis_cluster import RedisClusterState
from rooms.retention import EvaluationRetention
from rooms.sql import DbTimeouts, open_database
from rooms.store import DEFAULT_PREFIX, open_redis, open_visit_store
from server import appkeys
from server.access import AccessControl
from server.api_routes import setup_api_routes
from server.auth import TokenIssuer, TokenVerifier
from server.config import Settings
from server.console import setup_console_routes
from server.console_feed import ConsoleChanges
from server.drain import Drainer
from server.fhir import setup_fhir
from server.headers import add_security_headers
from server.http_api import error_middleware
from server.httpserver import ConnectionLimiter, body_timeout_middleware
from server.keys import load_or_create_signing_key
from server.logs import lifecycle_logs_ctx
from server.metrics import setup_metrics
from server.oidc import OidcSignIn
from server.pages import setup_page_routes
from server.ratelimit import AuthFailureLimiter, FailureLimiter, RedisFailureLimiter
from server.reports import ReportWorkers, Source, load_pseudonymizer
from server.revocation import RevocationList, SqlRevocationStore
from server.trust import TrustConfigError, load_trust_file
from server.webhooks import register_webhook_writes, webhooks_ctx
from signaling.bus import Bus, LocalBus, Message, RedisBus
from signaling.node import ClusterNode
from signaling.registry import HubRegistry
from signaling.services import SignalingServices

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, stop_process: Callable[[], None] | None = None
) -> web.Application:
    """`stop_process` ends the server when a drain asked over the API has finished."""
    app = web.Application(
        middlewares=[error_middleware, body_timeout_middleware(settings.http_body_timeout)],
        client_max_size=256 * 1024,
        # Above the 8 KiB token limit, so an oversized token gets a precise error from us
        # rather than the HTTP parser's bare 400.
        handler_args={"max_field_size": 32 * 1024, "max_line_size": 32 * 1024},
    )
    app[appkeys.SETTINGS] = settings
    app.on_response_prepare.append(add_security_headers)
    # Installed on the listening server by `screenvisit serve` (server.httpserver).
    limiter = ConnectionLimiter(settings.http_connections_per_address, settings.trusted_proxies)
    app[appkeys.CONNECTIONS] = limiter
    app.on_response_prepare.append(limiter.release_upgraded)
    app[appkeys.DRAINER] = Drainer(stop_process)
    app[appkeys.CONSOLE] = ConsoleChanges()
    app.on_shutdown.append(app[appkeys.CONSOLE].close)
    app[appkeys.TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_durable)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(lifecycle_logs_ctx)
    app.cleanup_ctx.append(_audit)
    app.cleanup_ctx.append(_access)
    app.cleanup_ctx.append(_evaluation)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_janitor)
    app.cleanup_ctx.append(_sfu)
    app.cleanup_ctx.append(_signaling)
    setup_api_routes(app)
    setup_metrics(app)
    setup_fhir(app)
    setup_page_routes(app)
    setup_console_routes(app)
    app.router.add_static("/static", str(resources.files("web") / "static"))
    return app


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """One Redis client (a connection pool) for live state, the bus and rate limits."""
    url = app[appkeys.SETTINGS].redis_url
    if not url:
        yield
        return
    client = await open_redis(url)
    app[appkeys.REDIS] = client
    yield
    await client.aclose()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    timeouts = DbTimeouts(settings.database_connect_timeout, settings.database_timeout)
    db = await open_database(settings.database_url or None, settings.database_path, timeouts)
    app[appkeys.DATABASE] = db
    yield
    await db.close()


async def _durable(app: web.Application) -> AsyncIterator[None]:
    """The outbox that keeps records while the database is down, replayed by its own task."""
    outbox = FileOutbox(app[appkeys.SETTINGS].outbox_path)
    await outbox.open()
    writer = DurableWriter(app[appkeys.DATABASE], outbox)
    app[appkeys.DURABLE] = writer
    # Every record kind registers here, before the replay left over from the last run.
    events = DurableEventLog(app[appkeys.DATABASE], writer)
    # An appended event wakes the organisation's open consoles.
    changes = app[appkeys.CONSOLE]
    events.subscribe(lambda event: changes.notify(event.org))
    app[appkeys.EVENTS] = events
    app[appkeys.AUDIT] = DurableAuditLog(app[appkeys.DATABASE], writer)
    archive = SqlVisitArchive(app[appkeys.DATABASE])
    app[appkeys.BOOKINGS] = archive
    register_booking_writes(writer, archive)
    register_webhook_writes(writer, app[appkeys.DATABASE])
    outcome_store = DurableOutcomeStore(app[appkeys.DATABASE], writer)
    app[appkeys.OUTCOMES] = OutcomeRecorder(
        app[appkeys.SETTINGS].outcomes,
        outcome_store,
        SurveyStore(app[appkeys.DATABASE]),
        app[appkeys.EVENTS],
    )
    if outbox.pending:
        try:
            await writer.replay()
        except Exception as exc:
            logger.warning("outbox: %d record(s) left to replay (%s)", outbox.pending, exc)
    writer.start()
    yield
    await writer.stop()
    await outbox.close()


async def _audit(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    durable_audit = app[appkeys.AUDIT]
    assert isinstance(durable_audit, DurableAuditLog)
    audit = CoalescingAuditLog(durable_audit)
    retention = AuditRetention(audit, retention_seconds=settings.audit_days * 86400)
    app[appkeys.AUDIT] = audit
    audit.start()
    retention.start()
    yield
    await retention.stop()
    await audit.stop()


async def _access(app: web.Application) -> AsyncIterator[None]:
    """The server's own issuer, the trust file's issuers, revocations and the audit trail."""
    settings = app[appkeys.SETTINGS]
    key = await asyncio.to_thread(load_or_create_signing_key, settings.key_path)
    audience = settings.audience
    trusted = []
    if settings.trust_file is not None:
        trust = await asyncio.to_thread(
            load_trust_file, settings.trust_file, allow_development=settings.dev_issuers
        )
        audience, trusted = trust.audience, trust.issuers
    issuer = TokenIssuer(settings.issuer, audience, key)
    revocations = RevocationList(SqlRevocationStore(app[appkeys.DATABASE]))
    await revocations.load()
    verifier = TokenVerifier(audience, revoked=revocations)
    verifier.add_issuer(issuer.trusted())
    for trusted_issuer in trusted:
        if trusted_issuer.iss == issuer.iss:
            raise TrustConfigError(f"the trust file names this server's own issuer {issuer.iss}")
        verifier.add_issuer(trusted_issuer)
    app[appkeys.ISSUER] = issuer
    app[appkeys.VERIFIER] = verifier
    app[appkeys.REVOCATIONS] = revocations
    limiter: AuthFailureLimiter = FailureLimiter(settings.auth_failures_per_minute)
    if appkeys.REDIS in app:
        limiter = RedisFailureLimiter(
            app[appkeys.REDIS], settings.auth_failures_per_minute, DEFAULT_PREFIX
        )
    app[appkeys.ACCESS] = AccessControl(verifier, app[appkeys.AUDIT], limiter)
    app[appkeys.OIDC] = OidcSignIn(trusted)
    yield
    await app[appkeys.OIDC].close()


async def _store(app: web.Application) -> AsyncIterator[None]:
    """Live state (memory or Redis) as a cache of the booking record in the database."""
    cache = await open_visit_store(
        app[appkeys.SETTINGS].redis_url or None, client=app.get(appkeys.REDIS)
    )
    store = DurableVisitStore(cache, app[appkeys.BOOKINGS], writer=app[appkeys.DURABLE])
    app[appkeys.STORE] = store
    yield
    await store.close()


async def _evaluation(app: web.Application) -> AsyncIterator[None]:
    """Outcomes, the citizen's answers, and quality samples written in batches."""
    db = app[appkeys.DATABASE]
    app[appkeys.PSEUDONYMS] = await asyncio.to_thread(
        load_pseudonymizer, app[appkeys.SETTINGS].data_dir
    )
    batcher = QualityBatcher(SqlQualityLog(db))
    app[appkeys.QUALITY] = batcher
    retention = EvaluationRetention(db, app[appkeys.SETTINGS].evaluation_days * 86400)
    settings = app[appkeys.SETTINGS]
    workers = ReportWorkers(Source(settings.database_url or None, settings.database_path))
    app[appkeys.REPORTS] = workers
    batcher.start()
    retention.start()
    yield
    await retention.stop()
    await batcher.stop()
    await workers.close()


async def _janitor(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    janitor = EmptyVisitJanitor(
        app[appkeys.STORE],
        app[appkeys.EVENTS],
        settings.empty_timeout,
        interval=min(10.0, max(settings.empty_timeout / 4, 0.05)),
    )
    app[appkeys.JANITOR] = janitor
    # Visits booked before this process started (on this node or another) are watched too.
    for visit in await app[appkeys.BOOKINGS].not_started():
        janitor.watch(visit)
    janitor.start()
    yield
    await janitor.stop()


async def _sfu(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    sfu = Sfu(dataclasses.replace(settings.media(), media_mode=settings.media_mode))
    app[appkeys.SFU] = sfu
    yield
    await sfu.close()


async def _signaling(app: web.Application) -> AsyncIterator[None]:
    """Sessions, hubs, and this node among the others that share its Redis (if any)."""
    settings = app[appkeys.SETTINGS]
    cluster: ClusterState
    bus: Bus
    if appkeys.REDIS in app:
        cluster = RedisClusterState(
            app[appkeys.REDIS], DEFAULT_PREFIX, owns_client=False, node_ttl=settings.node_ttl
        )
        bus = RedisBus(app[appkeys.REDIS])
    else:
        cluster, bus = MemoryClusterState(settings.node_ttl), LocalBus()
    node_id = NodeId(settings.node_name)
    services = SignalingServices(
        access=app[appkeys.ACCESS],
        store=app[appkeys.STORE],
        events=app[appkeys.EVENTS],
        sfu=app[appkeys.SFU],
        browser_ice_servers=[s.to_browser() for s in settings.ice_servers],
        reconnect_grace=settings.reconnect_grace,
        departure_timeout=settings.departure_timeout,
        knock_pause=settings.knock_pause,
        link_window=settings.link_window(),
        quality_interval=settings.quality_interval,
        media_silence=settings.media_silence,
        outcomes=app[appkeys.OUTCOMES],
        quality_sink=lambda visit, participant, role, sector, sample: app[appkeys.QUALITY].add(
            QualityRecord.from_sample(visit, participant, role, sector, sample)
        ),
        cluster=cluster,
        node_id=node_id,
    )
    hubs = HubRegistry(services)
    node = ClusterNode(
        node_id,
        settings.media_address,
        cluster,
        bus,
        services,
        hubs,
        prefix=DEFAULT_PREFIX,
        shared=appkeys.REDIS in app,
    )

    async def revoked_elsewhere(message: Message) -> None:
        jti, expires_at = str(message["jti"]), float(message["expires_at"])
        app[appkeys.REVOCATIONS].remember(jti, expires_at)
        hubs.close_token(jti)

    services.holds = node.holds
    services.epoch = node.epoch
    services.lost = node.drop_visit
    node.on_broadcast("revoked", revoked_elsewhere)
    await node.start()
    app[appkeys.SIGNALING] = services
    app[appkeys.HUBS] = hubs
    app[appkeys.NODE] = node
    app.on_shutdown.append(_drain)
    logger.info("node %s up (media at %s)", node_id, settings.media_address)
    yield
    await app[appkeys.DRAINER].close()
    await node.stop()
    await hubs.close(reconnect=node.shared)


async def _drain(app: web.Application) -> None:
    """Take no new visits, let the running ones end, hand on (or end) what is left; unless a
    drain began already (`serve` drains on SIGTERM, before aiohttp's shutdown)."""
    if not app[appkeys.NODE].drain_started:
        await app[appkeys.NODE].drain(app[appkeys.SETTINGS].drain_timeout)


async def drain_before_stop(app: web.Application) -> None:
    """On SIGTERM, before the server stops reading sockets: drain (after a drain the API
    started, nothing is left and this returns at once)."""
    await app[appkeys.NODE].drain(app[appkeys.SETTINGS].drain_timeout)
