"""Who may show what (roles' defaults and the token's `sources` grant), how an offer names its
sources, and what the evaluation keeps of a share: who (role) and how long, never what."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.sources import SOURCES as MEDIA_SOURCES
from rooms.errors import AuthenticationFailed
from rooms.evaluation import SharedContent, summarize
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.policy import DEFAULT_SOURCES, SOURCES, publish_sources
from rooms.principal import Principal
from rooms.roles import PARTICIPANT_ROLES, Role, Sector
from server.auth import TokenIssuer, TokenVerifier
from server.keys import load_or_create_signing_key
from signaling.errors import ProtocolError
from signaling.messages import OFFER_SOURCES, Offer, parse_client_message
from tests.test_auth import citizen_token


def test_staff_may_share_a_screen_and_everyone_may_add_a_second_camera() -> None:
    assert set(SOURCES) == set(MEDIA_SOURCES) == OFFER_SOURCES
    for role in PARTICIPANT_ROLES:
        allowed = DEFAULT_SOURCES[role]
        assert {"microphone", "camera", "camera2"} <= allowed
        assert ("screen" in allowed) == (role in (Role.NURSE, Role.GP, Role.SPECIALIST))


def test_the_tokens_grant_decides_when_it_says() -> None:
    nurse = Principal("s", "i", Role.NURSE, Sector.MUNICIPALITY)
    assert "screen" in publish_sources(nurse)
    narrowed = Principal("s", "i", Role.NURSE, Sector.MUNICIPALITY, sources=frozenset({"camera"}))
    assert publish_sources(narrowed) == {"camera"}
    citizen = Principal("s", "i", Role.CITIZEN, Sector.CITIZEN, sources=frozenset({"screen"}))
    assert publish_sources(citizen) == {"screen"}  # an issuer may let a citizen show a letter


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer("iss", "screenvisit", load_or_create_signing_key(tmp_path / "k.pem"))


async def test_a_sources_claim_becomes_the_principals_grant(issuer: TokenIssuer) -> None:
    verifier = TokenVerifier("screenvisit")
    verifier.add_issuer(issuer.trusted())
    principal = await verifier.authenticate(citizen_token(issuer, sources=["camera", "screen"]))
    assert principal.sources == {"camera", "screen"}
    assert (await verifier.authenticate(citizen_token(issuer))).sources is None
    for bad in (["camera", "hologram"], "screen", [1]):
        with pytest.raises(AuthenticationFailed) as refused:
            await verifier.authenticate(citizen_token(issuer, sources=bad))
        assert refused.value.code == "token-invalid"


def test_an_offer_names_its_sources_by_mid() -> None:
    message = parse_client_message('{"type": "offer", "sdp": "v=0", "sources": {"3": "screen"}}')
    assert isinstance(message, Offer) and message.sources == {"3": "screen"}
    assert parse_client_message('{"type": "offer", "sdp": "v=0"}') == Offer(sdp="v=0")
    for raw, code in (
        ('{"type": "offer", "sdp": "v=0", "sources": {"3": "hologram"}}', "unknown-source"),
        ('{"type": "offer", "sdp": "v=0", "sources": {"3": 1}}', "invalid-field"),
        ('{"type": "offer", "sdp": "v=0", "sources": ["screen"]}', "invalid-field"),
    ):
        with pytest.raises(ProtocolError) as refused:
            parse_client_message(raw)
        assert refused.value.code == code


def share_event(kind: EventKind, t: float, who: str, role: str, **data: object) -> VisitEvent:
    return VisitEvent(VisitId("v-1"), kind, ParticipantId(who), role=role, data=dict(data), time=t)


def test_the_evaluation_keeps_who_shared_and_how_long_never_what() -> None:
    events = [
        VisitEvent(VisitId("v-1"), EventKind.VISIT_CREATED, data={"kind": "conference"}, time=0),
        share_event(EventKind.PARTICIPANT_JOINED, 10, "p-s", "specialist"),
        share_event(EventKind.CONTENT_SHARE_STARTED, 20, "p-s", "specialist", source="screen"),
        share_event(
            EventKind.CONTENT_SHARE_STOPPED, 80, "p-s", "specialist", source="screen", seconds=60
        ),
        share_event(EventKind.CONTENT_SHARE_STARTED, 100, "p-s", "specialist", source="screen"),
        share_event(EventKind.PARTICIPANT_JOINED, 11, "p-n", "nurse"),
        share_event(EventKind.CONTENT_SHARE_STARTED, 150, "p-n", "nurse", source="camera2"),
        # Still showing at the end: counted up to it.
        VisitEvent(VisitId("v-1"), EventKind.VISIT_ENDED, data={"reason": "host"}, time=200),
    ]
    summary = summarize("v-1", events)
    assert summary.content_shared == [
        SharedContent("nurse", "camera2", 1, 50.0),
        SharedContent("specialist", "screen", 2, 160.0),
    ]
