"""Prometheus metrics on their own port (SCREENVISIT_METRICS_PORT, loopback unless configured).

One `CollectorRegistry` per app, never the global one. What the server already counts (who is
in which call, the media engine's totals, refused authentications, webhook attempts) is read at
scrape time by a custom collector, so nothing is added per packet; only the event loop's lag
(sampled by a task of its own) and the pages' join times (reported by the join page) are
observed as they happen. Every series carries the node and worker labels.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from media.stats import forwarded
from rooms.policy import Action
from server import appkeys
from server.api_models import JoinTimeReport
from server.http_api import _body, _visit_for
from signaling.census import census

LABELS: Final = ("node", "worker")
LAG_INTERVAL_SECONDS: Final = 0.5
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOIN_BUCKETS: Final = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0)
#: A join time above this is a page left open in the background, not a join.
MAX_REASON: Final = 64


class Metrics:
    def __init__(self, node: str, worker: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = (node, worker)
        self._loop_lag = Histogram(
            "screenvisit_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled twice a second)",
            LABELS,
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._join = Histogram(
            "screenvisit_join_seconds",
            "From opening the link to the first remote video frame, as the join page reports it",
            LABELS,
            buckets=JOIN_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = self._loop_lag.labels(*self.labels)
        self.join_seconds = self._join.labels(*self.labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServerCollector(Collector):
    """Reads the app's own counters and state at scrape time."""

    def __init__(self, app: web.Application, labels: tuple[str, str]) -> None:
        self._app = app
        self._labels = list(labels)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        app, labels = self._app, self._labels
        yield from self._calls(app, labels)
        yield from self._media(app, labels)
        refusals = CounterMetricFamily(
            "screenvisit_auth_refusals",
            "Refused authentications and authorizations, by reason",
            labels=[*LABELS, "reason"],
        )
        if appkeys.ACCESS in app:
            for reason, count in sorted(app[appkeys.ACCESS].refusals.items()):
                refusals.add_metric([*labels, reason[:MAX_REASON]], count)
        yield refusals
        deliveries = CounterMetricFamily(
            "screenvisit_webhook_deliveries", "Webhook messages a receiver took", labels=LABELS
        )
        failures = CounterMetricFamily(
            "screenvisit_webhook_failures",
            "Webhook attempts that failed (result given_up: no attempt is left)",
            labels=[*LABELS, "result"],
        )
        deliverer = app.get(appkeys.WEBHOOKS)
        counts = deliverer.counts if deliverer is not None else None
        deliveries.add_metric(labels, counts.delivered if counts else 0)
        failures.add_metric([*labels, "retrying"], counts.failed_attempts if counts else 0)
        failures.add_metric([*labels, "given_up"], counts.given_up if counts else 0)
        yield deliveries
        yield failures

    def _calls(
        self, app: web.Application, labels: list[str]
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        active = GaugeMetricFamily(
            "screenvisit_visits_active", "Visits with someone in the call here", labels=LABELS
        )
        people = GaugeMetricFamily(
            "screenvisit_participants",
            "People in a call here, by role and sector",
            labels=[*LABELS, "role", "sector"],
        )
        waiting = GaugeMetricFamily(
            "screenvisit_waiting_participants", "People in a waiting room here", labels=LABELS
        )
        if appkeys.HUBS in app:
            now = census(app[appkeys.HUBS])
            active.add_metric(labels, now.visits_active)
            for (role, sector), count in sorted(now.participants.items()):
                people.add_metric([*labels, role, sector], count)
            waiting.add_metric(labels, now.waiting)
        yield active
        yield people
        yield waiting

    def _media(self, app: web.Application, labels: list[str]) -> Iterator[CounterMetricFamily]:
        if appkeys.SFU not in app:
            return
        sfu = app[appkeys.SFU]
        packets, octets = forwarded(sfu)
        counters = sfu.counters
        for name, help_text, value in (
            ("forwarded_packets", "RTP packets sent to subscribers", packets),
            ("forwarded_bytes", "RTP payload bytes sent to subscribers", octets),
            (
                "nacks_sent",
                "NACK messages sent to publishers for lost packets",
                counters.nacks_sent,
            ),
            (
                "retransmissions",
                "Packets sent again on subscribers' NACKs",
                counters.retransmissions,
            ),
            (
                "plis_sent",
                "Keyframe requests (PLI) sent to publishers",
                counters.keyframe_requests_sent,
            ),
            (
                "plis_received",
                "Keyframe requests (PLI/FIR) from subscribers",
                counters.keyframe_requests_received,
            ),
            ("frames_forwarded", "Video and audio frames forwarded", counters.frames_forwarded),
            ("frames_dropped", "Frames dropped on the way down", counters.frames_dropped),
        ):
            family = CounterMetricFamily(f"screenvisit_{name}", help_text, labels=LABELS)
            family.add_metric(labels, value)
            yield family


async def _watch_lag(metrics: Metrics) -> None:
    """Sleep a fixed interval and record how much later than asked the loop woke up."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + LAG_INTERVAL_SECONDS
        await asyncio.sleep(LAG_INTERVAL_SECONDS)
        metrics.loop_lag.observe(max(loop.time() - asked, 0.0))


async def report_join_time(request: web.Request) -> web.Response:
    """The join page's link-opened -> first remote frame time, with the page's own link."""
    principal, _visit = await _visit_for(request, Action.CHECK_LINK)
    body = await _body(request, principal, Action.CHECK_LINK, JoinTimeReport)
    metrics = request.app.get(appkeys.METRICS)
    if metrics is not None:
        metrics.join_seconds.observe(body.seconds)
    return web.Response(status=204)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    metrics = Metrics(settings.node_name, str(settings.worker))
    metrics.registry.register(ServerCollector(app, metrics.labels))
    app[appkeys.METRICS] = metrics
    lag = asyncio.create_task(_watch_lag(metrics), name="event-loop-lag")
    runner: web.AppRunner | None = None
    if settings.metrics_port is not None:
        runner = await _serve(
            metrics, settings.metrics_host, settings.metrics_port + settings.worker
        )
    yield
    lag.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lag
    if runner is not None:
        await runner.cleanup()


async def _serve(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    async def scrape(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    site_app = web.Application()
    site_app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(site_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def setup_metrics(app: web.Application) -> None:
    """The registry, lag monitor and /metrics port (last in the cleanup order: it reads what
    the entries before it made). The join-time route is in `server.api_routes`."""
    app.cleanup_ctx.append(_metrics_ctx)
