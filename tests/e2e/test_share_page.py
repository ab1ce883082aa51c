"""Showing, not only telling, in headless Chromium: a specialist shares a scan (a real
getDisplayMedia path: Chromium's fake capture, the source picked by
`--auto-select-desktop-capture-source`), a nurse adds a second camera (Chromium's fake devices,
two of them), a late joiner sees a running share, and a seat whose policy forbids a source is
refused by the server whatever its client does. One server and one browser for the module."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from media.client import ClientPeer
from server.keys import load_or_create_signing_key
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_PRESENT, DIAGNOSIS, FLAGS
from tests.support.servers import RunningServer, cli, start_server

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SHOTS = Path("/work/shots/screenshare")
SHARE_FLAGS = [f for f in FLAGS if not f.startswith("--use-fake-device-for-media-stream")] + [
    # Three fake cameras, so a second one can be picked from the device list (Chromium's second
    # fake device sends Y16 depth frames, which no encoder takes; the third is MJPEG).
    "--use-fake-device-for-media-stream=device-count=3",
    "--auto-select-desktop-capture-source=Entire screen",
]

#: `n` remote videos, each playing with more than `minFrames` frames decoded.
REMOTE_VIDEOS_PLAYING = """([n, minFrames]) => {
  const videos = [...document.querySelectorAll('.tile.remote video')];
  return videos.length === n && videos.every(v => v.videoWidth > 0 && !v.paused
    && v.getVideoPlaybackQuality().totalVideoFrames > minFrames);
}"""

#: The decoded frames and width of the remote tile of a source ("screen", "camera2").
TILE = """(source) => {
  const tile = document.querySelector(`.tile--${source}`);
  if (!tile) return null;
  const v = tile.querySelector('video');
  return {frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth,
          label: tile.querySelector('figcaption').textContent, stage: tile.dataset.stage || null};
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def share_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    running = await start_server(tmp_path_factory.mktemp("share"), "--quality-interval", "1")
    yield running
    await running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def share_browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=SHARE_FLAGS)
        yield launched
        await launched.close()


async def open_page(browser: Browser, link: str, lang: str = "da") -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    base, token = link.split("#", 1)
    await page.goto(f"{base}?lang={lang}#{token}")
    join = "Deltag" if lang == "da" else "Join"
    await page.get_by_role("button", name=join, exact=True).click()
    return page


async def playing(page: Page, n: int, pages: list[Page], min_frames: int = 3) -> None:
    try:
        await page.wait_for_function(REMOTE_VIDEOS_PLAYING, arg=[n, min_frames], timeout=30_000)
    except Exception:
        states = [await p.evaluate(DIAGNOSIS) for p in pages]
        raise AssertionError(f"not {n} videos playing; the pages saw: {states}") from None


async def advancing(page: Page, source: str, frames: int = 3) -> dict[str, Any]:
    """The tile of `source` decodes `frames` more frames: the content is live, not a still."""
    before = await page.evaluate(TILE, source)
    assert before is not None, await page.evaluate(DIAGNOSIS)
    await page.wait_for_function(
        f"(least) => {{ const t = ({TILE})('{source}'); return t && t.frames > least; }}",
        arg=before["frames"] + frames,
        timeout=20_000,
    )
    after: dict[str, Any] = await page.evaluate(TILE, source)
    assert after["width"] > 0
    return after


async def shoot(page: Page, name: str) -> None:
    """Screenshots at a laptop's and a phone's size."""
    for width, height in ((1280, 800), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 800})


async def gone(page: Page, source: str) -> None:
    await page.wait_for_function(
        f"() => !document.querySelector('.tile--{source}')", timeout=15_000
    )


async def test_a_specialist_shares_a_scan_and_a_late_joiner_sees_it(
    share_server: RunningServer, share_browser: Browser
) -> None:
    visit = await share_server.create_visit("--specialist", "--no-waiting-room")
    links = visit["links"]
    specialist = await open_page(share_browser, links["specialist"])
    nurse = await open_page(share_browser, links["nurse"], lang="en")
    pages = [specialist, nurse]
    await playing(nurse, 1, pages)
    share = specialist.get_by_role("button", name="Del skærm")
    await share.click()
    await playing(nurse, 2, pages)
    seen = await advancing(nurse, "screen")
    assert seen["label"] == "Specialist is sharing their screen"
    assert seen["stage"] == "true"
    assert seen["width"] >= 1280  # the fake screen, not scaled down to a face's size
    hints = await specialist.evaluate(
        """() => { const t = window.screenvisit.share.mine.screen.track;
          return [t.contentHint, t.label]; }"""
    )
    assert hints[0] == "detail"

    # The citizen comes in while the share runs: the screen is there within a second of their
    # first frame (a keyframe on subscribe).
    citizen = await open_page(share_browser, links["citizen"])
    pages.append(citizen)
    await playing(citizen, 3, pages, min_frames=0)
    first = await citizen.evaluate(
        """() => new Promise((resolve) => {
          const v = document.querySelector('.tile--screen video');
          const first = window.screenvisit.metrics.firstRemoteFrameMs;
          if (v.getVideoPlaybackQuality().totalVideoFrames > 0) {
            resolve([first, performance.now()]);
          } else {
            v.requestVideoFrameCallback(() => resolve([first, performance.now()]));
          }
        })"""
    )
    late_ms = first[1] - first[0]
    print(f"late joiner: shared screen {late_ms:.0f} ms after their first remote frame")
    assert late_ms < 1000
    for page in (nurse, citizen):
        await playing(page, 3, pages)
        assert (await advancing(page, "screen"))["width"] > 0
    assert (await citizen.evaluate(TILE, "screen"))["label"] == "Speciallæge deler skærm"
    # The citizen may not share a screen: no button for them.
    assert await citizen.locator("#share-screen").is_hidden()

    for page, name in ((specialist, "specialist"), (citizen, "citizen"), (nurse, "nurse")):
        await shoot(page, f"scan-{name}")

    # Stopped from the page: gone for everyone; the faces play on.
    await specialist.get_by_role("button", name="Stop deling").click()
    for page in (nurse, citizen):
        await gone(page, "screen")
        await playing(page, 2, pages)
    # Shared again and stopped from the browser's own stop bar (the track ends).
    await share.click()
    await playing(citizen, 3, pages)
    await specialist.evaluate(
        "() => window.screenvisit.share.mine.screen.track.dispatchEvent(new Event('ended'))"
    )
    for page in (nurse, citizen):
        await gone(page, "screen")
    for page in pages:
        await page.context.close()
    # The evaluation knows that the specialist showed a screen twice, and for how long.
    code, out, err = await cli(
        share_server, "report", "export", "--org", "demo", "--format", "json"
    )
    assert code == 0, err
    shared = [e for v in json.loads(out) for e in v["content_shared"] if e["source"] == "screen"]
    assert [(e["role"], e["source"], e["times"]) for e in shared] == [("specialist", "screen", 2)]
    assert shared[0]["seconds"] > 0


async def test_a_nurse_shows_a_wound_with_a_second_camera(
    share_server: RunningServer, share_browser: Browser
) -> None:
    visit = await share_server.create_visit("--kind", "assisted", "--no-waiting-room")
    links = visit["links"]
    nurse = await open_page(share_browser, links["nurse"])
    gp = await open_page(share_browser, links["gp"])
    pages = [nurse, gp]
    await playing(gp, 1, pages)
    await nurse.get_by_role("button", name="Tilføj kamera").click()
    # More than one other camera: the nurse picks one from the list.
    await nurse.locator("#camera2-picker").select_option(label="fake_device_2")
    # The GP sees the nurse's face and, beside it, her second camera.
    await playing(gp, 2, pages)
    seen = await advancing(gp, "camera2")
    assert seen["label"] == "Sygeplejerske · ekstra kamera"
    assert seen["stage"] is None  # a face-sized tile beside the nurse's own
    for page, name in ((nurse, "nurse"), (gp, "gp")):
        await shoot(page, f"camera2-{name}")
    await nurse.get_by_role("button", name="Fjern ekstra kamera").click()
    await gone(gp, "camera2")
    await playing(gp, 1, pages)
    for page in pages:
        await page.context.close()


async def raw_offer(server: RunningServer, token: str, visit: str, source: str) -> dict[str, Any]:
    """Join over a bare WebSocket and offer a camera plus `source`, as a client that ignores the
    page's buttons would; return the server's reply to the offer."""
    client = ClientPeer(ice_hosts=("127.0.0.1",), width=320, height=240)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(server.base_url.replace("http", "ws") + "/ws") as ws,
        ):
            await ws.send_json({"type": "join", "token": token, "visit": visit})
            joined = await ws.receive_json(timeout=10)
            assert joined["type"] == "joined", joined
            assert source not in joined["sources"]
            client.ensure_recv_slots(joined["recv"])
            client.add_source(source, hue=90)
            sdp = await client.create_offer()
            await ws.send_json({"type": "offer", "id": "o1", "sdp": sdp, "sources": client.sources})
            while True:
                reply: dict[str, Any] = await ws.receive_json(timeout=10)
                if reply["type"] in ("answer", "error"):
                    return reply
    finally:
        await client.close()


async def test_a_source_the_policy_forbids_is_refused_by_the_server(
    share_server: RunningServer, share_browser: Browser
) -> None:
    visit = await share_server.create_visit("--no-waiting-room")
    links = visit["links"]
    gp = await open_page(share_browser, links["gp"])
    # A citizen may not share a screen (the role's default), whatever its client sends.
    citizen_token = links["citizen"].split("#", 1)[1]
    reply = await raw_offer(share_server, citizen_token, visit["visit"], "screen")
    assert reply["type"] == "error" and reply["code"] == "source-forbidden", reply
    # A nurse whose token grants camera and microphone only may not add a second camera.
    key = load_or_create_signing_key(share_server.data_dir / "signing-key.pem")
    claims = jwt.decode(links["nurse"].split("#", 1)[1], options={"verify_signature": False})
    claims["sources"] = ["camera", "microphone"]
    narrowed = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.kid})
    reply = await raw_offer(share_server, narrowed, visit["visit"], "camera2")
    assert reply["type"] == "error" and reply["code"] == "source-forbidden", reply
    # Nothing of either reached the GP: no screen, no second camera, in the slot map or page.
    tracks = await gp.evaluate("() => window.screenvisit.tracks")
    assert not [e for e in tracks.values() if e and e.get("source") in ("screen", "camera2")]
    assert await gp.locator(".tile--screen, .tile--camera2").count() == 0
    await gp.context.close()
