"""The join page and a link's opening hours, in headless Chromium on a phone and a laptop:
before the window it says when the visit opens and opens it by itself at that time, with one
timer and no reload; after the window it says the visit is over."""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from rooms.roles import Role
from rooms.visit import VisitKind
from server.app import create_app
from server.config import Settings
from server.visits import book_visit, invite_links
from tests.conftest import host_principal
from tests.e2e.test_browser import browser, module_chromium

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
__all__ = ["browser", "module_chromium"]

SHOTS = Path("/work/shots/fhir")
ZONE = "Europe/Copenhagen"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


@pytest_asyncio.fixture(loop_scope="module")
async def web_server(tmp_path: Path) -> AsyncIterator[TestServer]:
    settings = Settings(data_dir=tmp_path / "data", ice_hosts=("127.0.0.1",))
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def link_at(server: TestServer, start: float) -> str:
    """The citizen's link of a visit planned at `start` (30 minutes, default window)."""
    seats = [(Role.CITIZEN, None, None), (Role.GP, None, None)]
    visit = await book_visit(
        server.app,
        host_principal(),
        VisitKind.CONSULTATION,
        seats,
        planned_start=start,
        planned_minutes=30,
    )
    url = next(e["url"] for e in invite_links(server.app, visit) if e["role"] == "citizen")
    return str(server.make_url(f"/v/{visit.id}")) + "#" + url.split("#", 1)[1]


async def open_page(browser: Browser, link: str, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, timezone_id=ZONE)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(link)
    return page


def clock(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, ZoneInfo(ZONE)).strftime("%H:%M")


async def shoot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / name), full_page=True)


async def test_before_its_window_the_page_says_when_and_opens_by_itself(
    web_server: TestServer, browser: Browser
) -> None:
    opens_at = time.time() + 5
    link = await link_at(web_server, opens_at + 15 * 60)
    page = await open_page(browser, link, PHONE)
    checks: list[str] = []
    page.on("request", lambda r: checks.append(r.url) if r.url.endswith("/link") else None)
    title = page.locator("#end-title")
    await title.wait_for(state="visible")
    assert await title.text_content() == "Besøget er ikke åbnet endnu"
    assert await page.locator("#end-what").text_content() == (
        f"Besøget åbner kl. {clock(opens_at)}."
    )
    assert await page.get_by_role("button", name="Deltag", exact=True).is_hidden()
    await shoot(page, "opens-at-390x844.png")
    await page.evaluate("window.samePage = true")
    await page.set_viewport_size(LAPTOP)  # type: ignore[arg-type]
    await shoot(page, "opens-at-1280x800.png")
    # At the opening time the page opens the visit by itself: no reload, one more check.
    join = page.get_by_role("button", name="Deltag", exact=True)
    await join.wait_for(state="visible", timeout=20_000)
    await page.wait_for_function("() => !document.getElementById('join').disabled")
    assert await page.evaluate("window.samePage") is True
    assert len(checks) == 1, checks
    assert time.time() >= opens_at
    await shoot(page, "opened-1280x800.png")
    await page.context.close()


async def test_another_day_another_language_and_after_the_window(
    web_server: TestServer, browser: Browser
) -> None:
    """One browser for the other texts: a day ahead the page names the day; English says the
    opening time too; after the window the visit is over (Danish and English)."""
    start = time.time() + 2 * 86400
    page = await open_page(browser, await link_at(web_server, start), LAPTOP)
    what = page.locator("#end-what")
    await what.wait_for(state="visible")
    text = await what.text_content()
    assert text is not None and text.startswith("Besøget åbner ")
    assert text.endswith(f" kl. {clock(start - 15 * 60)}.")
    await shoot(page, "opens-another-day-1280x800.png")
    await page.context.close()

    start = time.time() + 3600
    link = await link_at(web_server, start)
    page = await open_page(browser, link.replace("#", "?lang=en#"), PHONE)
    what = page.locator("#end-what")
    await what.wait_for(state="visible")
    assert await what.text_content() == f"The visit opens at {clock(start - 15 * 60)}."
    await shoot(page, "opens-at-en-390x844.png")
    await page.context.close()

    link = await link_at(web_server, time.time() - 3 * 3600)
    for viewport, lang, title in (
        (PHONE, "da", "Besøget er slut"),
        (LAPTOP, "da", "Besøget er slut"),
        (PHONE, "en", "The visit is over"),
    ):
        page = await open_page(browser, link.replace("#", f"?lang={lang}#"), viewport)
        heading = page.locator("#end-title")
        await heading.wait_for(state="visible")
        assert await heading.text_content() == title
        await shoot(page, f"over-{lang}-{viewport['width']}x{viewport['height']}.png")
        await page.context.close()
