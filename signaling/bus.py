"""The cross-node bus: JSON messages published to named channels, delivered in order.

`RedisBus` is Redis pub/sub: each node subscribes to its own channel and to the broadcast
channel, and one listener task hands every message, in the order Redis delivered it, to the
node's handler. A lost connection is re-subscribed with backoff; messages published meanwhile
are lost (pub/sub keeps nothing), which the protocol above it tolerates: relayed sessions end
when the node at the other end is found dead, and a node re-syncs its state after an outage.

`LocalBus` is the in-process twin: nodes in one process (and the single-node default) share a
`LocalBusNetwork`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Message = dict[str, Any]
#: Called for every message, in order; it must not block (queue work, spawn tasks).
Handler = Callable[[Message], None]

_MAX_BACKOFF_SECONDS = 2.0


class BusUnavailable(Exception):
    """The bus could not take a message (its Redis is unreachable)."""


class Bus(Protocol):
    async def subscribe(self, channels: Sequence[str], handler: Handler) -> None:
        """Deliver every message on `channels` to `handler`, from when this returns."""
        ...

    async def publish(self, channel: str, message: Message) -> None:
        """Send `message` to every subscriber of `channel`, or raise BusUnavailable."""
        ...

    async def close(self) -> None: ...


class LocalBusNetwork:
    """The subscribers of every LocalBus made on it."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[Handler]] = {}


class LocalBus:
    def __init__(self, network: LocalBusNetwork | None = None) -> None:
        self._network = network or LocalBusNetwork()
        self._mine: list[tuple[str, Handler]] = []

    async def subscribe(self, channels: Sequence[str], handler: Handler) -> None:
        for channel in channels:
            self._network.subscribers.setdefault(channel, []).append(handler)
            self._mine.append((channel, handler))

    async def publish(self, channel: str, message: Message) -> None:
        # A copy through JSON, as Redis would deliver it: no shared mutable objects.
        text = json.dumps(message)
        loop = asyncio.get_running_loop()
        for handler in list(self._network.subscribers.get(channel, ())):
            loop.call_soon(handler, json.loads(text))

    async def close(self) -> None:
        for channel, handler in self._mine:
            with contextlib.suppress(ValueError):
                self._network.subscribers.get(channel, []).remove(handler)
        self._mine.clear()


class RedisBus:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._listeners: list[asyncio.Task[None]] = []

    async def subscribe(self, channels: Sequence[str], handler: Handler) -> None:
        subscribed = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._listen(list(channels), handler, subscribed))
        self._listeners.append(task)
        await subscribed

    async def _listen(
        self, channels: list[str], handler: Handler, subscribed: asyncio.Future[None]
    ) -> None:
        """Owned by the bus; ends only when cancelled by `close`."""
        failures = 0
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.subscribe(*channels)
                pending = set(channels)
                async for raw in pubsub.listen():
                    kind = raw.get("type")
                    if kind == "subscribe":
                        pending.discard(_text(raw["channel"]))
                        if not pending:
                            failures = 0
                            if not subscribed.done():
                                subscribed.set_result(None)
                            else:
                                logger.info("bus: subscribed again to %s", ", ".join(channels))
                    elif kind == "message":
                        self._deliver(handler, raw["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    logger.warning("bus: lost Redis (%s); re-subscribing", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(min(_MAX_BACKOFF_SECONDS, 0.1 * 2**failures))

    @staticmethod
    def _deliver(handler: Handler, data: str | bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            logger.warning("bus: dropped a message that is not JSON")
            return
        if not isinstance(message, dict):
            logger.warning("bus: dropped a message that is not a JSON object")
            return
        try:
            handler(message)
        except Exception:
            logger.exception("bus: handler failed on a %r message", message.get("type"))

    async def publish(self, channel: str, message: Message) -> None:
        try:
            await self._client.publish(channel, json.dumps(message, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            raise BusUnavailable(
                f"the cross-node bus is unavailable ({type(exc).__name__})"
            ) from exc

    async def close(self) -> None:
        for task in self._listeners:
            task.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners.clear()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
