"""WCAG 2.1 AA on every page, as axe-core (npm `axe-core`, installed by `.ci/run` into
tests/a11y) finds it in Debian's Chromium, at a phone's and a laptop's size: the start page, the
join page before Deltag (and its help when the camera is refused), the waiting room, the call
(with the host's confirmations open), each end state (a server that went away included), the
staff console and its sign-in page, and the evaluators' report with and without a token.

axe is injected into the page for the check only (the context bypasses the pages' CSP, which
would refuse a script the page did not load itself)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from rooms.roles import Role, Sector
from server.auth import TokenIssuer
from server.console_session import sign_link
from server.keys import load_or_create_signing_key
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_PRESENT, FLAGS
from tests.support.servers import RunningServer, start_server

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

AXE = Path(__file__).parents[1] / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS: dict[str, ViewportSize] = {
    "phone": {"width": 390, "height": 844},
    "laptop": {"width": 1280, "height": 800},
}

#: The WCAG 2.0 and 2.1 A and AA rules; each violation as rule, impact and the first elements.
RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  });
  return result.violations.map((v) => ({
    rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' ')),
  }));
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path_factory.mktemp("a11y"))
    yield running
    await running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/a11y` (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


def evaluator_token(server: RunningServer) -> str:
    key = load_or_create_signing_key(server.data_dir / "signing-key.pem")
    issuer = TokenIssuer("screenvisit-local", "screenvisit", key)
    return issuer.sign(
        sub="evaluator-a11y", role=Role.EVALUATOR, sector=Sector.REGION, lifetime=600, org="demo"
    )


async def api(server: RunningServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.staff_token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.base_url}{path}", json=body, headers=headers) as response,
    ):
        data: dict[str, Any] = await response.json()
        assert response.status < 300, data
        return data


async def page_at(browser: Browser, size: str) -> Page:
    context = await browser.new_context(viewport=VIEWPORTS[size], bypass_csp=True)
    return await context.new_page()


async def violations(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(RUN_AXE)
    return found


async def assert_accessible(page: Page, where: str) -> None:
    found = await violations(page)
    assert found == [], f"{where}: " + json.dumps(found, indent=1, ensure_ascii=False)


async def open_host_panel(page: Page, open_: bool = True) -> None:
    """On a narrow screen the waiting room is a drawer: open (or close) it, as the host would."""
    toggle = page.locator("#side-toggle")
    if (
        await toggle.is_visible()
        and (await toggle.get_attribute("aria-expanded") == "true") != open_
    ):
        await toggle.click()


#: getUserMedia refused for the camera, as a person refuses it in the prompt.
REFUSE_CAMERA = """() => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => constraints.video
    ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))
    : original(constraints);
}"""


async def in_call(page: Page) -> None:
    await page.wait_for_function(
        "() => window.screenvisit.pc && window.screenvisit.pc.connectionState === 'connected'",
        timeout=30_000,
    )


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_the_start_page_and_the_join_page_before_deltag(
    server: RunningServer, browser: Browser, size: str
) -> None:
    page = await page_at(browser, size)
    await page.goto(server.base_url + "/")
    await assert_accessible(page, "start page")
    # The check can fail: an image without a text alternative is reported.
    await page.evaluate("document.querySelector('main').append(document.createElement('img'))")
    assert "image-alt" in [v["rule"] for v in await violations(page)]

    visit = await server.create_visit()
    await page.goto(visit["links"]["citizen"])
    await page.get_by_role("button", name="Deltag", exact=True).wait_for()
    await assert_accessible(page, "join page (da)")
    await page.get_by_role("button", name="English").click()
    await page.get_by_role("button", name="Join", exact=True).wait_for()
    await assert_accessible(page, "join page (en)")
    await page.context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_the_waiting_room_and_the_call_with_a_confirmation_open(
    server: RunningServer, browser: Browser, size: str
) -> None:
    visit = await server.create_visit()
    gp = await page_at(browser, size)
    await gp.goto(visit["links"]["gp"])
    await gp.get_by_role("button", name="Deltag", exact=True).click()
    await in_call(gp)
    await assert_accessible(gp, "call, host alone")

    citizen = await page_at(browser, size)
    await citizen.goto(visit["links"]["citizen"])
    await citizen.get_by_role("button", name="Deltag", exact=True).click()
    await citizen.get_by_text("Du er i venteværelset").wait_for()
    await assert_accessible(citizen, "waiting room")
    await open_host_panel(gp)
    await gp.get_by_role("button", name="Luk ind").wait_for()
    await assert_accessible(gp, "call, someone waiting")

    await gp.get_by_role("button", name="Luk ind").click()
    await in_call(citizen)
    await citizen.locator(".tile.remote video").first.wait_for()
    await assert_accessible(citizen, "call, citizen")
    await gp.locator("#end").click()
    await gp.get_by_role("dialog").wait_for()
    await assert_accessible(gp, "call, end-for-everyone confirmation")
    await gp.get_by_role("dialog").get_by_role("button", name="Afslut for alle").click()
    await citizen.get_by_text("Besøget er afsluttet").wait_for()
    await assert_accessible(citizen, "end state: visit ended")
    await gp.context.close()
    await citizen.context.close()


async def end_state(page: Page, title: str) -> None:
    await page.get_by_role("heading", name=title).wait_for(timeout=30_000)


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_each_end_state(server: RunningServer, browser: Browser, size: str) -> None:
    visit = await server.create_visit("--relative")
    page = await page_at(browser, size)

    forged = visit["links"]["citizen"][:-6] + "AAAAAA"
    await page.goto(forged)
    await page.get_by_role("heading").first.wait_for()
    await assert_accessible(page, "end state: forged link")

    later = await api(
        server,
        "/api/visits",
        {
            "participants": [{"role": "citizen"}, {"role": "gp"}],
            "planned_start": time.time() + 3 * 3600,
        },
    )
    await page.goto(later["links"]["citizen"])
    await end_state(page, "Besøget er ikke åbnet endnu")
    await assert_accessible(page, "end state: not yet open")

    cancelled = await server.create_visit()
    await api(server, f"/api/visits/{cancelled['visit']}/cancel", {})
    await page.goto(cancelled["links"]["citizen"])
    await end_state(page, "Besøget er aflyst")
    await assert_accessible(page, "end state: cancelled")

    # Declined in the waiting room, and removed from the call.
    gp = await page_at(browser, size)
    await gp.goto(visit["links"]["gp"])
    await gp.get_by_role("button", name="Deltag", exact=True).click()
    await in_call(gp)
    await page.goto(visit["links"]["relative"])
    await page.get_by_role("button", name="Deltag", exact=True).click()
    await page.get_by_text("Du er i venteværelset").wait_for()
    await open_host_panel(gp)
    await gp.get_by_role("button", name="Afvis").click()
    await end_state(page, "Du blev ikke lukket ind")
    await assert_accessible(page, "end state: declined")

    citizen = await page_at(browser, size)
    await citizen.goto(visit["links"]["citizen"])
    await citizen.get_by_role("button", name="Deltag", exact=True).click()
    await citizen.get_by_text("Du er i venteværelset").wait_for()
    await open_host_panel(gp)
    await gp.get_by_role("button", name="Luk ind").click()
    await in_call(citizen)
    await open_host_panel(gp, False)
    await gp.locator(".tile.remote .remove").click()
    confirm = gp.get_by_role("dialog", name="Fjern Borger?")
    await confirm.wait_for()
    await assert_accessible(gp, "call, remove confirmation")
    await confirm.get_by_role("button", name="Fjern").click()
    await end_state(citizen, "Du er ikke længere med i besøget")
    await assert_accessible(citizen, "end state: removed")
    for context in (page.context, gp.context, citizen.context):
        await context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_the_evaluation_report(server: RunningServer, browser: Browser, size: str) -> None:
    page = await page_at(browser, size)
    await page.goto(server.base_url + "/evaluation")
    await page.get_by_role("heading").first.wait_for()
    await assert_accessible(page, "evaluation page without a token")

    await page.context.close()
    token = evaluator_token(server)
    page = await page_at(browser, size)  # a new page: a changed fragment alone loads nothing
    await page.goto(f"{server.base_url}/evaluation#{token}")
    await page.get_by_role("heading", level=1).wait_for()
    # The report is built in a worker process: its first start takes a while on a busy machine.
    await page.wait_for_function("() => window.screenvisitReport.loaded", timeout=90_000)
    assert await page.locator("#eval-error").is_hidden()
    await assert_accessible(page, "evaluation report")
    await page.context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_the_pre_call_help_for_a_refused_camera(
    server: RunningServer, browser: Browser, size: str
) -> None:
    visit = await server.create_visit()
    page = await page_at(browser, size)
    await page.context.add_init_script(f"({REFUSE_CAMERA})()")
    await page.goto(visit["links"]["citizen"])
    await page.get_by_role("button", name="Deltag", exact=True).wait_for()
    await page.get_by_role("button", name="Prøv kamera og mikrofon igen").wait_for()
    await assert_accessible(page, "join page, camera refused (help and retry)")
    await page.context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
async def test_the_staff_console_and_its_sign_in_page(
    server: RunningServer, browser: Browser, size: str
) -> None:
    page = await page_at(browser, size)
    await page.goto(server.base_url + "/console")
    await page.get_by_role("heading").first.wait_for()
    await assert_accessible(page, "console sign-in page")
    key = load_or_create_signing_key(server.data_dir / "signing-key.pem")
    link = sign_link(
        TokenIssuer("screenvisit-local", "screenvisit", key),
        role=Role.NURSE,
        org="demo",
        name=None,
        sector=Sector.MUNICIPALITY,
    )
    await page.context.close()
    page = await page_at(browser, size)  # a new page: a changed fragment alone loads nothing
    await page.goto(f"{server.base_url}/console#{link}")
    await page.locator("#live").filter(has_text="Opdateres løbende").wait_for(timeout=15_000)
    await assert_accessible(page, "staff console")
    await page.context.close()


async def test_the_end_state_of_a_server_that_went_away(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = await start_server(tmp_path_factory.mktemp("a11y-gone"))
    try:
        visit = await own.create_visit("--no-waiting-room")
        pages = []
        for size in VIEWPORTS:
            page = await page_at(browser, size)
            await page.goto(visit["links"]["gp" if size == "laptop" else "citizen"])
            await page.get_by_role("button", name="Deltag", exact=True).click()
            await in_call(page)
            pages.append(page)
    finally:
        await own.stop()
    for page in pages:
        await end_state(page, "Ingen forbindelse til serveren")
        await assert_accessible(page, f"end state: server gone ({page.viewport_size})")
        await page.context.close()
