"""`ClusterState` in Redis: what every node of one deployment (one Redis, one prefix) shares.

A node's record is a key with a time-to-live that its heartbeat renews, so a node that stops is
forgotten by Redis itself. Leases are written set-if-absent, moved by compare-and-set (only away
from a node whose record has expired) and released by compare-and-delete, each with its epoch
counter (Lua, so no other write lands in between), as LiveKit keeps its room-to-node map.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.asyncio import Redis

from rooms.cluster import DEFAULT_NODE_TTL, Lease, NodeId, NodeInfo, NoNodeAvailable
from rooms.ids import ParticipantId, VisitId
from rooms.redis_store import redis_unavailable_as_store_error
from rooms.store import DEFAULT_PREFIX, StaleLease

NODE_KEY = "{prefix}node:{node}"  # string: JSON of NodeInfo; expires node_ttl after a heartbeat
NODES_KEY = "{prefix}nodes"  # set of node ids ever registered; dead ones are pruned on reading
OWNER_KEY = "{prefix}visit:{visit}:node"  # string: the owning node's id
EPOCH_KEY = "{prefix}visit:{visit}:epoch"  # integer: the latest lease's epoch (kept on release)
PRESENCE_KEY = "{prefix}visit:{visit}:in-call"  # set of participant ids in the visit's call
HOSTED_KEY = "{prefix}hosted:{node}"  # set of visit ids leased to the node (stale ones pruned)
TURN_KEY = "{prefix}placement-turn"  # integer: placements decided by a tie so far

#: Placements and presence outlive any real visit, but not forever (a visit nobody ended).
VISIT_STATE_TTL_SECONDS = 7 * 24 * 3600

# KEYS: owner, epoch, the node's hosted set. ARGV: node, ttl, visit. Returns {owner, epoch}.
_PLACE = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  owner = ARGV[1]
  redis.call('SET', KEYS[1], owner, 'EX', ARGV[2])
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return {owner, redis.call('GET', KEYS[2]) or '0'}
"""

# How many visits a node holds the lease of now (its hosted set, stale members pruned).
_HOSTED_LUA = """
local function hosted(prefix, node)
  local key = prefix .. 'hosted:' .. node
  local count = 0
  for _, visit in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('GET', prefix .. 'visit:' .. visit .. ':node') == node then
      count = count + 1
    else
      redis.call('SREM', key, visit)
    end
  end
  return count
end
"""

# KEYS: owner, epoch, turn. ARGV: ttl, prefix, visit, candidates... Returns {owner, epoch}.
_PLACE_LEAST_LOADED = (
    _HOSTED_LUA
    + """
local owner = redis.call('GET', KEYS[1])
if not owner then
  local fewest, tied = nil, {}
  for i = 4, #ARGV do
    local count = hosted(ARGV[2], ARGV[i])
    if fewest == nil or count < fewest then
      fewest, tied = count, {ARGV[i]}
    elseif count == fewest then
      table.insert(tied, ARGV[i])
    end
  end
  local turn = redis.call('INCR', KEYS[3])
  owner = tied[((turn - 1) % #tied) + 1]
  redis.call('SET', KEYS[1], owner, 'EX', ARGV[1])
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  local key = ARGV[2] .. 'hosted:' .. owner
  redis.call('SADD', key, ARGV[3])
  redis.call('EXPIRE', key, ARGV[1])
end
return {owner, redis.call('GET', KEYS[2]) or '0'}
"""
)

# ARGV: prefix, node. Returns the count.
_HOSTED = _HOSTED_LUA + "return hosted(ARGV[1], ARGV[2])"

# KEYS: owner, epoch, the dead node's record, its hosted set, the new node's hosted set.
# ARGV: dead, node, ttl, visit. Returns {owner, epoch}.
_MOVE = """
local owner = redis.call('GET', KEYS[1])
if (not owner) or (owner == ARGV[1] and redis.call('EXISTS', KEYS[3]) == 0) then
  owner = ARGV[2]
  redis.call('SET', KEYS[1], owner, 'EX', ARGV[3])
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('SREM', KEYS[4], ARGV[4])
  redis.call('SADD', KEYS[5], ARGV[4])
  redis.call('EXPIRE', KEYS[5], ARGV[3])
end
return {owner, redis.call('GET', KEYS[2]) or '0'}
"""

# KEYS: owner, epoch, the node's hosted set. ARGV: node, epoch, ttl, visit.
# Returns 1 if the lease is current.
_CONFIRM = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] and (redis.call('GET', KEYS[2]) or '0') == ARGV[2] then
  return 1
end
return 0
"""

# KEYS: presence, epoch. ARGV: what ('add', 'remove' or 'check'), the writer's epoch ('' for
# none: unfenced), participant, ttl. Returns 0, having written nothing, when a later lease of the
# visit was granted than the writer's epoch; else 1.
_PRESENCE = """
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') > tonumber(ARGV[2]) then
  return 0
end
if ARGV[1] == 'add' then
  redis.call('SADD', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
elseif ARGV[1] == 'remove' then
  redis.call('SREM', KEYS[1], ARGV[3])
end
return 1
"""

# KEYS: owner, the node's hosted set. ARGV: node, visit.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SREM', KEYS[2], ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisClusterState:
    def __init__(
        self,
        client: Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        node_ttl: float = DEFAULT_NODE_TTL,
        owns_client: bool = True,
    ) -> None:
        self.node_ttl = node_ttl
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._place = client.register_script(_PLACE)
        self._move = client.register_script(_MOVE)
        self._place_least_loaded = client.register_script(_PLACE_LEAST_LOADED)
        self._hosted = client.register_script(_HOSTED)
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)
        self._presence = client.register_script(_PRESENCE)

    def _node_key(self, node_id: str) -> str:
        return NODE_KEY.format(prefix=self._prefix, node=node_id)

    def _owner_key(self, visit_id: str) -> str:
        return OWNER_KEY.format(prefix=self._prefix, visit=visit_id)

    def _epoch_key(self, visit_id: str) -> str:
        return EPOCH_KEY.format(prefix=self._prefix, visit=visit_id)

    def _hosted_key(self, node_id: str) -> str:
        return HOSTED_KEY.format(prefix=self._prefix, node=node_id)

    def _presence_key(self, visit_id: str) -> str:
        return PRESENCE_KEY.format(prefix=self._prefix, visit=visit_id)

    async def register(self, node: NodeInfo) -> bool:
        with redis_unavailable_as_store_error():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(
                    self._node_key(node.id),
                    json.dumps(node.to_dict()),
                    px=int(self.node_ttl * 1000),
                    get=True,
                )
                pipe.sadd(NODES_KEY.format(prefix=self._prefix), node.id)
                previous, _added = await pipe.execute()
            return previous is None

    async def deregister(self, node_id: NodeId) -> None:
        with redis_unavailable_as_store_error():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._node_key(node_id))
                pipe.srem(NODES_KEY.format(prefix=self._prefix), node_id)
                await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        with redis_unavailable_as_store_error():
            nodes_key = NODES_KEY.format(prefix=self._prefix)
            ids = sorted(_text(member) for member in await self._client.smembers(nodes_key))
            if not ids:
                return []
            raws = await self._client.mget([self._node_key(i) for i in ids])
            live = [NodeInfo.from_dict(json.loads(raw)) for raw in raws if raw is not None]
            dead = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if dead:
                await self._client.srem(nodes_key, *dead)
            return live

    async def node(self, node_id: NodeId) -> NodeInfo | None:
        with redis_unavailable_as_store_error():
            raw = await self._client.get(self._node_key(node_id))
            return None if raw is None else NodeInfo.from_dict(json.loads(raw))

    async def owner(self, visit_id: VisitId) -> NodeId | None:
        with redis_unavailable_as_store_error():
            raw = await self._client.get(self._owner_key(visit_id))
            return None if raw is None else NodeId(_text(raw))

    async def lease(self, visit_id: VisitId) -> Lease | None:
        with redis_unavailable_as_store_error():
            owner, epoch = await self._client.mget(
                [self._owner_key(visit_id), self._epoch_key(visit_id)]
            )
            return None if owner is None else Lease(NodeId(_text(owner)), int(epoch or 0))

    async def place(self, visit_id: VisitId, node_id: NodeId) -> Lease:
        with redis_unavailable_as_store_error():
            owner, epoch = await self._place(
                keys=[
                    self._owner_key(visit_id),
                    self._epoch_key(visit_id),
                    self._hosted_key(node_id),
                ],
                args=[node_id, VISIT_STATE_TTL_SECONDS, visit_id],
            )
            return Lease(NodeId(_text(owner)), int(epoch))

    async def place_least_loaded(self, visit_id: VisitId, candidates: Sequence[NodeId]) -> Lease:
        if not candidates:
            raise NoNodeAvailable("no server node is taking new visits")
        with redis_unavailable_as_store_error():
            owner, epoch = await self._place_least_loaded(
                keys=[
                    self._owner_key(visit_id),
                    self._epoch_key(visit_id),
                    TURN_KEY.format(prefix=self._prefix),
                ],
                args=[VISIT_STATE_TTL_SECONDS, self._prefix, visit_id, *candidates],
            )
            return Lease(NodeId(_text(owner)), int(epoch))

    async def hosted(self, node_id: NodeId) -> int:
        with redis_unavailable_as_store_error():
            return int(await self._hosted(args=[self._prefix, node_id]))

    async def move(self, visit_id: VisitId, dead: NodeId, node_id: NodeId) -> Lease:
        with redis_unavailable_as_store_error():
            owner, epoch = await self._move(
                keys=[
                    self._owner_key(visit_id),
                    self._epoch_key(visit_id),
                    self._node_key(dead),
                    self._hosted_key(dead),
                    self._hosted_key(node_id),
                ],
                args=[dead, node_id, VISIT_STATE_TTL_SECONDS, visit_id],
            )
            return Lease(NodeId(_text(owner)), int(epoch))

    async def confirm(self, visit_id: VisitId, lease: Lease) -> bool:
        with redis_unavailable_as_store_error():
            current = await self._confirm(
                keys=[
                    self._owner_key(visit_id),
                    self._epoch_key(visit_id),
                    self._hosted_key(lease.node),
                ],
                args=[lease.node, lease.epoch, VISIT_STATE_TTL_SECONDS, visit_id],
            )
            return bool(current)

    async def release(self, visit_id: VisitId, node_id: NodeId) -> None:
        with redis_unavailable_as_store_error():
            await self._release(
                keys=[self._owner_key(visit_id), self._hosted_key(node_id)],
                args=[node_id, visit_id],
            )

    async def _fenced_presence(
        self, what: str, visit_id: VisitId, participant: str, epoch: int | None
    ) -> None:
        with redis_unavailable_as_store_error():
            written = await self._presence(
                keys=[self._presence_key(visit_id), self._epoch_key(visit_id)],
                args=[what, "" if epoch is None else epoch, participant, VISIT_STATE_TTL_SECONDS],
            )
        if not written:
            raise StaleLease(f"visit {visit_id} is leased under a later epoch than {epoch}")

    async def join_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        await self._fenced_presence("add", visit_id, participant, epoch)

    async def leave_call(
        self, visit_id: VisitId, participant: ParticipantId, *, epoch: int | None = None
    ) -> None:
        await self._fenced_presence("remove", visit_id, participant, epoch)

    async def check_epoch(self, visit_id: VisitId, epoch: int) -> None:
        await self._fenced_presence("check", visit_id, "", epoch)

    async def in_call(self, visit_id: VisitId) -> set[ParticipantId]:
        with redis_unavailable_as_store_error():
            members = await self._client.smembers(self._presence_key(visit_id))
            return {ParticipantId(_text(m)) for m in members}

    async def forget_visit(self, visit_id: VisitId, node_id: NodeId) -> None:
        with redis_unavailable_as_store_error():
            await self._client.delete(self._presence_key(visit_id))
            await self.release(visit_id, node_id)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
