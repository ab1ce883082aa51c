"""The host's outcome form says "saved" only once the server has said the outcome is durable.

A real fault: SQLite and its outbox share a tiny tmpfs (the default: the outbox lives in the data
folder), which the test fills while the GP's page is in the visit. Neither can keep the outcome,
so the page must say it is not saved and keep trying; once the disk has room again, it is saved,
and only then does the visit end. Screenshots at phone and laptop size go to the test's folder.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize

from rooms.quality_log import OutcomeStore
from rooms.sql import open_database
from tests.e2e.test_browser import browser, module_chromium, open_link  # noqa: F401
from tests.faults.test_database_outage import fill, server_env, tiny_tmpfs, wait_healthy
from tests.support.servers import start_server

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SIZES: dict[str, ViewportSize] = {
    "phone": {"width": 390, "height": 844},
    "laptop": {"width": 1280, "height": 800},
}


async def shoot(page: Page, folder: Path, name: str) -> None:
    for size, viewport in SIZES.items():
        await page.set_viewport_size(viewport)
        path = folder / f"{name}-{size}.png"
        await page.screenshot(path=str(path))
    await page.set_viewport_size(SIZES["laptop"])


async def outcome_state(page: Page) -> str:
    state = await page.locator("#outcome-status").get_attribute("data-state")
    return state or ""


async def test_the_outcome_is_saved_only_when_the_server_says_so(
    tmp_path: Path,
    browser: Browser,  # noqa: F811
) -> None:
    with tiny_tmpfs(tmp_path / "data", "4m") as data:
        server = await start_server(tmp_path, env=server_env({}))
        filler: Path | None = None
        try:
            visit = await server.create_visit("--no-waiting-room")
            gp = await open_link(browser, visit["links"]["gp"])
            await gp.locator("#end").wait_for(state="visible", timeout=20_000)

            filler = await asyncio.to_thread(fill, data)
            await gp.locator("#end").click()
            dialog = gp.get_by_role("dialog")
            await dialog.get_by_label("Indlæggelse undgået").check()
            await dialog.get_by_role("button", name="Afslut for alle").click()
            await dialog.get_by_text("Udfaldet er ikke gemt endnu").wait_for(timeout=20_000)
            # Neither the database nor the outbox took it: the page never said "saved", the
            # visit goes on, and the page keeps trying.
            assert await gp.locator("#outcome-saved").is_hidden()
            assert await outcome_state(gp) != "outcomeSaved"
            await shoot(gp, tmp_path, "outcome-not-saved")
            attempts = await gp.evaluate("window.screenvisit.outcome.attempts")
            deadline = time.monotonic() + 20
            while await gp.evaluate("window.screenvisit.outcome.attempts") <= attempts:
                assert time.monotonic() < deadline, "the page stopped trying"
                await asyncio.sleep(0.2)
            assert await gp.get_by_text("Besøget er afsluttet").is_hidden()

            filler.unlink()
            filler = None
            await gp.get_by_text("Besøget er afsluttet").wait_for(timeout=30_000)
            assert await gp.locator("#outcome-saved").is_visible()
            await shoot(gp, tmp_path, "outcome-saved")

            await wait_healthy(server)
            db = await open_database(None, server.data_dir / "metadata.sqlite3")
            try:
                saved = await OutcomeStore(db).for_visits([visit["visit"]])
            finally:
                await db.close()
            assert saved[visit["visit"]][0] == "admission-avoided"
            assert "Traceback" not in server.log.read_text()
        finally:
            if filler is not None:
                filler.unlink()
            await server.stop()
