"""Which server nodes are alive, which node hosts each visit, and who is in each visit's call.

A visit's media lives on exactly one node (its owner); any node accepts any participant and
relays signaling to the owner. `ClusterState` holds what every node must agree on:

- nodes: each node re-registers every heartbeat with a time-to-live; a node whose record has
  expired is dead, and its visits may be moved;
- leases: visit -> owning node and epoch, written once (`place`, set-if-absent), moved only from
  a named owner whose registration has expired (`move`, compare-and-set) and released only by
  its owner (`release`). Every new owner gets a higher epoch (a fencing token): a node acts on a
  visit only while the lease it holds is current (`confirm`). As no lease moves away from a node
  whose registration lives, a node that knows its registration is fresh knows its leases are;
  one that wakes after a pause confirms them before anything else;
- presence: the participants in each visit's call, so a node that adopts a visit lets them
  straight back in (no waiting room) and knows whom it is waiting for.

`MemoryClusterState` is the single-node twin (one process, nothing configured);
`rooms.redis_cluster.RedisClusterState` shares the same state between nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NewType, Protocol

from rooms.ids import ParticipantId, VisitId
from rooms.store import StaleLease

NodeId = NewType("NodeId", str)

#: The id of a node alone (nothing configured).
LOCAL_NODE = NodeId("local")

#: Seconds a node's registration lives without a heartbeat: a node silent longer is dead.
DEFAULT_NODE_TTL = 6.0


@dataclass(frozen=True)
class NodeInfo:
    id: NodeId
    #: Where participants' media goes: the address the node offers as its ICE host candidate.
    address: str
    #: Participants whose signaling session runs on this node (its media load).
    load: int = 0
    #: A draining node takes no new visits.
    draining: bool = False
    started_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeInfo:
        return cls(
            id=NodeId(str(data["id"])),
            address=str(data["address"]),
            load=int(data.get("load", 0)),
            draining=bool(data.get("draining", False)),
            started_at=float(data.get("started_at", 0.0)),
        )


@dataclass(frozen=True)
class Lease:
    """The right to host a visit: `node` holds it at `epoch` (a fencing token)."""

    node: NodeId
    epoch: int


class NoNodeAvailable(Exception):
    """Every live node is draining (or none is registered)."""


def choose_node(nodes: Iterable[NodeInfo]) -> NodeInfo:
    """The node a new visit goes to: the least loaded that is not draining (ties by id)."""
    candidates = [node for node in nodes if not node.draining]
    if not candidates:
        raise NoNodeAvailable("no server node is taking new visits")
    return min(candidates, key=lambda node: (node.load, node.id))


def takers(nodes: Iterable[NodeInfo]) -> list[NodeId]:
    """The ids of the nodes that take new visits (not draining), sorted; raises when none."""
    ids = sorted(node.id for node in nodes if not node.draining)
    if not ids:
        raise NoNodeAvailable("no server node is taking new visits")
    return ids


class ClusterState(Protocol):
    node_ttl: float

    async def register(self, node: NodeInfo) -> bool:
        """Write the node's record for another `node_ttl` seconds. True when it was missing
        (a new node, or one the shared state had forgotten, as after a Redis restart)."""
        ...

    async def deregister(self, node_id: NodeId) -> None: ...

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, in no particular order."""
        ...

    async def node(self, node_id: NodeId) -> NodeInfo | None:
        """The node's record, or None if it is dead."""
        ...

    async def owner(self, visit_id: VisitId) -> NodeId | None: ...

    async def lease(self, visit_id: VisitId) -> Lease | None:
        """Who hosts the visit, at which epoch; None when nobody does."""
        ...

    async def place(self, visit_id: VisitId, node_id: NodeId) -> Lease:
        """Lease the visit to `node_id` unless it is leased already; returns the lease."""
        ...

    async def place_least_loaded(self, visit_id: VisitId, candidates: Sequence[NodeId]) -> Lease:
        """Lease the visit, unless it is leased already, to the candidate hosting the fewest
        visits right now (counted from the leases, in the same atomic step, so a burst of
        bookings on several nodes is spread too); ties are taken in turn. Raises
        NoNodeAvailable without candidates."""
        ...

    async def hosted(self, node_id: NodeId) -> int:
        """How many visits `node_id` holds the lease of now."""
        ...

    async def move(self, visit_id: VisitId, dead: NodeId, node_id: NodeId) -> Lease:
        """Lease the visit to `node_id` if `dead` still holds it (or nobody does) and `dead`'s
        registration has expired; returns the lease afterwards."""
        ...

    async def confirm(self, visit_id: VisitId, lease: Lease) -> bool:
        """Whether `lease` is still current. A visit the shared state knows nothing of (it was
        restarted and lost everything) is written back as `lease`, which is then current."""
        ...

    async def release(self, visit_id: VisitId, node_id: NodeId) -> None:
        """Unpin the visit if `node_id` owns it (a draining node hands its visits on)."""
        ...

    async def join_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        """Add `participant` to the visit's call. With `epoch` (the writer's lease epoch) the
        write is fenced: StaleLease, and nothing written, once a later lease of the visit was
        granted; checked in the same atomic step."""
        ...

    async def leave_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        """Take `participant` out of the visit's call; fenced by `epoch` as `join_call`."""
        ...

    async def check_epoch(self, visit_id: VisitId, epoch: int) -> None:
        """StaleLease once a lease of the visit later than `epoch` was granted: asked before a
        record of the visit (the event log) is written under `epoch`."""
        ...

    async def in_call(self, visit_id: VisitId) -> set[ParticipantId]: ...

    async def forget_visit(self, visit_id: VisitId, node_id: NodeId) -> None:
        """The visit is over: drop its presence, and its placement if `node_id` owns it."""
        ...

    async def close(self) -> None: ...


class MemoryClusterState:
    """The single-process twin: registrations expire by the monotonic clock."""

    def __init__(self, node_ttl: float = DEFAULT_NODE_TTL) -> None:
        self.node_ttl = node_ttl
        self._nodes: dict[NodeId, tuple[NodeInfo, float]] = {}
        self._owners: dict[VisitId, NodeId] = {}
        #: The latest epoch of each visit ever leased; kept after a release (tokens never repeat).
        self._epochs: dict[VisitId, int] = {}
        self._presence: dict[VisitId, set[ParticipantId]] = {}
        #: Placements decided by a tie so far (the next tie goes to the next candidate).
        self._turn = 0
        self._lock = asyncio.Lock()

    async def register(self, node: NodeInfo) -> bool:
        missing = await self.node(node.id) is None
        self._nodes[node.id] = (node, time.monotonic() + self.node_ttl)
        return missing

    async def deregister(self, node_id: NodeId) -> None:
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        now = time.monotonic()
        return [node for node, expires in self._nodes.values() if expires > now]

    async def node(self, node_id: NodeId) -> NodeInfo | None:
        entry = self._nodes.get(node_id)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    async def owner(self, visit_id: VisitId) -> NodeId | None:
        return self._owners.get(visit_id)

    async def lease(self, visit_id: VisitId) -> Lease | None:
        owner = self._owners.get(visit_id)
        return None if owner is None else Lease(owner, self._epochs[visit_id])

    def _grant(self, visit_id: VisitId, node_id: NodeId) -> Lease:
        self._owners[visit_id] = node_id
        self._epochs[visit_id] = self._epochs.get(visit_id, 0) + 1
        return Lease(node_id, self._epochs[visit_id])

    async def place(self, visit_id: VisitId, node_id: NodeId) -> Lease:
        async with self._lock:
            current = await self.lease(visit_id)
            return current if current is not None else self._grant(visit_id, node_id)

    async def place_least_loaded(self, visit_id: VisitId, candidates: Sequence[NodeId]) -> Lease:
        if not candidates:
            raise NoNodeAvailable("no server node is taking new visits")
        async with self._lock:
            current = await self.lease(visit_id)
            if current is not None:
                return current
            counts = {node: await self.hosted(node) for node in candidates}
            fewest = min(counts.values())
            tied = [node for node in candidates if counts[node] == fewest]
            self._turn += 1
            return self._grant(visit_id, tied[(self._turn - 1) % len(tied)])

    async def hosted(self, node_id: NodeId) -> int:
        return sum(1 for owner in self._owners.values() if owner == node_id)

    async def move(self, visit_id: VisitId, dead: NodeId, node_id: NodeId) -> Lease:
        async with self._lock:
            current = await self.lease(visit_id)
            if current is None or (current.node == dead and await self.node(dead) is None):
                return self._grant(visit_id, node_id)
            return current

    async def confirm(self, visit_id: VisitId, lease: Lease) -> bool:
        async with self._lock:
            if visit_id not in self._epochs:
                self._owners[visit_id], self._epochs[visit_id] = lease.node, lease.epoch
            return await self.lease(visit_id) == lease

    async def release(self, visit_id: VisitId, node_id: NodeId) -> None:
        async with self._lock:
            if self._owners.get(visit_id) == node_id:
                del self._owners[visit_id]

    async def join_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        if epoch is not None:
            await self.check_epoch(visit_id, epoch)
        self._presence.setdefault(visit_id, set()).add(participant)

    async def leave_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        if epoch is not None:
            await self.check_epoch(visit_id, epoch)
        self._presence.get(visit_id, set()).discard(participant)

    async def check_epoch(self, visit_id: VisitId, epoch: int) -> None:
        latest = self._epochs.get(visit_id, 0)
        if latest > epoch:
            raise StaleLease(f"visit {visit_id} is leased under epoch {latest} now")

    async def in_call(self, visit_id: VisitId) -> set[ParticipantId]:
        return set(self._presence.get(visit_id, ()))

    async def forget_visit(self, visit_id: VisitId, node_id: NodeId) -> None:
        self._presence.pop(visit_id, None)
        await self.release(visit_id, node_id)

    async def close(self) -> None:
        return None
