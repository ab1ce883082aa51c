"""Structured logs (structlog): SCREENVISIT_LOG_FORMAT=json for one JSON object a line, or
console for people. Every stdlib logger (aiohttp's access log included) goes through the same
formatter, so all lines of a process share one format.

One line per lifecycle transition, from the durable event log (rooms.durable `subscribe`):
visit and participant ids, role, sector and reason; never a name or a token (events hold
neither).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

import structlog
from aiohttp import web

from rooms.durable import DurableEventLog
from rooms.eventlog import EventKind, VisitEvent
from server import appkeys

LIFECYCLE_LOGGER: Final = "screenvisit.lifecycle"

#: The line each lifecycle event writes (its `event` field).
LIFECYCLE: Final[dict[EventKind, str]] = {
    EventKind.VISIT_CREATED: "visit.booked",
    EventKind.VISIT_CANCELLED: "visit.cancelled",
    EventKind.VISIT_STARTED: "visit.started",
    EventKind.VISIT_ENDED: "visit.ended",
    EventKind.VISIT_MOVED: "visit.moved",
    EventKind.VISIT_FELL_BACK_TO_PHONE: "visit.fell_back_to_phone",
    EventKind.PARTICIPANT_WAITING: "participant.waiting",
    EventKind.PARTICIPANT_ADMITTED: "participant.admitted",
    EventKind.PARTICIPANT_DECLINED: "participant.declined",
    EventKind.PARTICIPANT_JOINED: "participant.joined",
    EventKind.PARTICIPANT_RECONNECTING: "participant.cut_off",
    EventKind.PARTICIPANT_RECONNECTED: "participant.reconnected",
    EventKind.PARTICIPANT_REMOVED: "participant.removed",
    EventKind.PARTICIPANT_LEFT: "participant.left",
    EventKind.MEDIA_FAILED: "media.failed",
    EventKind.OUTCOME_RECORDED: "outcome.recorded",
}
#: Event data written with the line: codes only.
FIELDS: Final = ("reason", "state", "outcome", "kind", "to_node")


def configure_logging(level: str, log_format: str) -> None:
    """Route structlog and the standard library's loggers to stderr in `log_format`."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def lifecycle_fields(event: VisitEvent) -> tuple[str, dict[str, Any]] | None:
    """The line's name and fields for `event`, or None if it writes no line."""
    name = LIFECYCLE.get(event.kind)
    if name is None:
        return None
    fields: dict[str, Any] = {"visit": event.visit}
    for key, value in (
        ("participant", event.participant),
        ("role", event.role),
        ("sector", event.sector),
        ("org", event.org),
    ):
        if value is not None:
            fields[key] = value
    for key in FIELDS:
        if event.data.get(key) is not None:
            fields[key] = event.data[key]
    return name, fields


async def lifecycle_logs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Write a line for each lifecycle event from the start of the app to its end."""
    events = app[appkeys.EVENTS]
    log = structlog.stdlib.get_logger(LIFECYCLE_LOGGER)

    def write(event: VisitEvent) -> None:
        line = lifecycle_fields(event)
        if line is not None:
            name, fields = line
            log.info(name, **fields)

    if isinstance(events, DurableEventLog):
        events.subscribe(write)
    yield
