"""The staff console in headless Chromium against a real server process and a real OpenID
Connect provider of the test's own: sign in, book, copy a link, see a citizen start waiting
without a reload, cancel; a one-time sign-in link; another organisation sees nothing; CSRF."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import icalendar
import jwt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from signaling.errors import CLOSE_VISIT_ENDED
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_PRESENT, FLAGS
from tests.support.oidc_provider import OidcProvider, start_provider, write_trust_file
from tests.support.servers import RunningServer, cli, start_server

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SHOTS = Path("/work/shots/console")
NURSE = {
    "sub": "op-nurse-1",
    "name": "Nina Sygeplejerske",
    "role": "nurse",
    "sector": "municipality",
    "org": "kommune-101",
}
CITIZEN_NAME = "Inger Hansen"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider() -> AsyncIterator[OidcProvider]:
    started = await start_provider()
    yield started
    await started.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console_server(
    tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider
) -> AsyncIterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("console")
    trust = write_trust_file(tmp / "trust.json", provider.trust_entry())
    server = await start_server(tmp, env={"SCREENVISIT_TRUST_FILE": str(trust)})
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console_link_task(
    console_server: RunningServer,
) -> AsyncIterator[asyncio.Task[tuple[int, str, str]]]:
    """`screenvisit console-link`, started as soon as the server is up: the CLI's start-up
    runs while the first test drives the browser."""
    task = asyncio.create_task(
        cli(
            console_server,
            "console-link",
            "--role",
            "gp",
            "--org",
            "kommune-101",
            "--name",
            "Dr. Holm",
        )
    )
    yield task
    await task


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


async def signed_in(
    browser: Browser, server: RunningServer, provider: OidcProvider, user: dict[str, Any]
) -> tuple[BrowserContext, Page]:
    """A browser that signed in to the console at the test's identity provider as `user`."""
    provider.user = user
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = await context.new_page()
    await page.goto(server.base_url + "/console")
    await page.get_by_role("link", name=provider.iss).click()
    await page.wait_for_url(server.base_url + "/console")
    await page.locator("#live").filter(has_text="Opdateres løbende").wait_for(timeout=15_000)
    return context, page


async def csrf_of(page: Page) -> str:
    value = await page.locator("body").get_attribute("data-csrf")
    assert value
    return value


@pytest.mark.usefixtures("console_link_task")
async def test_a_nurse_signs_in_books_copies_sees_the_citizen_wait_and_cancels(
    browser: Browser, console_server: RunningServer, provider: OidcProvider
) -> None:
    context, page = await signed_in(browser, console_server, provider, NURSE)
    await page.get_by_role("heading", level=1).filter(has_text="Dagens videobesøg").wait_for()
    assert "Nina Sygeplejerske" in await page.locator("h1 .who").inner_text()

    # Book an assisted visit starting now, with the waiting room on.
    await page.get_by_label("Type").select_option("assisted")
    await page.locator("#book-start").fill(time.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("Navn (valgfrit) 1").fill(CITIZEN_NAME)
    await page.get_by_role("button", name="Book besøget").click()
    await page.locator("#status").filter(has_text="Besøget er booket.").wait_for()
    card = page.locator("li.visit").filter(has_text=CITIZEN_NAME)
    await card.wait_for(timeout=10_000)
    visit = await card.get_attribute("data-visit")
    assert visit

    # Copy the citizen's link.
    citizen_row = card.locator("ul.seats > li").filter(has_text=CITIZEN_NAME)
    await citizen_row.get_by_role("button", name="Kopiér link").click()
    await page.locator("#status").filter(has_text="Linket for Borger er kopieret.").wait_for()
    link = await page.evaluate("() => navigator.clipboard.readText()")
    assert link.startswith(f"{console_server.base_url}/v/{visit}#")

    # The QR code of that link.
    await citizen_row.get_by_role("button", name="QR-kode").click()
    qr = page.locator("#qr-image")
    await qr.wait_for()
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    assert await qr.get_attribute("alt") == "QR-kode med linket for Borger"
    await page.get_by_role("button", name="Luk").click()

    # The citizen opens the link (a signaling socket): the console shows them waiting, with
    # the chime, and without a reload.
    await page.evaluate("() => { window.notReloaded = true; }")
    token = link.split("#", 1)[1]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(console_server.base_url.replace("http", "ws") + "/ws") as ws,
    ):
        await ws.send_json({"type": "join", "token": token, "visit": visit})
        joined = await ws.receive_json(timeout=10)
        assert joined["type"] == "joined" and joined["waiting"] is True, joined
        await citizen_row.and_(page.locator("[data-status=waiting]")).wait_for(timeout=10_000)
        assert await page.evaluate("() => window.notReloaded === true")
        assert await page.evaluate("() => window.screenvisitConsole.chimes") >= 1
        arrival = page.locator("#arrival")
        assert "venter i venteværelset" in await arrival.inner_text()
        await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "console-1280x800.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(SHOTS / "console-390x844.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 800})

        # The .ics invite parses, and holds the citizen's link but no name.
        response = await page.request.get(
            f"{console_server.base_url}/console/visits/{visit}/invite.ics"
            f"?participant={link_participant(joined)}"
        )
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/calendar")
        text = await response.text()
        calendar = icalendar.Calendar.from_ical(text)
        events = [c for c in calendar.walk("VEVENT")]
        assert len(events) == 1
        assert str(events[0]["url"]).startswith(f"{console_server.base_url}/v/{visit}#")
        start, end = events[0].decoded("dtstart"), events[0].decoded("dtend")
        assert isinstance(start, datetime.datetime) and isinstance(end, datetime.datetime)
        assert end - start == datetime.timedelta(minutes=15)
        assert start.tzinfo is not None
        assert CITIZEN_NAME not in text and "Nina" not in text

        # Cancel: the card says so, and the waiting citizen is told.
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await card.get_by_role("button", name="Aflys").click()
        await page.locator(f"li.visit.state-cancelled[data-visit='{visit}']").wait_for(
            timeout=10_000
        )
        closing = await _until_closed(ws)
        assert closing == [{"type": "visit-ended", "reason": "cancelled"}, CLOSE_VISIT_ENDED]
    assert await page.evaluate("() => window.notReloaded === true")
    assert provider.refused == []
    await context.close()


def link_participant(joined: dict[str, Any]) -> str:
    you: str = joined["you"]["participant"]
    return you


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    seen: list[Any] = []
    async with asyncio.timeout(10):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                seen.append(json.loads(message.data))
    seen.append(ws.close_code)
    return seen


async def test_a_console_link_signs_in_once(
    browser: Browser,
    console_server: RunningServer,
    console_link_task: asyncio.Task[tuple[int, str, str]],
) -> None:
    code, out, err = await console_link_task
    assert code == 0, err
    link = out.strip()
    assert link.startswith(console_server.base_url + "/console#")
    first = await browser.new_context()
    page = await first.new_page()
    await page.goto(link)
    await page.locator("#live").filter(has_text="Opdateres løbende").wait_for(timeout=15_000)
    assert "Dr. Holm" in await page.locator("h1 .who").inner_text()
    assert "#" not in page.url
    second = await browser.new_context()
    again = await second.new_page()
    await again.goto(link)
    await again.locator("#signin-error").filter(has_text="allerede brugt").wait_for()
    await first.close()
    await second.close()


async def test_staff_of_another_organisation_see_nothing_and_csrf_is_required(
    browser: Browser, console_server: RunningServer, provider: OidcProvider
) -> None:
    nurse, page = await signed_in(browser, console_server, provider, NURSE)
    csrf = await csrf_of(page)
    api = console_server.base_url + "/api/visits"
    body = {
        "kind": "assisted",
        "participants": [
            {"role": "citizen", "name": CITIZEN_NAME},
            {"role": "nurse"},
            {"role": "gp"},
        ],
    }
    # Without the header, with a wrong one, or from another site: refused.
    for headers in (
        {},
        {"X-CSRF-Token": "wrong"},
        {"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    ):
        refused = await page.request.post(api, data=body, headers=headers)
        assert refused.status == 403, headers
        assert (await refused.json())["error"]["code"] == "csrf-failed"
    booked = await page.request.post(api, data=body, headers={"X-CSRF-Token": csrf})
    assert booked.status == 201
    visit = (await booked.json())["visit"]

    other_user = {**NURSE, "sub": "op-nurse-2", "name": "Other Nurse", "org": "kommune-202"}
    other, other_page = await signed_in(browser, console_server, provider, other_user)
    assert await other_page.locator("li.visit").count() == 0
    listing = await other_page.request.get(api)
    assert listing.status == 200 and (await listing.json())["visits"] == []
    one = await other_page.request.get(f"{api}/{visit}")
    assert one.status == 403
    ics = await other_page.request.get(
        f"{console_server.base_url}/console/visits/{visit}/invite.ics?participant=x"
    )
    assert ics.status == 403
    assert CITIZEN_NAME not in await other_page.content()
    # The first organisation's console has it, with the name.
    await (
        page.locator(f"li.visit[data-visit='{visit}']")
        .filter(has_text=CITIZEN_NAME)
        .wait_for(timeout=10_000)
    )
    # Join as host in one click: the nurse's own seat link opens the call page.
    joining = await nurse.new_page()
    await joining.goto(console_server.base_url + "/console")
    host_card = joining.locator(f"li.visit[data-visit='{visit}']")
    await host_card.get_by_role("button", name="Deltag som vært").click()
    await joining.wait_for_url(f"{console_server.base_url}/v/{visit}#*")
    seat = jwt.decode(joining.url.split("#", 1)[1], options={"verify_signature": False})
    assert seat["role"] == "nurse" and seat["visit"] == visit
    await joining.locator("#join").and_(joining.locator(":enabled")).wait_for(timeout=15_000)
    await joining.close()

    # Reschedule from the card: to tomorrow, where the live view then lists it.
    card = page.locator(f"li.visit[data-visit='{visit}']")
    tomorrow = time.strftime("%Y-%m-%dT10:30", time.localtime(time.time() + 86400))
    await card.get_by_label("Nyt tidspunkt").fill(tomorrow)
    await card.get_by_role("button", name="Flyt").click()
    await page.locator("#status").filter(has_text="Besøget er flyttet.").wait_for()
    await page.locator(f"#visits-upcoming li.visit[data-visit='{visit}']").wait_for(timeout=10_000)
    assert "10.30" in await page.locator(f"li.visit[data-visit='{visit}'] h4").inner_text()

    # Signing out ends the session: the cookie's token is revoked.
    cookie = next(c for c in await nurse.cookies() if c["name"] == "sv_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    await page.get_by_role("button", name="Log ud").click()
    await page.get_by_role("heading", name="Log ind på personalekonsollen").wait_for()
    async with (
        aiohttp.ClientSession() as http,
        http.get(api, headers={"Cookie": f"sv_console={cookie['value']}"}) as r,
    ):
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "token-revoked"
    await nurse.close()
    await other.close()


async def test_the_identity_provider_cannot_sign_in_staff_of_an_organisation_outside_its_orgs(
    browser: Browser, console_server: RunningServer, provider: OidcProvider
) -> None:
    provider.user = {**NURSE, "org": "praksis-7"}
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(console_server.base_url + "/console")
    await page.get_by_role("link", name=provider.iss).click()
    await page.locator("#signin-error").filter(has_text="ikke logge ind for din").wait_for()
    assert await page.locator("body[data-signed-in=no]").count() == 1
    assert "sv_console" not in {c["name"] for c in await context.cookies()}
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.screenshot(path=str(SHOTS / "signin-1280x800.png"))
    await page.get_by_role("button", name="English").click()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.locator("#signin-error").filter(has_text="may not sign in").wait_for()
    await page.screenshot(path=str(SHOTS / "signin-en-390x844.png"))
    await context.close()
    # Nothing personal reached the server's log in this module.
    log = await asyncio.to_thread(console_server.log.read_text)
    for name in (CITIZEN_NAME, "Nina", "Dr. Holm", "Other Nurse"):
        assert name not in log
