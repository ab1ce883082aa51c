"""The webhook delivery queue (migration 8) on SQLite and PostgreSQL: queued once per message
and endpoint, claimed under a lease, retried, given up, purged; and the mapping from events."""

from __future__ import annotations

import pytest

from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.sql import Database
from rooms.webhook_queue import Outgoing, SqlWebhookQueue
from server.webhooks import LONGEST_RETRY_SECONDS, message_for, retry_delay
from tests.sqlbackends import backend, database  # noqa: F401

NOW = 1_800_000_000.0


def outgoing(message: str, url: str = "http://127.0.0.1:9/hooks") -> Outgoing:
    return Outgoing(message, url, "visit.booked", '{"type":"visit.booked"}', NOW)


async def test_a_message_queued_twice_is_one_delivery_per_endpoint(database: Database) -> None:  # noqa: F811
    queue = SqlWebhookQueue(database)
    await queue.enqueue([outgoing("msg_a"), outgoing("msg_a", "http://127.0.0.1:9/b")], NOW)
    await queue.enqueue([outgoing("msg_a")], NOW)  # a replay from the outbox
    assert await queue.counts() == {"pending": 2}
    claimed = await queue.claim(NOW, lease=30, limit=10)
    assert [(c.message, c.url, c.attempts) for c in claimed] == [
        ("msg_a", "http://127.0.0.1:9/hooks", 1),
        ("msg_a", "http://127.0.0.1:9/b", 1),
    ]


async def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(database: Database) -> None:  # noqa: F811
    queue = SqlWebhookQueue(database)
    await queue.enqueue([outgoing("msg_a"), outgoing("msg_b")], NOW)
    first = await queue.claim(NOW, lease=30, limit=1)
    assert [c.message for c in first] == ["msg_a"]
    second = await queue.claim(NOW, lease=30, limit=10)
    assert [c.message for c in second] == ["msg_b"]
    assert await queue.claim(NOW + 29, lease=30, limit=10) == []
    again = await queue.claim(NOW + 31, lease=30, limit=10)
    assert [(c.message, c.attempts) for c in again] == [("msg_a", 2), ("msg_b", 2)]


async def test_retry_delivered_and_given_up_rows(database: Database) -> None:  # noqa: F811
    queue = SqlWebhookQueue(database)
    await queue.enqueue([outgoing("msg_a"), outgoing("msg_b"), outgoing("msg_c")], NOW)
    a, b, c = await queue.claim(NOW, lease=30, limit=10)
    await queue.delivered(a.id, NOW + 1)
    await queue.retry(b.id, NOW + 5, "HTTP 503")
    await queue.give_up(c.id, NOW + 1, "ClientConnectorError")
    assert await queue.counts() == {"delivered": 1, "pending": 1, "failed": 1}
    assert await queue.next_due() == NOW + 5
    assert await queue.claim(NOW + 4, lease=30, limit=10) == []
    assert [r.message for r in await queue.claim(NOW + 5, lease=30, limit=10)] == ["msg_b"]
    rows = await database.fetch(
        "SELECT message, last_error FROM webhook_deliveries WHERE state = 'failed'"
    )
    assert rows == [("msg_c", "ClientConnectorError")]
    await queue.purge(NOW + 2)
    assert await queue.counts() == {"pending": 1}


def test_retries_double_up_to_an_hour() -> None:
    delays = [retry_delay(n, first=5) for n in range(1, 14)]
    assert 5 <= delays[0] <= 5.5 and 10 <= delays[1] <= 11
    assert all(d <= LONGEST_RETRY_SECONDS * 1.1 for d in delays)
    assert delays[-1] >= LONGEST_RETRY_SECONDS


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        (EventKind.VISIT_ENDED, {"reason": "host"}, "visit.ended"),
        (EventKind.PARTICIPANT_RECONNECTING, {"reason": "socket-closed"}, "participant.cut_off"),
        (EventKind.PARTICIPANT_RECONNECTING, {}, None),  # taken over by another node
        (EventKind.MEDIA_FIRST_FRAME, {}, None),
    ],
)
def test_events_map_to_webhook_types_with_ids_and_codes_only(
    kind: EventKind, data: dict[str, object], expected: str | None
) -> None:
    event = VisitEvent(
        VisitId("v-1"),
        kind,
        participant=ParticipantId("p-1"),
        role="citizen",
        sector="citizen",
        org="demo",
        data={**data, "name": "never sent"},
        time=NOW,
    )
    message = message_for(event)
    if expected is None:
        assert message is None
        return
    assert message is not None
    kind_name, payload = message
    assert kind_name == expected == payload["type"]
    assert payload["data"]["participant"] == "p-1"
    assert "name" not in payload["data"]
    assert payload["timestamp"] == "2027-01-15T08:00:00Z"
