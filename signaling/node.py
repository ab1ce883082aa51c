"""This server node as one member of a deployment: heartbeat, visit placement, routing of
signaling sockets to the node that hosts their visit, calls between nodes, drain.

With nothing configured there is one node, a `MemoryClusterState` and a `LocalBus`, and every
visit is placed here: the single-node server runs the same code as a cluster of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from rooms.cluster import ClusterState, NodeId, NodeInfo, NoNodeAvailable, choose_node
from rooms.errors import VisitNotFound
from rooms.ids import VisitId
from rooms.store import StoreUnavailable
from signaling.bus import Bus, BusUnavailable, Message
from signaling.channel import WebSocketChannel
from signaling.errors import (
    CLOSE_JOIN_TIMEOUT,
    CLOSE_NODE_LOST,
    CLOSE_TRY_AGAIN,
    SignalingError,
)
from signaling.hub import HubRegistry
from signaling.messages import Join, error_message, parse_client_message
from signaling.relay import EdgeRelay, RelayedChannel
from signaling.services import SignalingServices
from signaling.session import Session

logger = logging.getLogger(__name__)

NODE_CHANNEL = "{prefix}bus:node:{node}"
BROADCAST_CHANNEL = "{prefix}bus:all"

#: An operation another node may ask of this one: arguments in, JSON-able result out.
Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
#: A broadcast this node reacts to (revocations): the message, from another node.
BroadcastHandler = Callable[[Message], Awaitable[None]]

CALL_TIMEOUT = 5.0


class NodeCallFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ClusterNode:
    def __init__(
        self,
        node_id: NodeId,
        address: str,
        cluster: ClusterState,
        bus: Bus,
        services: SignalingServices,
        hubs: HubRegistry,
        *,
        prefix: str = "screenvisit:",
        shared: bool = False,
    ) -> None:
        """`shared` is true when other nodes may exist (Redis): a node going away then asks its
        participants to reconnect (elsewhere), rather than telling them the server stopped."""
        self.id = node_id
        self.address = address
        self.cluster = cluster
        self.shared = shared
        self.draining = False
        self.started_at = time.time()
        self._bus = bus
        self._services = services
        self._hubs = hubs
        self._prefix = prefix
        self._edges: dict[str, EdgeRelay] = {}
        self._relayed: dict[str, RelayedChannel] = {}
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._operations: dict[str, Operation] = {
            "end-visit": self._op_end_visit,
            "close-visit": self._op_close_visit,
            "connected": self._op_connected,
        }
        self._broadcast_handlers: dict[str, BroadcastHandler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._registered_once = False
        self._judge_peers_after = 0.0
        self.idle = asyncio.Event()

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        channels = [NODE_CHANNEL.format(prefix=self._prefix, node=self.id)]
        channels.append(BROADCAST_CHANNEL.format(prefix=self._prefix))
        await self._bus.subscribe(channels, self._on_message)
        await self.beat()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self.cluster.deregister(self.id)
        await self._bus.close()

    def on_broadcast(self, kind: str, handler: BroadcastHandler) -> None:
        self._broadcast_handlers[kind] = handler

    def info(self) -> NodeInfo:
        load = sum(len(h.sessions) for h in self._hubs.hubs.values())
        return NodeInfo(self.id, self.address, load, self.draining, self.started_at)

    async def beat(self) -> None:
        """Renew this node's registration; after the shared state forgot it, re-sync."""
        missing = await self.cluster.register(self.info())
        if missing and self._registered_once:
            logger.warning("node %s: the shared state had forgotten this node; re-syncing", self.id)
            # The others re-register within one heartbeat: judge nobody dead before then.
            self._judge_peers_after = time.monotonic() + self.cluster.node_ttl
            await self.resync()
        self._registered_once = True

    async def _heartbeat_loop(self) -> None:
        interval = self.cluster.node_ttl / 3
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
                await self._check_peers()
                if failing:
                    logger.info("node %s: shared state reachable again", self.id)
                failing = False
            except StoreUnavailable as exc:
                if not failing:
                    logger.warning("node %s: shared state unreachable (%s)", self.id, exc)
                failing = True
            except Exception:
                logger.exception("node %s: heartbeat failed", self.id)

    async def _check_peers(self) -> None:
        """End the relays whose other end is on a node that is no longer alive."""
        if (not self._edges and not self._relayed) or time.monotonic() < self._judge_peers_after:
            return
        live = {node.id for node in await self.cluster.nodes()}
        for relay in list(self._edges.values()):
            if relay.owner not in live:
                logger.info(
                    "node %s: owner %s of relay %s is gone", self.id, relay.owner, relay.conn
                )
                relay.owner_lost()
        for channel in list(self._relayed.values()):
            if channel.edge not in live:
                channel.end()

    async def resync(self) -> None:
        """Write back what this node knows of the visits it hosts (after a Redis restart)."""
        for hub in list(self._hubs.hubs.values()):
            visit = hub.last_visit
            if visit is None:
                continue
            try:
                # A store with a record rebuilds the visit from it (newer than `last_visit`).
                await self._services.store.get(visit.id)
            except VisitNotFound:
                with contextlib.suppress(ValueError):
                    await self._services.store.create(visit)
            owner = await self.cluster.place(visit.id, self.id)
            if owner != self.id:
                logger.warning("node %s: visit %s now belongs to %s", self.id, visit.id, owner)
                await hub.close(reconnect=True)
                continue
            for participant in hub.in_call:
                await self.cluster.join_call(visit.id, participant)

    # --- placement ----------------------------------------------------------------------------

    async def place_new(self, visit_id: VisitId) -> NodeId:
        """Pin a newly booked visit to the least loaded node that takes new visits."""
        node = choose_node(await self.cluster.nodes())
        return await self.cluster.place(visit_id, node.id)

    async def owner_for(self, visit_id: VisitId) -> NodeId | None:
        """The live node hosting the visit, placing or moving it if needed; None for a visit
        that does not exist or is over (the session here then says so, precisely)."""
        owner = await self.cluster.owner(visit_id)
        if owner is not None and (owner == self.id or await self.cluster.node(owner)):
            return owner
        try:
            visit = await self._services.store.get(visit_id)
        except VisitNotFound:
            return None
        if not visit.is_live:
            return None
        node = choose_node(await self.cluster.nodes()).id
        if owner is None:
            return await self.cluster.place(visit_id, node)
        logger.warning("visit %s: node %s is gone; moving the visit to %s", visit_id, owner, node)
        return await self.cluster.move(visit_id, owner, node)

    # --- sockets ------------------------------------------------------------------------------

    async def serve_socket(self, ws: web.WebSocketResponse, client: str | None) -> None:
        """Run a participant's signaling socket here, or relay it to the visit's node."""
        try:
            first = await asyncio.wait_for(ws.receive(), self._services.join_timeout)
        except TimeoutError:
            await ws.send_json(error_message("join-timeout", "no 'join' in time", fatal=True))
            await ws.close(code=CLOSE_JOIN_TIMEOUT, message=b"join-timeout")
            return
        if first.type is WSMsgType.BINARY:
            await self._run_local(ws, client, first.data)
        if first.type is not WSMsgType.TEXT:
            return
        owner = self.id
        visit = _join_visit(first.data)
        if visit is not None and visit not in self._hubs.hubs:
            try:
                owner = await self.owner_for(visit) or self.id
            except (StoreUnavailable, NoNodeAvailable) as exc:
                logger.warning("join for visit %s refused: %s", visit, exc)
                await ws.send_json(
                    error_message(
                        "service-unavailable",
                        "the service cannot take new participants right now; try again shortly",
                    )
                )
                await ws.close(code=CLOSE_TRY_AGAIN, message=b"service-unavailable")
                return
        if owner == self.id:
            await self._run_local(ws, client, first.data)
            return
        relay = EdgeRelay(self.send, self.id, owner, uuid.uuid4().hex, ws, client)
        self._edges[relay.conn] = relay
        try:
            await relay.run(first.data)
        except BusUnavailable:
            await ws.send_json(
                error_message("service-unavailable", "try again shortly", fatal=False)
            )
            await ws.close(code=CLOSE_TRY_AGAIN, message=b"service-unavailable")
        finally:
            del self._edges[relay.conn]

    async def _run_local(
        self, ws: web.WebSocketResponse, client: str | None, first: str | bytes
    ) -> None:
        await Session(WebSocketChannel(ws, first), self._services, self._hubs, client).run()

    # --- the bus ------------------------------------------------------------------------------

    async def send(self, node: NodeId, message: Message) -> None:
        await self._bus.publish(NODE_CHANNEL.format(prefix=self._prefix, node=node), message)

    async def broadcast(self, message: Message) -> None:
        await self._bus.publish(
            BROADCAST_CHANNEL.format(prefix=self._prefix), {**message, "from": self.id}
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("node %s: task failed", self.id, exc_info=task.exception())

    def _on_message(self, message: Message) -> None:
        kind = message.get("type")
        conn = str(message.get("conn", ""))
        if kind == "open":
            self._open_relayed(message)
        elif kind == "frame":
            channel = self._relayed.get(conn)
            if channel is not None:
                channel.feed(b"" if message.get("binary") else str(message.get("data", "")))
            else:
                # A frame for a session this node no longer has (it restarted): reconnect.
                edge = NodeId(str(message.get("edge") or ""))
                if edge:
                    self._spawn(self._refuse_conn(edge, conn))
        elif kind == "close":
            channel = self._relayed.get(conn)
            if channel is not None:
                channel.end()
        elif kind in ("out", "closed"):
            relay = self._edges.get(conn)
            if relay is not None:
                relay.deliver(message)
        elif kind == "call":
            self._spawn(self._answer_call(message))
        elif kind == "reply":
            future = self._calls.pop(str(message.get("id")), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(kind, str) and message.get("from") != self.id:
            handler = self._broadcast_handlers.get(kind)
            if handler is not None:
                self._spawn(handler(message))

    def _open_relayed(self, message: Message) -> None:
        conn, edge = str(message["conn"]), NodeId(str(message["edge"]))
        channel = RelayedChannel(self.send, edge, conn, str(message.get("first", "")))
        self._relayed[conn] = channel
        client = message.get("client")
        session = Session(
            channel, self._services, self._hubs, str(client) if client is not None else None
        )

        async def run() -> None:
            try:
                await session.run()
            finally:
                self._relayed.pop(conn, None)

        self._spawn(run())

    async def _refuse_conn(self, edge: NodeId, conn: str) -> None:
        with contextlib.suppress(BusUnavailable):
            await self.send(
                edge,
                {"type": "closed", "conn": conn, "code": CLOSE_NODE_LOST, "reason": "node-lost"},
            )

    # --- calls between nodes -------------------------------------------------------------------

    async def call(self, node: NodeId, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Ask `node` to run `op`; raises NodeCallFailed (also when it does not answer)."""
        call_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            await self.send(
                node, {"type": "call", "id": call_id, "from": self.id, "op": op, "args": args}
            )
            reply = await asyncio.wait_for(future, CALL_TIMEOUT)
        except BusUnavailable as exc:
            raise NodeCallFailed("service-unavailable", str(exc)) from None
        except TimeoutError:
            raise NodeCallFailed("node-unavailable", f"node {node} did not answer") from None
        finally:
            self._calls.pop(call_id, None)
        error = reply.get("error")
        if error is not None:
            raise NodeCallFailed(str(error.get("code")), str(error.get("message")))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    async def _answer_call(self, message: Message) -> None:
        reply: Message = {"type": "reply", "id": message.get("id")}
        operation = self._operations.get(str(message.get("op")))
        if operation is None:
            reply["error"] = {"code": "unknown-operation", "message": str(message.get("op"))}
        else:
            try:
                reply["result"] = await operation(dict(message.get("args") or {}))
            except Exception as exc:
                logger.exception("node %s: operation %s failed", self.id, message.get("op"))
                reply["error"] = {"code": getattr(exc, "code", "error"), "message": str(exc)}
        with contextlib.suppress(BusUnavailable):
            await self.send(NodeId(str(message.get("from"))), reply)

    async def on_owner(
        self, visit_id: VisitId, op: str, args: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Run `op` for a visit on the node hosting it, if that is another live node; None when
        this node should act itself (it hosts the visit, or nobody live does)."""
        if visit_id in self._hubs.hubs:
            return None
        try:
            owner = await self.cluster.owner(visit_id)
            if owner is None or owner == self.id or await self.cluster.node(owner) is None:
                return None
        except StoreUnavailable:
            return None
        return await self.call(owner, op, {"visit": visit_id, **args})

    async def _op_end_visit(self, args: dict[str, Any]) -> dict[str, Any]:
        visit = await self._services.store.get(VisitId(str(args["visit"])))
        await self._hubs.end_visit(visit)
        return {"state": visit.state.value}

    async def _op_close_visit(self, args: dict[str, Any]) -> dict[str, Any]:
        hub = self._hubs.hubs.get(VisitId(str(args["visit"])))
        closed = 0
        if hub is not None:
            closed = await hub.close_for_cancel(str(args.get("reason", "visit-cancelled")))
        return {"closed": closed}

    async def _op_connected(self, args: dict[str, Any]) -> dict[str, Any]:
        hub = self._hubs.hubs.get(VisitId(str(args["visit"])))
        return {"connected": sorted(hub.sessions) if hub else []}

    # --- drain --------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Take no new visits; wait up to `timeout` seconds for the ones here to empty, then
        hand the rest on (their participants reconnect, and another node adopts each visit).
        Returns how many visits were handed on."""
        if not self.draining:
            self.draining = True
            logger.info("node %s: draining (up to %.0f s)", self.id, timeout)
            with contextlib.suppress(StoreUnavailable):
                await self.cluster.register(self.info())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hubs.wait_empty(expecting=self.shared), timeout)
        moved = 0
        for hub in list(self._hubs.hubs.values()):
            if hub.sessions or hub.reconnecting:
                moved += 1
            with contextlib.suppress(StoreUnavailable):
                await self.cluster.release(hub.visit_id, self.id)
            await hub.close(reconnect=self.shared)
            self._hubs.hubs.pop(hub.visit_id, None)
        for relay in list(self._edges.values()):
            relay.close_soon(CLOSE_NODE_LOST, "node-lost")
        if moved:
            logger.info("node %s: handed %d visit(s) on", self.id, moved)
        return moved


def _join_visit(text: str) -> VisitId | None:
    """The visit a well-formed first message joins, or None (the session reports the error)."""
    try:
        message = parse_client_message(text)
    except SignalingError:
        return None
    return VisitId(message.visit) if isinstance(message, Join) else None
