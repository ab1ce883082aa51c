"""This server node as one member of a deployment: heartbeat, visit placement, routing of
signaling sockets to the node that hosts their visit, calls between nodes, drain.

With nothing configured there is one node, a `MemoryClusterState` and a `LocalBus`, and every
visit is placed here: the single-node server runs the same code as a cluster of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from rooms.cluster import (
    ClusterState,
    Lease,
    NodeId,
    NodeInfo,
    NoNodeAvailable,
    choose_node,
    takers,
)
from rooms.errors import VisitNotFound
from rooms.ids import VISIT_ID_PATTERN, VisitId
from rooms.store import StaleLease, StoreUnavailable
from signaling import down
from signaling.bus import Bus, BusUnavailable, Message
from signaling.channel import WebSocketChannel
from signaling.errors import (
    CLOSE_JOIN_TIMEOUT,
    CLOSE_NODE_LOST,
    CLOSE_TRY_AGAIN,
    SignalingError,
)
from signaling.messages import Join, error_message, parse_client_message
from signaling.registry import HubRegistry
from signaling.relay import EdgeRelay, RelayedChannel
from signaling.services import SignalingServices
from signaling.session import Session

logger = logging.getLogger(__name__)

VISIT_ID = re.compile(VISIT_ID_PATTERN)

NODE_CHANNEL = "{prefix}bus:node:{node}"
BROADCAST_CHANNEL = "{prefix}bus:all"

#: An operation another node may ask of this one: arguments in, JSON-able result out.
Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
#: A broadcast this node reacts to (revocations): the message, from another node.
BroadcastHandler = Callable[[Message], Awaitable[None]]

CALL_TIMEOUT = 5.0

#: The share of its registration's life a node trusts it, and so its leases (no lease moves away
#: from a node whose registration lives), without asking the shared state: the rest is room for
#: a heartbeat that is late or a Redis that is slow to answer.
FRESH_SHARE = 0.75


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
        #: The lease of each visit this node hosts, and when it was taken (monotonic).
        self._leases: dict[VisitId, tuple[Lease, float]] = {}
        #: Until then (monotonic) this node's registration, and so each lease it holds, is
        #: current; after a pause it is not, and the leases are confirmed before any action.
        self._fresh_until = 0.0
        self._unreachable_until = 0.0
        self._renewing = asyncio.Lock()
        self._renewals = 0
        #: A drain has begun (by the API or a signal): participants have been told.
        self.drain_started = False
        #: Stopped: deregistered, so it never registers again (not even to confirm a lease).
        self._stopped = False

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        channels = [NODE_CHANNEL.format(prefix=self._prefix, node=self.id)]
        channels.append(BROADCAST_CHANNEL.format(prefix=self._prefix))
        await self._bus.subscribe(channels, self._on_message)
        await self.beat()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        self._stopped = True
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
        """Renew this node's registration; after a pause, or after the shared state forgot
        this node, confirm every lease it holds (and drop the visits it lost)."""
        async with self._renewing:
            await self._renew()

    async def _renew(self) -> None:
        self._renewals += 1
        sent = time.monotonic()
        lapsed = sent >= self._fresh_until
        missing = await self.cluster.register(self.info())
        if self._registered_once and missing:
            logger.warning("node %s: the shared state had forgotten this node; re-syncing", self.id)
            # The others re-register within one heartbeat: judge nobody dead before then.
            self._judge_peers_after = time.monotonic() + self.cluster.node_ttl
        if self._registered_once and (missing or lapsed):
            await self.resync()
        self._registered_once = True
        # Only now: whoever waits for a fresh registration must not act on a lease not yet
        # confirmed.
        self._fresh_until = sent + self.cluster.node_ttl * FRESH_SHARE

    async def ensure_fresh(self) -> None:
        """Before acting: a node whose registration may have lapsed (it was paused, or its
        heartbeat is late) renews it and confirms its leases first."""
        if self._stopped or time.monotonic() < self._fresh_until:
            return
        tried = self._renewals
        async with self._renewing:
            if time.monotonic() < self._fresh_until:
                return
            if self._renewals != tried:
                # One renewal failed while this waited: not another timeout per waiter.
                raise StoreUnavailable("live state is unavailable (the renewal just failed)")
            await self._renew()

    async def holds(self, visit_id: VisitId) -> bool:
        """Whether this node may act on the visit now: it holds the visit's current lease."""
        if time.monotonic() >= self._unreachable_until:
            try:
                await self.ensure_fresh()
            except StoreUnavailable:
                # Nobody can confirm or take the lease while the shared state is unreachable:
                # the call goes on here (a node cut off from a Redis the others still reach
                # would keep its own sockets until it is back; see the README).
                self._unreachable_until = time.monotonic() + self.cluster.node_ttl / 3
        return visit_id in self._leases

    def epoch(self, visit_id: VisitId) -> int | None:
        """The epoch of the lease this node believes it holds of the visit, which fences the
        writes of its hub; None when it holds none (a write from the API, unfenced)."""
        held = self._leases.get(visit_id)
        return held[0].epoch if held is not None else None

    async def _heartbeat_loop(self) -> None:
        interval = self.cluster.node_ttl / 3
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
                self._forget_unused_leases()
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
        """Confirm the lease of each visit hosted here: drop those that moved on while this
        node was away, and write back the rest (the shared state may have been restarted)."""
        for visit_id, hub in list(self._hubs.hubs.items()):
            held = self._leases.get(visit_id)
            if held is None:
                lease = await self.cluster.place(visit_id, self.id)
                current = lease.node == self.id
            else:
                lease = held[0]
                current = await self.cluster.confirm(visit_id, lease)
            if not current:
                self.drop_visit(visit_id)
                continue
            self._leases[visit_id] = (lease, held[1] if held else time.monotonic())
            visit = hub.last_visit
            if visit is not None:
                try:
                    # A store with a record rebuilds the visit from it (newer than `last_visit`).
                    await self._services.store.get(visit_id)
                except VisitNotFound:
                    with contextlib.suppress(ValueError):
                        await self._services.store.create(visit)
            for participant in hub.in_call:
                await self.cluster.join_call(visit_id, participant, epoch=lease.epoch)

    def drop_visit(self, visit_id: VisitId) -> None:
        """This node lost the visit's lease: it leaves the registry at once (so nothing here
        acts on it again), and its sockets are closed with 4006 so that the participants
        reconnect to the node that holds it now."""
        self._leases.pop(visit_id, None)
        hub = self._hubs.hubs.pop(visit_id, None)
        if hub is None:
            return
        logger.warning("node %s: lost the lease of visit %s; dropping it", self.id, visit_id)
        self._spawn(hub.close(reconnect=True))

    async def _hold(self, visit_id: VisitId, lease: Lease) -> None:
        """Host the visit under `lease`: a hub here from an older lease of it is stale."""
        held = self._leases.get(visit_id)
        if held is not None and held[0] != lease:
            self.drop_visit(visit_id)
        self._leases[visit_id] = (lease, time.monotonic())

    def _forget_unused_leases(self) -> None:
        """Leases taken for joins that never made a hub, or whose hub is gone."""
        stale = time.monotonic() - 2 * self._services.join_timeout
        for visit_id, (_lease, taken) in list(self._leases.items()):
            if visit_id not in self._hubs.hubs and taken < stale:
                del self._leases[visit_id]

    # --- placement ----------------------------------------------------------------------------

    async def place_new(self, visit_id: VisitId) -> NodeId:
        """Pin a newly booked visit to the node that takes new visits and hosts the fewest now
        (heartbeats say nothing before anybody joins; ties are taken in turn)."""
        candidates = takers(await self.cluster.nodes())
        return (await self.cluster.place_least_loaded(visit_id, candidates)).node

    async def lease_for(self, visit_id: VisitId) -> Lease | None:
        """The lease of the live node hosting the visit, placing or moving it if needed; None
        for a visit that does not exist or is over (the session here then says so)."""
        await self.ensure_fresh()
        lease = await self.cluster.lease(visit_id)
        if lease is None or (lease.node != self.id and not await self.cluster.node(lease.node)):
            try:
                visit = await self._services.store.get(visit_id)
            except VisitNotFound:
                return None
            if not visit.is_live:
                return None
            nodes = await self.cluster.nodes()
            if lease is None:
                lease = await self.cluster.place_least_loaded(visit_id, takers(nodes))
            else:
                node = choose_node(nodes).id
                logger.warning(
                    "visit %s: node %s is gone; moving the visit to %s", visit_id, lease.node, node
                )
                lease = await self.cluster.move(visit_id, lease.node, node)
        if lease.node == self.id:
            await self._hold(visit_id, lease)
        return lease

    # --- sockets ------------------------------------------------------------------------------

    async def serve_socket(self, ws: web.WebSocketResponse, client: str | None) -> None:
        """Run a participant's signaling socket here, or relay it to the visit's node."""
        try:
            first = await asyncio.wait_for(ws.receive(), self._services.join_timeout)
        except TimeoutError:
            await ws.send_json(
                error_message("join-timeout", "no 'join' in time", fatal=True).wire()
            )
            await ws.close(code=CLOSE_JOIN_TIMEOUT, message=b"join-timeout")
            return
        if first.type is WSMsgType.BINARY:
            await self._run_local(ws, client, first.data)
        if first.type is not WSMsgType.TEXT:
            return
        owner = self.id
        visit = _join_visit(first.data)
        if visit is not None:
            # Always asked, also with a hub here: this node may have lost the visit while away.
            try:
                lease = await self.lease_for(visit)
                owner = lease.node if lease is not None else self.id
            except (StoreUnavailable, NoNodeAvailable) as exc:
                if isinstance(exc, StoreUnavailable) and await self.holds(visit):
                    # Nobody can take the lease while the shared state is unreachable: a
                    # participant of a visit hosted here comes back in (see `holds`).
                    logger.warning("join for visit %s: lease not confirmed (%s)", visit, exc)
                    await self._run_local(ws, client, first.data)
                    return
                logger.warning("join for visit %s refused: %s", visit, exc)
                await ws.send_json(
                    error_message(
                        "service-unavailable",
                        "the service cannot take new participants right now; try again shortly",
                    ).wire()
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
                error_message("service-unavailable", "try again shortly", fatal=False).wire()
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
        first = str(message.get("first", ""))
        channel = RelayedChannel(self.send, edge, conn, first)
        self._relayed[conn] = channel
        client = message.get("client")
        session = Session(
            channel, self._services, self._hubs, str(client) if client is not None else None
        )

        async def run() -> None:
            try:
                visit = _join_visit(first)
                lease = None
                if visit is not None:
                    with contextlib.suppress(StoreUnavailable, NoNodeAvailable):
                        lease = await self.lease_for(visit)
                if lease is not None and lease.node != self.id:
                    # The edge read an older lease: its participant reconnects, to the owner.
                    await channel.close(CLOSE_NODE_LOST, "node-lost")
                    return
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
        if visit_id in self._hubs.hubs and await self.holds(visit_id):
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

    async def refuse_new_visits(self) -> None:
        """Draining: new visits go to other nodes from now on (once the others can read it)."""
        if self.draining:
            return
        self.draining = True
        with contextlib.suppress(StoreUnavailable):
            await self.cluster.register(self.info())

    async def drain(self, timeout: float) -> int:
        """Take no new visits and tell every participant; wait up to `timeout` seconds for the
        visits here to empty (their messages are still read); then hand the rest on (their
        participants reconnect, and another node adopts each visit) or, with no other node to
        take them, end them (reason `shutdown`). Returns how many visits were handed on."""
        if not self.drain_started:
            self.drain_started = True
            await self.refuse_new_visits()
            moving = await self._successor_exists()
            logger.info("node %s: draining (up to %.0f s)", self.id, timeout)
            notice = down.ServerShutdown(moving=moving, seconds=timeout).wire()
            for hub in self._hubs.hubs.values():
                for session in hub.sessions.values():
                    session.send(notice)
            # Relayed sockets: their visit is hosted elsewhere, only the socket moves.
            relayed = json.dumps({**notice, "moving": True})
            for relay in self._edges.values():
                relay.deliver({"type": "out", "conn": relay.conn, "data": relayed})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hubs.wait_empty(expecting=self.shared), timeout)
        moving = await self._successor_exists()
        moved = 0
        for hub in list(self._hubs.hubs.values()):
            if self._hubs.hubs.get(hub.visit_id) is not hub:
                continue  # another drain (the API's, then SIGTERM's) took it
            # Out of the registry first: nothing here acts on the visit any more.
            self._hubs.hubs.pop(hub.visit_id, None)
            if moving:
                self._leases.pop(hub.visit_id, None)
                if hub.sessions or hub.reconnecting:
                    moved += 1
                with contextlib.suppress(StoreUnavailable):
                    await self.cluster.release(hub.visit_id, self.id)
            else:
                try:
                    await hub.shut_down()
                except (StoreUnavailable, StaleLease) as exc:
                    logger.warning("node %s: visit %s not ended (%s)", self.id, hub.visit_id, exc)
                # Only now: the visit is ended under this node's lease (its epoch fences it).
                self._leases.pop(hub.visit_id, None)
            await hub.close(reconnect=moving)
        for relay in list(self._edges.values()):
            relay.close_soon(CLOSE_NODE_LOST, "node-lost")
        if moved:
            logger.info("node %s: handed %d visit(s) on", self.id, moved)
        return moved

    async def _successor_exists(self) -> bool:
        """Whether another node can take this node's visits over (one that is not draining)."""
        if not self.shared:
            return False
        try:
            nodes = await self.cluster.nodes()
        except StoreUnavailable:
            return True  # unknown: the participants reconnect and wait for one
        return any(node.id != self.id and not node.draining for node in nodes)


def _join_visit(text: str) -> VisitId | None:
    """The visit a well-formed first message joins, or None (the session reports the error).

    A visit id of another shape is never looked up (nor logged): it may be anything at all."""
    try:
        message = parse_client_message(text)
    except SignalingError:
        return None
    if not isinstance(message, Join) or VISIT_ID.fullmatch(message.visit) is None:
        return None
    return VisitId(message.visit)
