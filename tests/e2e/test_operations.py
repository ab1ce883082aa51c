"""What an operations team sees of one three-bot visit on a real server process: /metrics
(parsed with prometheus_client's parser) during the call, signed webhooks at a local receiver
(one redelivered after the receiver was down), and JSON log lines.

One server and one call for the whole module; each test asserts one face of it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dashboard import series_asked
from tests.support.servers import RunningServer, free_port, run_bot, start_server
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "whsec_" + base64.b64encode(b"screenvisit-test-webhook-secret!").decode()
ROLES = ("citizen", "nurse", "gp")
SECTORS = {"citizen": "citizen", "nurse": "municipality", "gp": "general-practice"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by its name and its labels (sorted)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@dataclass
class Scenario:
    server: RunningServer
    visit: dict[str, Any]
    receiver: WebhookReceiver
    metrics_url: str
    failed_before_receiver_up: float
    during: Samples
    after: Samples
    log: list[str]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200
        return parse(await response.text())


async def scrape_until(
    http: aiohttp.ClientSession, url: str, ready: Any, timeout: float = 45.0
) -> Samples:
    """Scrape until `ready(samples)`: the condition, not a fixed wait, ends it."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await scrape(http, url)
            if ready(samples):
                return samples
            await asyncio.sleep(0.1)


def token_of(link: str) -> str:
    return link.split("#", 1)[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scenario(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    tmp: Path = tmp_path_factory.mktemp("operations")
    receiver = WebhookReceiver(SECRET, free_port())  # down until the first delivery has failed
    metrics_port = free_port()
    server = await start_server(
        tmp,
        "--quality-interval",
        "1",
        "--departure-timeout",
        "1",
        env={
            "SCREENVISIT_METRICS_PORT": str(metrics_port),
            "SCREENVISIT_LOG_FORMAT": "json",
            "SCREENVISIT_WEBHOOK_URL": receiver.url,
            "SCREENVISIT_WEBHOOK_SECRET": SECRET,
            "SCREENVISIT_WEBHOOK_FIRST_RETRY": "0.2",
        },
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            visit = await server.create_visit()
            down = await scrape_until(
                http,
                metrics_url,
                lambda s: value(s, "screenvisit_webhook_failures_total", result="retrying") >= 1,
            )
            await receiver.start()
            await receiver.wait_for("visit.booked")

            def in_call(s: Samples) -> bool:
                return (
                    value(s, "screenvisit_visits_active") == 1
                    and value(s, "screenvisit_participants") == 3
                    and value(s, "screenvisit_forwarded_packets_total") > 200
                )

            extra = {"citizen": (), "nurse": (), "gp": ("--admit-all",)}
            bots = asyncio.gather(
                *(run_bot(visit["links"][role], 8, *extra[role]) for role in ROLES)
            )
            citizen = {"Authorization": f"Bearer {token_of(visit['links']['citizen'])}"}
            join_time = f"{server.base_url}/api/visits/{visit['visit']}/join-time"
            async with http.post(join_time, json={"seconds": 2.5}, headers=citizen) as r:
                assert r.status == 204
            async with http.post(join_time, json={"seconds": -1}, headers=citizen) as r:
                assert r.status == 400
            async with http.get(
                f"{server.base_url}/api/visits/{visit['visit']}/link",
                headers={"Authorization": "Bearer not-a-token"},
            ) as r:
                assert r.status == 401
            during = await scrape_until(http, metrics_url, in_call)
            reports = await bots
            assert all(report["exit_code"] == 0 for report in reports), reports
            host = {"Authorization": f"Bearer {token_of(visit['links']['gp'])}"}
            outcome = f"{server.base_url}/api/visits/{visit['visit']}/outcome"
            async with http.post(outcome, json={"outcome": "handled-remotely"}, headers=host) as r:
                assert r.status == 201, await r.text()
            await receiver.wait_for("visit.ended")
            await receiver.wait_for("outcome.recorded")
            # The receiver holds a message a moment before the server hears its answer.
            after = await scrape_until(
                http,
                metrics_url,
                lambda s: (
                    value(s, "screenvisit_webhook_deliveries_total") >= len(receiver.messages)
                ),
            )
        assert await server.stop() == 0
        log = server.log.read_text().splitlines()
        yield Scenario(
            server,
            visit,
            receiver,
            metrics_url,
            value(down, "screenvisit_webhook_failures_total", result="retrying"),
            during,
            after,
            log,
        )
    finally:
        await server.stop()
        await receiver.stop()


async def test_metrics_during_the_call_count_the_call_and_its_media(scenario: Scenario) -> None:
    during = scenario.during
    node_labels = {n: v for (name, labels), _ in during.items() for n, v in labels if n == "node"}
    assert node_labels, "every series carries the node label"
    assert value(during, "screenvisit_visits_active", worker="0") == 1
    for role in ROLES:
        people = value(during, "screenvisit_participants", role=role, sector=SECTORS[role])
        assert people == 1, role
    assert value(during, "screenvisit_waiting_participants") == 0
    packets = value(during, "screenvisit_forwarded_packets_total")
    assert value(during, "screenvisit_forwarded_bytes_total") > packets > 200
    assert value(during, "screenvisit_event_loop_lag_seconds_count") > 0
    assert value(during, "screenvisit_join_seconds_count") == 1
    assert value(during, "screenvisit_join_seconds_sum") == 2.5
    assert value(during, "screenvisit_auth_refusals_total", reason="token-malformed") >= 1
    for name in ("nacks_sent", "retransmissions", "plis_sent", "plis_received"):
        assert ("screenvisit_" + name + "_total") in {n for n, _ in during}, name
    # The bots asked for keyframes as they joined: forwarded video needs them.
    assert value(during, "screenvisit_plis_sent_total") >= 1


async def test_every_series_the_dashboard_and_alerts_ask_for_has_samples_in_the_call(
    scenario: Scenario,
) -> None:
    """docker/'s Grafana panels and Prometheus alerts draw something during a real call: each
    series they query is in the scrape, with samples (not only its HELP and TYPE lines)."""
    sampled = {name for name, _labels in scenario.during}
    asked = series_asked()
    assert len(asked) >= 10
    assert asked <= sampled, sorted(asked - sampled)


async def test_metrics_after_the_call_keep_the_totals(scenario: Scenario) -> None:
    during, after = scenario.during, scenario.after
    assert value(after, "screenvisit_visits_active") == 0
    assert value(after, "screenvisit_participants") == 0
    # Counters never go back when the peers that counted are gone.
    for name in ("screenvisit_forwarded_packets_total", "screenvisit_forwarded_bytes_total"):
        assert value(after, name) >= value(during, name) > 0
    assert value(after, "screenvisit_webhook_deliveries_total") == len(scenario.receiver.messages)


async def test_webhooks_are_signed_complete_and_delivered_once(scenario: Scenario) -> None:
    receiver, visit_id = scenario.receiver, scenario.visit["visit"]
    assert receiver.refused == 0
    # The first attempt failed while the receiver was down; it came when it was up, once.
    assert scenario.failed_before_receiver_up >= 1
    assert set(receiver.deliveries.values()) == {1}
    counts = {
        kind: len(receiver.of_type(kind))
        for kind in (
            "visit.booked",
            "participant.waiting",
            "participant.admitted",
            "participant.joined",
            "visit.started",
            "participant.left",
            "visit.ended",
            "outcome.recorded",
        )
    }
    assert counts == {
        "visit.booked": 1,
        "participant.waiting": 2,
        "participant.admitted": 2,
        "participant.joined": 3,
        "visit.started": 1,
        "participant.left": 3,
        "visit.ended": 1,
        "outcome.recorded": 1,
    }
    for message in receiver.messages.values():
        assert message["data"]["visit"] == visit_id
        assert "name" not in json.dumps(message)
    joined = {m["data"]["role"]: m["data"] for m in receiver.of_type("participant.joined")}
    assert {role: data["sector"] for role, data in joined.items()} == SECTORS
    assert receiver.of_type("visit.ended")[0]["data"]["reason"] == "everyone-left"
    assert receiver.of_type("outcome.recorded")[0]["data"]["outcome"] == "handled-remotely"


async def test_logs_are_json_lines_with_one_per_transition_and_no_secrets(
    scenario: Scenario,
) -> None:
    lines = [json.loads(line) for line in scenario.log if line.strip()]
    assert len(lines) == len([line for line in scenario.log if line.strip()])
    visit_id = scenario.visit["visit"]
    lifecycle = [line for line in lines if line.get("logger") == "screenvisit.lifecycle"]
    names = [line["event"] for line in lifecycle]
    assert names.count("visit.booked") == 1
    assert names.count("participant.joined") == 3
    assert names.count("participant.left") == 3
    ended = [line for line in lifecycle if line["event"] == "visit.ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "everyone-left"
    joined = [line for line in lifecycle if line["event"] == "participant.joined"]
    assert {line["role"] for line in joined} == set(ROLES)
    assert all(line["visit"] == visit_id and line["participant"] for line in joined)
    access = [line for line in lines if line.get("logger") == "aiohttp.access"]
    assert any("/join-time" in line.get("first_request_line", "") for line in access)
    text = "\n".join(scenario.log)
    for link in scenario.visit["links"].values():
        assert token_of(link) not in text
    assert SECRET not in text
