"""One participant's signaling session: one WebSocket, validated messages, a bounded outbox."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from media.errors import NegotiationFailed
from media.sources import SourceForbidden
from rooms.call import CallRefused
from rooms.errors import (
    AuthenticationFailed,
    EntryRefused,
    NotDurable,
    NotPermitted,
    VisitNotFound,
)
from rooms.ids import ParticipantId
from rooms.outcomes import OutcomeRejected
from rooms.policy import Action, check_entry, is_host_role, publish_sources
from rooms.principal import Principal
from rooms.store import StaleLease
from rooms.visit import Seat, VisitState
from signaling import down
from signaling.channel import ClientChannel, WebSocketChannel
from signaling.errors import (
    CLOSE_FATAL,
    CLOSE_INTERNAL,
    CLOSE_JOIN_TIMEOUT,
    CLOSE_LEFT,
    CLOSE_NODE_LOST,
    CLOSE_REPLACED,
    CLOSE_SLOW,
    FatalError,
    Flooding,
    ProtocolError,
    SignalingError,
)
from signaling.limits import ANY, LIMIT_OF, SocketLimiter
from signaling.messages import (
    MALFORMED_CODES,
    TYPE_OF,
    Admit,
    AdmitAll,
    Assisting,
    Chat,
    ClientMessage,
    Decline,
    EndVisit,
    FallbackPhone,
    Join,
    Leave,
    MediaRestart,
    MediaState,
    MuteRequest,
    Offer,
    Ping,
    Readmit,
    RecordOutcome,
    Remove,
    error_message,
    parse_client_message,
    refused_candidates_message,
)
from signaling.services import SignalingServices

if TYPE_CHECKING:
    from signaling.hub import VisitHub
    from signaling.registry import HubRegistry

logger = logging.getLogger(__name__)


class Session:
    def __init__(
        self,
        channel: ClientChannel,
        services: SignalingServices,
        hubs: HubRegistry,
        client: str | None = None,
    ) -> None:
        self._channel = channel
        self._client = client
        self._services = services
        self._hubs = hubs
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
            maxsize=services.outbound_queue
        )
        self._close_code: int | None = None
        self._close_reason = ""
        self._limiter = SocketLimiter(services.limits)
        #: The deadline of the message being written, brought forward to close a slow client.
        self._sending: asyncio.Timeout | None = None
        self.principal: Principal | None = None
        self.seat: Seat | None = None
        self.hub: VisitHub | None = None
        self.audio = True
        self.video = True
        self.is_host = False
        self._left = False
        #: Why the socket was lost, for the record: socket-closed, no-pong or internal-error.
        self.lost = "socket-closed"
        #: Messages the hub sent while this session was joining, held back so that `joined` is
        #: always the first thing a client hears; None once it has been sent.
        self._held: list[dict[str, Any]] | None = []

    @property
    def sources(self) -> frozenset[str]:
        """What this participant may publish (rooms.policy.publish_sources)."""
        return publish_sources(self.principal) if self.principal is not None else frozenset()

    @property
    def participant(self) -> ParticipantId | None:
        return self.seat.participant if self.seat else None

    def describe(self) -> dict[str, Any]:
        assert self.seat is not None
        assisting = self.hub is not None and self.hub.assisting == self.seat.participant
        return {
            **self.seat.to_dict(),
            "audio": self.audio,
            "video": self.video,
            "host": self.is_host,
            "assisting": assisting,
            "reconnecting": False,
            "quality": self.hub.quality.get(self.seat.participant) if self.hub else None,
        }

    # --- outbound ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; a client that lets 256 pile up is too slow and is disconnected."""
        if self._close_code is not None:
            return
        if self._held is not None and message.get("type") not in ("joined", "error"):
            self._held.append(message)
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("session %s: outbox full, closing", self.participant)
            self._begin_close(CLOSE_SLOW, "slow-consumer")
            # Stop waiting for the message being written: the seat is released now, and the
            # close follows whatever the socket already holds.
            if self._sending is not None:
                self._sending.reschedule(asyncio.get_running_loop().time())

    def _greet(self, joined: dict[str, Any]) -> None:
        """Send `joined`, then whatever the hub said to this session while it was joining."""
        held, self._held = self._held or [], None
        self.send(joined)
        for message in held:
            self.send(message)

    def _begin_close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code, self._close_reason = code, reason
            if self._outbox.full():
                # Never drop the close: drop what a closing client would have read before it.
                while not self._outbox.empty():
                    self._outbox.get_nowait()
            self._outbox.put_nowait(None)

    def close_with(self, close_code: int, reason: str) -> None:
        """Close after the messages already queued have been sent."""
        self._begin_close(close_code, reason)

    async def close_for(self, code: str, message: str) -> None:
        self.send(error_message(code, message, fatal=True).wire())
        self._begin_close(CLOSE_FATAL, code)

    async def replaced(self) -> None:
        self.send(
            error_message(
                "session-replaced", "this seat was opened in another window or tab", fatal=True
            ).wire()
        )
        self._begin_close(CLOSE_REPLACED, "session-replaced")

    async def _write_loop(self) -> None:
        """Send queued messages until the close sentinel; only `run` closes the socket."""
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            try:
                async with asyncio.timeout(self._services.send_timeout) as self._sending:
                    await self._channel.send_json(message)
            except TimeoutError:
                logger.warning("session %s: a send timed out, closing", self.participant)
                self._begin_close(CLOSE_SLOW, "slow-consumer")
                return
            finally:
                self._sending = None

    # --- inbound ----------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        reader = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, ConnectionError):
                # A socket the client closed while this node was paused fails on its first
                # write (aiohttp answers a queued ping): as good as closed.
                pass
            except Exception as exc:
                self._failed("handler", exc)
            if isinstance(self._channel, WebSocketChannel) and self._channel.went_silent():
                self.lost = "no-pong"
            try:
                # Tell the others first: a departure must not wait for a slow close handshake.
                # Whatever failed above, the seat is left (or nobody could ever take it again).
                if self.hub is not None and await self._hubs.current(self.hub):
                    async with self.hub.lock:
                        await self.hub.leave(self, explicit=self._left)
            except Exception as exc:
                self._failed("leave", exc)
            finally:
                self._begin_close(1000, "")
                try:
                    await asyncio.wait_for(writer, timeout=2)
                except (TimeoutError, ConnectionError):
                    writer.cancel()
                except Exception as exc:
                    self._failed("writer", exc)
                await self._channel.close(self._close_code or 1000, self._close_reason)

    def _visit_id(self) -> str | None:
        return self.hub.visit_id if self.hub is not None else None

    def _failed(self, part: str, exc: Exception) -> None:
        """An unexpected error ended this session: logged with opaque ids and where it came
        from (not its message, which may carry what a participant sent); the client is asked
        to reconnect."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        logger.error(
            "visit %s participant %s: session %s failed with %s at %s; leaving the seat",
            self.hub.visit_id if self.hub is not None else None,
            self.participant,
            part,
            type(exc).__name__,
            where,
        )
        self.lost = "internal-error"
        self._begin_close(CLOSE_INTERNAL, "internal-error")

    async def _read_loop(self) -> None:
        joined = False
        try:
            async with asyncio.timeout(self._services.join_timeout) as join_deadline:
                async for data in self._channel.receive():
                    ref = None
                    try:
                        self._within_limit(ANY)
                        if isinstance(data, bytes):
                            raise ProtocolError("invalid-message", "send text (JSON) messages")
                        message = parse_client_message(data)
                        ref = message.ref
                        limit = LIMIT_OF.get(TYPE_OF[type(message)])
                        if limit is not None:
                            self._within_limit(limit)
                        if not joined:
                            if not isinstance(message, Join):
                                raise ProtocolError("join-required", "send 'join' first")
                            await self._join(message)
                            joined = True
                            join_deadline.reschedule(None)
                        elif isinstance(message, Leave):
                            self._left = True
                            self._begin_close(CLOSE_LEFT, "left")
                            return
                        elif self.hub is not None and not await self._hubs.current(self.hub):
                            # This node lost the visit (it was paused): reconnect to its owner.
                            self._begin_close(CLOSE_NODE_LOST, "node-lost")
                            return
                        else:
                            await self._dispatch(message)
                    except StaleLease:
                        # This node's lease of the visit moved on (it was paused): reconnect,
                        # to the node that holds it now.
                        logger.warning("visit %s: this node's lease is stale", self._visit_id())
                        self.send(
                            error_message(
                                "node-lost", "another node hosts this visit now", ref, fatal=True
                            ).wire()
                        )
                        self._begin_close(CLOSE_NODE_LOST, "node-lost")
                        return
                    except SignalingError as error:
                        exc = await self._refuse(error, joined)
                        self.send(
                            error_message(
                                exc.code, exc.message, ref, exc.fatal, **exc.details
                            ).wire()
                        )
                        if exc.fatal:
                            self._begin_close(exc.close_code, exc.code)
                            return
        except TimeoutError:
            self.send(error_message("join-timeout", "no 'join' in time", fatal=True).wire())
            self._begin_close(CLOSE_JOIN_TIMEOUT, "join-timeout")

    async def _refuse(self, error: SignalingError, joined: bool) -> SignalingError:
        """The error to send for a refused message. Before `join` every refusal is audited as a
        counted row and counted against the address, and past its limit the socket is refused
        as `rate-limited`; after, a malformed message is audited as a counted row."""
        access = self._services.access
        if not joined and not error.fatal:
            try:
                await access.refuse_request(Action.JOIN, self._client, error.code)
            except AuthenticationFailed as exc:
                return FatalError(exc.code, exc.message)
        elif joined and error.code in MALFORMED_CODES and self.principal is not None:
            visit = self.hub.visit_id if self.hub else None
            await access.note_malformed(
                self.principal, Action.JOIN, self._client, error.code, visit=visit
            )
        return error

    def _within_limit(self, limit: str) -> None:
        """Refuse a message over its limit; close a socket that keeps on after being told."""
        wait = self._limiter.check(limit)
        if not wait:
            return
        if self._limiter.strike():
            raise Flooding("flooding", "too many messages after being asked to slow down")
        raise ProtocolError(
            "too-many-messages",
            f"too many messages ({limit}); wait before sending more",
            retry_after=round(min(max(wait, 0.1), 3600.0), 1),
        )

    async def _join(self, message: Join) -> None:
        access = self._services.access
        try:
            principal = await access.authenticate(
                message.token, action=Action.JOIN, client=self._client, visit=message.visit
            )
        except AuthenticationFailed as exc:
            raise FatalError(exc.code, exc.message) from None
        if principal.visit is None or principal.participant is None:
            await access.record(
                principal,
                Action.JOIN,
                message.visit,
                self._client,
                allowed=False,
                reason="token-not-a-link",
            )
            raise FatalError("token-not-a-link", "this token does not open a seat in a visit")
        if principal.visit != message.visit:
            await access.record(
                principal,
                Action.JOIN,
                message.visit,
                self._client,
                allowed=False,
                reason="token-visit-mismatch",
            )
            raise FatalError("token-visit-mismatch", "this link belongs to another visit")
        try:
            visit = await self._services.store.get(principal.visit)
        except VisitNotFound:
            await access.record(
                principal,
                Action.JOIN,
                message.visit,
                self._client,
                allowed=False,
                reason="visit-not-found",
            )
            raise FatalError("visit-not-found", "this visit does not exist") from None
        try:
            await access.authorize(principal, Action.JOIN, visit, client=self._client)
        except NotPermitted as exc:
            raise FatalError(exc.code, exc.message) from None
        if not visit.is_live:
            ended = "was cancelled" if visit.state is VisitState.CANCELLED else "has ended"
            raise FatalError("visit-closed", f"this visit {ended}")
        try:
            now = time.time()
            self._services.link_window.check_entry(visit, now)
            check_entry(
                visit, principal.participant, now=now, knock_pause=self._services.knock_pause
            )
        except EntryRefused as exc:
            await access.record(
                principal, Action.JOIN, message.visit, self._client, allowed=False, reason=exc.code
            )
            extra = {} if exc.retry_after is None else {"retry_after": round(exc.retry_after, 1)}
            raise FatalError(exc.code, exc.message, **extra) from None
        self.principal = principal
        self.seat = visit.seat(principal.participant)
        self.is_host = is_host_role(visit, self.seat.role)
        hub = self._hubs.hub(visit.id)
        async with hub.lock:
            self.hub = hub
            reconnect, waiting = await hub.enter(self, visit, self.seat)
            state = (await self._services.store.get(visit.id)).state
            joined: dict[str, Any] = {
                "visit": {
                    "id": visit.id,
                    "kind": visit.kind.value,
                    "state": state.value,
                    "started_at": hub.started_at,
                    "now": time.time(),
                },
                "you": self.describe(),
                "reconnect": reconnect,
                "waiting": waiting,
                "ice_servers": self._services.browser_ice_servers,
                # What this seat may publish: the page offers a share button only if allowed.
                "sources": sorted(self.sources),
            }
            if waiting:
                joined.update({"participants": [], "chat": [], "recv": {"audio": 0, "video": 0}})
            else:
                joined.update(hub.call_state(self.seat.participant))
            if self.is_host:
                joined["waiting_room"] = [hub.describe(p) for p in hub.waiting()]
                joined["outcomes"] = list(self._services.outcomes.outcomes)
                joined["barred"] = [visit.seats[p].to_dict() for p in sorted(visit.removed)]
            self._greet(down.Joined(**joined).wire())

    async def _dispatch(self, message: ClientMessage) -> None:
        assert self.hub is not None and self.seat is not None
        hub, seat = self.hub, self.seat
        if isinstance(message, Join):
            raise ProtocolError("already-joined", "this session has already joined")
        if isinstance(message, Ping):
            self.send(down.Pong(ref=message.ref).wire())
            return
        try:
            action = hub.call.check_message(seat.participant, TYPE_OF[type(message)])
        except CallRefused as exc:
            raise ProtocolError(exc.code, exc.message) from None
        if action is not None:
            await self._host_action(message, action)
            return
        if isinstance(message, Offer):
            try:
                answer = await hub.room.handle_offer(
                    seat.participant, message.sdp, message.sources, self.sources
                )
            except SourceForbidden as exc:
                raise ProtocolError("source-forbidden", str(exc)) from None
            except NegotiationFailed as exc:
                raise ProtocolError("negotiation-failed", str(exc)) from None
            peer = hub.room.peers[seat.participant]
            self.send(down.Answer(sdp=answer, tracks=peer.track_map()).wire())
            if peer.refused_candidates:
                self.send(refused_candidates_message(peer.refused_candidates, message.ref).wire())
        elif isinstance(message, MediaState):
            self.audio, self.video = message.audio, message.video
            hub.broadcast(
                down.MediaStateChanged(
                    participant=seat.participant, audio=self.audio, video=self.video
                ).wire(),
                exclude=seat.participant,
            )
        elif isinstance(message, Chat):
            hub.post_chat(seat, message.text)
        elif isinstance(message, Assisting):
            visit = await self._services.store.get(hub.visit_id)
            async with hub.lock:
                await hub.set_assisting(visit, seat, message.on)
        elif isinstance(message, MediaRestart):
            async with hub.lock:
                recv = await hub.restart_media(seat)
            self.send(down.MediaRestarted(recv=recv).wire())

    async def _host_action(self, message: ClientMessage, action: Action) -> None:
        """Actions only the visit's host may take; anyone else is refused and audited."""
        assert self.hub is not None and self.principal is not None and self.seat is not None
        hub = self.hub
        visit = await self._services.store.get(hub.visit_id)
        hub.check_fence(visit)
        try:
            await self._services.access.authorize(
                self.principal, action, visit, client=self._client
            )
        except NotPermitted as exc:
            raise ProtocolError("forbidden", exc.message) from None
        async with hub.lock:
            if isinstance(message, EndVisit):
                await hub.end_visit(visit)
            elif isinstance(message, Admit):
                await hub.admit(ParticipantId(message.participant))
            elif isinstance(message, AdmitAll):
                await hub.admit_all()
            elif isinstance(message, Decline):
                await hub.decline(ParticipantId(message.participant))
            elif isinstance(message, Remove):
                await hub.remove(ParticipantId(message.participant))
            elif isinstance(message, Readmit):
                await hub.readmit(ParticipantId(message.participant))
            elif isinstance(message, MuteRequest):
                hub.mute_request(ParticipantId(message.participant), self.seat.participant)
            elif isinstance(message, FallbackPhone):
                await hub.fallback_to_phone(self.seat)
            elif isinstance(message, RecordOutcome):
                try:
                    await self._services.outcomes.record_outcome(
                        hub.visit_id,
                        visit.org,
                        self.seat,
                        self.seat.role.value,
                        self.seat.sector.value,
                        message.outcome,
                        message.note,
                    )
                except OutcomeRejected as exc:
                    raise ProtocolError(exc.code, exc.message) from None
                except NotDurable:
                    raise ProtocolError(
                        "outcome-not-saved", "the outcome could not be saved; send it again"
                    ) from None
                # Acknowledged only once it is durable (committed, or fsync'd to the outbox):
                # it survives a crash from here on.
                self.send(down.OutcomeRecorded(outcome=message.outcome, ref=message.ref).wire())
