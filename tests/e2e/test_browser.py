"""Headless Chromium opens the three links of a visit, as the citizen, the nurse and the GP do.

Uses Debian's chromium driven by Playwright, fake camera and microphone, loopback only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from rooms.roles import Role, Sector
from server.auth import TokenIssuer
from server.keys import load_or_create_signing_key
from tests.support.servers import RunningServer, start_server

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_PRESENT = Path(CHROMIUM).exists()
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]

TWO_REMOTE_VIDEOS_PLAYING = """(minFrames) => {
  const videos = [...document.querySelectorAll('.tile.remote video')];
  return videos.length === 2 && videos.every(v => v.videoWidth > 0 && !v.paused
    && v.getVideoPlaybackQuality().totalVideoFrames > minFrames);
}"""

REMOTE_AUDIO_LIVE = """() => [...document.querySelectorAll('.tile.remote audio')].every(
  a => a.srcObject && a.srcObject.getAudioTracks()[0].readyState === 'live')"""


DIAGNOSIS = """() => ({
  participants: [...window.screenvisit.participants.keys()],
  tracks: window.screenvisit.tracks,
  mids: [...window.screenvisit.trackByMid.keys()],
  pc: window.screenvisit.pc && window.screenvisit.pc.connectionState,
  signaling: window.screenvisit.pc && window.screenvisit.pc.signalingState,
  transceivers: window.screenvisit.pc && window.screenvisit.pc.getTransceivers().map(
    t => [t.mid, t.direction, t.currentDirection]),
  videos: [...document.querySelectorAll('.tile.remote video')].map(
    v => [v.videoWidth, v.getVideoPlaybackQuality().totalVideoFrames]),
  status: document.getElementById('status').textContent,
  error: document.getElementById('error').textContent,
})"""


async def playing_or_explain(page: Page, pages: list[Page]) -> None:
    """Wait for two playing remote videos; on failure, say what every page saw."""
    try:
        await page.wait_for_function(TWO_REMOTE_VIDEOS_PLAYING, arg=3, timeout=30_000)
    except Exception:
        states = [await p.evaluate(DIAGNOSIS) for p in pages]
        raise AssertionError(f"not playing; the pages saw: {states}") from None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_chromium() -> AsyncIterator[Browser]:
    """One Chromium for a module's tests: a launch takes seconds on a loaded machine."""
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(module_chromium: Browser) -> AsyncIterator[Browser]:
    """The module's Chromium, in which a test opens contexts of its own: all are closed after
    it, so its pages leave their calls (as a closed browser's do) and stop using the machine.
    A module that uses it runs its tests in one event loop (`asyncio(loop_scope="module")`)."""
    yield module_chromium
    for context in list(module_chromium.contexts):
        await context.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """One server for a module's tests (a start takes seconds), each test on visits of its own;
    a test that stops a server or counts its visits starts one of its own."""
    running = await start_server(tmp_path_factory.mktemp("browser"), "--quality-interval", "1")
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def own_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server for one test only."""
    running = await start_server(tmp_path, "--quality-interval", "1")
    yield running
    await running.stop()


async def open_link(browser: Browser, link: str, join: bool = True) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(link)
    if join:
        await page.get_by_role("button", name="Deltag", exact=True).click()
    return page


async def tile_names(page: Page) -> list[str]:
    """Who the remote tiles show, sorted, without the connection-quality note a caption may
    carry ("Sygeplejerske (svingende forbindelse)" on a loaded machine)."""
    captions = await page.locator(".tile.remote figcaption").all_text_contents()
    return sorted(caption.split(" (")[0] for caption in captions)


async def test_three_browsers_see_and_hear_each_other_leave_and_reload(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    media_before = (await server.health())["media"]
    pages = {
        role: await open_link(browser, visit["links"][role]) for role in ("citizen", "nurse", "gp")
    }
    for page in pages.values():
        await page.wait_for_function(TWO_REMOTE_VIDEOS_PLAYING, arg=5, timeout=30_000)
        assert await page.evaluate(REMOTE_AUDIO_LIVE)
    # Chromium's packets (padding, RTX, its header extensions) take the server's direct
    # receive path, and none of them is refused there.
    media = (await server.health())["media"]
    assert media["packets_received_direct"] > media_before["packets_received_direct"]
    assert media["packets_refused"] == media_before["packets_refused"]
    assert await tile_names(pages["citizen"]) == ["Læge", "Sygeplejerske"]
    first_frames = {
        role: await page.evaluate("window.screenvisit.metrics.firstRemoteFrameMs")
        for role, page in pages.items()
    }
    print("page load to first remote frame (ms):", first_frames)
    assert all(ms is not None and ms > 0 for ms in first_frames.values())
    # Each page reported it for the operators' screenvisit_join_seconds, and it was taken.
    for page in pages.values():
        await page.wait_for_function(
            "window.screenvisit.metrics.joinTimeReported === 204", timeout=15_000
        )

    # A reload gets the nurse's seat and media back, with no second press on Deltag: the
    # others keep her tile (briefly "genopretter forbindelse") and its video resumes.
    nurse_frames = """() => { const t = [...document.querySelectorAll('.tile.remote')].find(
        t => t.querySelector('figcaption').textContent.startsWith('Sygeplejerske'));
      return t ? t.querySelector('video').getVideoPlaybackQuality().totalVideoFrames : -1; }"""
    before = {role: await pages[role].evaluate(nurse_frames) for role in ("citizen", "gp")}
    await pages["nurse"].reload()
    await pages["nurse"].wait_for_function(TWO_REMOTE_VIDEOS_PLAYING, arg=5, timeout=30_000)
    for role in ("citizen", "gp"):
        # Two seconds of new frames cannot come from the nurse's old, closed connection.
        await pages[role].wait_for_function(
            f"(least) => ({nurse_frames})() > least", arg=before[role] + 60, timeout=30_000
        )
        assert await tile_names(pages[role]) == (
            ["Læge", "Sygeplejerske"] if role == "citizen" else ["Borger", "Sygeplejerske"]
        )

    # The citizen leaves: their tile disappears from the others' view.
    await pages["citizen"].get_by_role("button", name="Forlad besøget").click()
    confirm = pages["citizen"].get_by_role("dialog", name="Vil du forlade besøget?")
    await confirm.get_by_role("button", name="Forlad besøget").click()
    await pages["citizen"].get_by_text("Du har forladt besøget").wait_for()
    for role in ("nurse", "gp"):
        await pages[role].wait_for_function(
            "() => document.querySelectorAll('.tile.remote').length === 1", timeout=15_000
        )
        assert "Borger" not in await tile_names(pages[role])


async def test_a_bad_link_shows_a_clear_message(server: RunningServer, browser: Browser) -> None:
    visit = await server.create_visit()
    link = visit["links"]["citizen"]
    # Caught on load: there is no Deltag to press (tests/e2e/test_join_page.py).
    tampered = await open_link(browser, link[:-6] + "AAAAAA", join=False)
    await tampered.get_by_role("alert").wait_for()
    assert "Linket er ikke gyldigt" in (await tampered.get_by_role("alert").text_content() or "")

    key = load_or_create_signing_key(server.data_dir / "signing-key.pem")
    claims = jwt.decode(link.split("#", 1)[1], options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 3600
    expired_token = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.kid})
    expired = await open_link(browser, link.split("#", 1)[0] + "#" + expired_token, join=False)
    await expired.get_by_role("alert").wait_for()
    assert "Linket er udløbet" in (await expired.get_by_role("alert").text_content() or "")


async def test_the_page_speaks_english_on_request(server: RunningServer, browser: Browser) -> None:
    visit = await server.create_visit()
    page = await open_link(browser, visit["links"]["citizen"], join=False)
    await page.get_by_role("button", name="English").click()
    await page.get_by_role("button", name="Join", exact=True).wait_for()
    assert await page.evaluate("document.documentElement.lang") == "en"


async def test_the_gp_is_told_of_each_arrival_and_lets_them_in(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit("--relative")
    gp = await open_link(browser, visit["links"]["gp"])
    await gp.get_by_text("Ingen venter.").wait_for()
    citizen = await open_link(browser, visit["links"]["citizen"])
    await citizen.get_by_text("Du er i venteværelset").wait_for()
    await gp.get_by_role("alert").filter(has_text="Borger venter i venteværelset").wait_for()
    relative = await open_link(browser, visit["links"]["relative"])
    await gp.get_by_role("alert").filter(has_text="Pårørende venter i venteværelset").wait_for()
    assert await gp.evaluate("window.screenvisit.metrics.arrivalsNotified") == 2

    await gp.get_by_role("button", name="Luk alle ind").click()
    for page in (citizen, relative, gp):
        await playing_or_explain(page, [citizen, relative, gp])

    # The GP ends the visit for everyone, recording the outcome on the way out.
    await gp.locator("#end").click()
    dialog = gp.get_by_role("dialog")
    await dialog.get_by_label("Indlæggelse undgået").check()
    await dialog.get_by_role("button", name="Afslut for alle").click()
    for page in (citizen, relative, gp):
        await page.get_by_text("Besøget er afsluttet").wait_for()
    # The citizen is offered the three questions, and answers one.
    await citizen.get_by_role("group", name="Hvor let var det at bruge?").get_by_label("4").check()
    await citizen.get_by_role("button", name="Send svar").click()
    await citizen.get_by_text("Tak for dine svar.").wait_for()


async def test_the_evaluators_page_draws_the_report(
    own_server: RunningServer, browser: Browser, tmp_path: Path
) -> None:
    # A server of its own: the report counts all of a server's visits.
    await own_server.create_visit()
    await own_server.create_visit("--specialist")
    key = load_or_create_signing_key(own_server.data_dir / "signing-key.pem")
    issuer = TokenIssuer("screenvisit-local", "screenvisit", key)
    evaluator = issuer.sign(
        sub="eval-1", role=Role.EVALUATOR, sector=Sector.REGION, lifetime=300, org="demo"
    )
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{own_server.base_url}/evaluation#{evaluator}")
    # A locator, not wait_for_function: the page's CSP refuses the eval its polling needs, and
    # the report (built in a worker process) may take longer than the first check.
    await page.locator("#chart-weeks svg rect").first.wait_for(timeout=30_000)
    assert await page.evaluate("window.screenvisitReport.loaded")
    assert "2 Besøg / Visits" in (await page.locator("#figures").text_content() or "")
    assert await page.locator("#chart-weeks svg rect").count() == 1
    await page.screenshot(path=str(tmp_path / "evaluation.png"), full_page=True)
