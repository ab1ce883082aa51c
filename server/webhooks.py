"""Signed webhooks (Standard Webhooks) for a booking system: what happened to a visit, when.

Lifecycle events reach `WebhookDeliverer.notify` from the event log once they are durable
(rooms.durable `subscribe`); notify only maps and queues in memory. The deliverer's one task,
owned by the app, writes the queue to the database (through the `DurableWriter`, so a database
outage parks it in the outbox) and sends what is due, each attempt with a timeout, retrying
with exponential backoff for 24 hours. Delivery is at least once; the `webhook-id` header is
the same on every attempt, so a receiver drops repeats by it. Payloads hold ids, roles,
sectors, codes and times: never a name or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook

from rooms.durable import DurableEventLog, DurableWriter
from rooms.eventlog import EventKind, VisitEvent
from rooms.sql import Database
from rooms.webhook_queue import Claimed, Outgoing, SqlWebhookQueue
from server import appkeys

logger = logging.getLogger(__name__)

#: The events a receiver hears, by the event-log kind they come from.
WEBHOOK_TYPES: Final[dict[EventKind, str]] = {
    EventKind.VISIT_CREATED: "visit.booked",
    EventKind.VISIT_CANCELLED: "visit.cancelled",
    EventKind.VISIT_STARTED: "visit.started",
    EventKind.PARTICIPANT_WAITING: "participant.waiting",
    EventKind.PARTICIPANT_ADMITTED: "participant.admitted",
    EventKind.PARTICIPANT_JOINED: "participant.joined",
    EventKind.PARTICIPANT_LEFT: "participant.left",
    # Their socket dropped (the seat waits for them the grace period), or their media died.
    EventKind.PARTICIPANT_RECONNECTING: "participant.cut_off",
    EventKind.MEDIA_FAILED: "participant.cut_off",
    EventKind.VISIT_ENDED: "visit.ended",
    EventKind.OUTCOME_RECORDED: "outcome.recorded",
}
#: Event data passed on (all codes or numbers; the clinician's note is never in an event).
DATA_FIELDS: Final = ("reason", "outcome", "kind", "planned_start", "planned_minutes", "seats")

RECORD_KIND: Final = "webhook"
ATTEMPT_TIMEOUT_SECONDS: Final = 10.0
RETRY_FOR_SECONDS: Final = 24 * 3600.0
FIRST_RETRY_SECONDS: Final = 5.0
LONGEST_RETRY_SECONDS: Final = 3600.0
#: A claimed row is not claimed again (by any node) for this long: longer than one attempt.
LEASE_SECONDS: Final = 3 * ATTEMPT_TIMEOUT_SECONDS
BATCH: Final = 20
#: The deliverer looks at the table at least this often (rows other nodes queued, leases).
POLL_SECONDS: Final = 5.0
#: Finished deliveries are kept this long (for an operator's look), then deleted.
KEEP_FINISHED_SECONDS: Final = 7 * 86400.0
#: Messages waiting in memory for the database; past this the oldest are dropped (and logged).
MAX_IN_MEMORY: Final = 10_000


def message_for(event: VisitEvent) -> tuple[str, dict[str, Any]] | None:
    """The webhook type and payload for `event`, or None if receivers do not hear of it."""
    kind = WEBHOOK_TYPES.get(event.kind)
    if kind is None:
        return None
    if event.kind is EventKind.PARTICIPANT_RECONNECTING and event.data.get("reason") is None:
        return None  # taken over by another node: nobody was cut off
    data: dict[str, Any] = {"visit": event.visit, "org": event.org}
    if event.participant is not None:
        data["participant"] = event.participant
    if event.role is not None:
        data["role"] = event.role
    if event.sector is not None:
        data["sector"] = event.sector
    for name in DATA_FIELDS:
        if event.data.get(name) is not None:
            data[name] = event.data[name]
    data["time"] = _iso(event.time)
    return kind, {"type": kind, "timestamp": _iso(event.time), "data": data}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def retry_delay(attempts: int, first: float = FIRST_RETRY_SECONDS) -> float:
    """Seconds before attempt `attempts + 1`: doubling from `first`, at most an hour, with a
    tenth of jitter so that a receiver back from an outage is not hit all at once."""
    base = min(first * 2 ** max(attempts - 1, 0), LONGEST_RETRY_SECONDS)
    return base * (1 + random.random() / 10)


@dataclass
class DeliveryCounts:
    """Attempts by result, read by the metrics at scrape time."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0


class WebhookDeliverer:
    def __init__(
        self,
        queue: SqlWebhookQueue,
        writer: DurableWriter,
        urls: tuple[str, ...],
        secret: str,
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        retry_for: float = RETRY_FOR_SECONDS,
    ) -> None:
        self._queue = queue
        self._writer = writer
        self._urls = urls
        self._signer = Webhook(secret)
        self._first_retry = first_retry
        self._retry_for = retry_for
        self._incoming: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_purge = 0.0
        self.counts = DeliveryCounts()

    def notify(self, event: VisitEvent) -> None:
        """From the event log, in its caller's stack: map and queue in memory, nothing more."""
        message = message_for(event)
        if message is None:
            return
        kind, payload = message
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        for url in self._urls:
            self._incoming.append(Outgoing(f"msg_{event.uid}", url, kind, body, event.time))
        if len(self._incoming) > MAX_IN_MEMORY:
            dropped = len(self._incoming) - MAX_IN_MEMORY
            del self._incoming[:dropped]
            logger.error(
                "webhooks: %d message(s) dropped (the database is not keeping up)", dropped
            )
        self._wake.set()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("webhook deliverer already started")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_SECONDS)
        )
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        """End the task; what was queued in memory is written to the database (or outbox)
        first, and is sent at the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        with contextlib.suppress(Exception):
            await self._keep_incoming()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _keep_incoming(self) -> None:
        while self._incoming:
            row = self._incoming[0]
            await self._writer.write(RECORD_KIND, _row_json(row))
            self._incoming.pop(0)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._keep_incoming()
                await self._send_due()
                wait = await self._until_next()
            except Exception as exc:
                # The database is down or slow (and maybe the outbox too): try again soon.
                logger.warning("webhooks: delivery round failed (%s)", type(exc).__name__)
                await asyncio.sleep(POLL_SECONDS)
                continue
            if wait > 0 and not self._incoming:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    async def _until_next(self) -> float:
        now = time.time()
        if now - self._last_purge > 3600:
            self._last_purge = now
            await self._queue.purge(now - KEEP_FINISHED_SECONDS)
        due = await self._queue.next_due()
        if due is None:
            return POLL_SECONDS
        return min(max(due - time.time(), 0.0), POLL_SECONDS)

    async def _send_due(self) -> None:
        while True:
            claimed = await self._queue.claim(time.time(), LEASE_SECONDS, BATCH)
            if not claimed:
                return
            await asyncio.gather(*(self._attempt(row) for row in claimed))

    async def _attempt(self, row: Claimed) -> None:
        error = await self._post(row)
        now = time.time()
        if error is None:
            self.counts.delivered += 1
            await self._queue.delivered(row.id, now)
            return
        self.counts.failed_attempts += 1
        delay = retry_delay(row.attempts, self._first_retry)
        if now + delay - row.created_at > self._retry_for:
            self.counts.given_up += 1
            logger.error(
                "webhooks: gave up on %s after %d attempts (%s)", row.message, row.attempts, error
            )
            await self._queue.give_up(row.id, now, error)
        else:
            await self._queue.retry(row.id, now + delay, error)

    async def _post(self, row: Claimed) -> str | None:
        """Send one attempt; None when the receiver took it (2xx), else why not."""
        assert self._session is not None
        sent_at = datetime.now(UTC)
        body = row.body.encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": row.message,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._signer.sign(row.message, sent_at, body),
        }
        try:
            async with self._session.post(row.url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__


def _row_json(row: Outgoing) -> dict[str, Any]:
    return {
        "message": row.message,
        "url": row.url,
        "type": row.type,
        "body": row.body,
        "created_at": row.created_at,
    }


def register_webhook_writes(writer: DurableWriter, db: Database) -> None:
    """How the durable writer (and its outbox replay) queues a webhook row in the database;
    registered with the other record kinds, before the outbox is replayed."""
    queue = SqlWebhookQueue(db)

    async def write(raw: dict[str, Any]) -> None:
        row = Outgoing(
            str(raw["message"]),
            str(raw["url"]),
            str(raw["type"]),
            str(raw["body"]),
            float(raw["created_at"]),
        )
        await queue.enqueue([row], time.time())

    writer.register(RECORD_KIND, write)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The deliverer, when SCREENVISIT_WEBHOOK_URL names an endpoint; placed right after the
    durable records, so it hears every lifecycle event until they are torn down."""
    settings = app[appkeys.SETTINGS]
    events = app[appkeys.EVENTS]
    if not settings.webhook_urls or not isinstance(events, DurableEventLog):
        yield
        return
    deliverer = WebhookDeliverer(
        SqlWebhookQueue(app[appkeys.DATABASE]),
        app[appkeys.DURABLE],
        settings.webhook_urls,
        settings.webhook_secret,
        first_retry=settings.webhook_first_retry,
    )
    app[appkeys.WEBHOOKS] = deliverer
    events.subscribe(deliverer.notify)
    deliverer.start()
    yield
    await deliverer.stop()
