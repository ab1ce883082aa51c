"""The host's page lets a removed participant in again (headless Chromium, Danish texts)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.test_browser import browser, module_chromium, open_link
from tests.support.servers import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
__all__ = ["browser", "module_chromium"]


async def test_the_gp_removes_a_citizen_who_stays_out_until_let_in_again(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    gp = await open_link(browser, visit["links"]["gp"])
    citizen = await open_link(browser, visit["links"]["citizen"])
    tile = gp.locator(".tile.remote").filter(has_text="Borger")
    await tile.wait_for()
    await tile.get_by_role("button", name="Fjern").click()
    await gp.get_by_role("dialog", name="Fjern Borger?").get_by_role("button", name="Fjern").click()
    await citizen.get_by_text("Lægen har fjernet dig fra besøget.").wait_for()
    barred = gp.get_by_role("list", name="Fjernet fra besøget")
    await barred.get_by_text("Borger").wait_for()

    fresh = await open_link(browser, visit["links"]["citizen"])
    # A fresh tab of the same link gets the same full-page state, not the call.
    await fresh.get_by_text("Lægen har fjernet dig fra besøget.").wait_for()

    await barred.get_by_role("button", name="Lad komme ind igen").click()
    await barred.wait_for(state="hidden")
    again = await open_link(browser, visit["links"]["citizen"])
    await tile.wait_for()
    await again.locator("#call").wait_for()
