"""The join page for real people on real devices, in headless Chromium: a refused camera, an
iPhone-like browser that offers H264 only, a bad link caught on load, and a page of its own
for each way a visit can end for someone."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from playwright.async_api import Browser, Page

from rooms.roles import Role, Sector
from server.auth import TokenIssuer
from server.keys import load_or_create_signing_key
from tests.e2e.test_browser import (
    DIAGNOSIS,
    TWO_REMOTE_VIDEOS_PLAYING,
    browser,
    module_chromium,
    open_link,
    own_server,
    server,
)
from tests.support.servers import RunningServer, run_bot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
__all__ = ["browser", "module_chromium", "own_server", "server"]

#: getUserMedia refused as a person refuses it in the prompt: for the camera, or for both.
REFUSE = """(what) => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.deviceRequests = 0;
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.deviceRequests += 1;
    if (what === 'both' || (what === 'camera' && constraints.video)) {
      return Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    }
    return original(constraints);
  };
}"""

#: A browser that can send and receive H264 only (as some iPhones' Safari): whatever the page
#: asks for, its transceivers keep H264 (packetization-mode 1) and RTX.
H264_ONLY = """() => {
  const original = RTCRtpTransceiver.prototype.setCodecPreferences;
  RTCRtpTransceiver.prototype.setCodecPreferences = function (codecs) {
    if (this.receiver.track.kind !== 'video') return original.call(this, codecs);
    const all = RTCRtpReceiver.getCapabilities('video').codecs;
    return original.call(this, all.filter((c) =>
      (c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''))
      || c.mimeType === 'video/rtx'));
  };
}"""

ONE_REMOTE_VIDEO_PLAYING = """(minFrames) => {
  const videos = [...document.querySelectorAll('.tile.remote video')];
  return videos.length === 1 && videos.every(v => v.videoWidth > 0 && !v.paused
    && v.getVideoPlaybackQuality().totalVideoFrames > minFrames);
}"""

#: Audio packets received per remote participant (their tile's audio track), from getStats.
AUDIO_RECEIVED = """async () => {
  const pc = window.screenvisit.pc;
  const stats = await pc.getStats();
  const byTrack = {};
  for (const tr of pc.getTransceivers()) {
    if (tr.receiver.track.kind === 'audio') byTrack[tr.mid] = tr.receiver.track;
  }
  const out = {};
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      const entry = window.screenvisit.tracks[s.mid];
      if (entry) out[entry.participant] = s.packetsReceived;
    }
  });
  return out;
}"""

#: The codec of each video received (mime type), from getStats.
VIDEO_CODECS_RECEIVED = """async () => {
  const stats = await window.screenvisit.pc.getStats();
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  const out = [];
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
      out.push(codecs[s.codecId]);
    }
  });
  return out;
}"""


async def new_page(browser: Browser, init: str | None = None, arg: Any = None) -> Page:
    context = await browser.new_context()
    if init is not None:
        await context.add_init_script(f"({init})({json.dumps(arg)})")
    return await context.new_page()


async def hears(page: Page, participants: int, least: int = 50) -> None:
    """Audio packets from `participants` remote participants, at least `least` from each."""
    deadline = time.monotonic() + 30
    received: dict[str, int] = {}
    while time.monotonic() < deadline:
        received = await page.evaluate(AUDIO_RECEIVED)
        if len(received) >= participants and all(n >= least for n in received.values()):
            return
        await page.wait_for_timeout(250)  # polling the page's own statistics
    raise AssertionError(f"audio received: {received}; {await page.evaluate(DIAGNOSIS)}")


async def in_call(page: Page) -> None:
    await page.wait_for_function(
        "() => window.screenvisit.pc && window.screenvisit.pc.connectionState === 'connected'",
        timeout=30_000,
    )


@pytest.mark.parametrize("refused", ["camera", "both"])
async def test_a_first_joiner_without_camera_sees_and_hears_those_who_come_after(
    server: RunningServer, browser: Browser, refused: str
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    citizen = await new_page(browser, REFUSE, refused)
    await citizen.goto(visit["links"]["citizen"])
    notice = "Du deltager med lyd" if refused == "camera" else "Du kan stadig deltage"
    await citizen.get_by_text(notice).wait_for()
    await citizen.get_by_role("button", name="Deltag", exact=True).click()
    await in_call(citizen)  # alone in the call, sending at most sound
    nurse = await open_link(browser, visit["links"]["nurse"])
    gp = await open_link(browser, visit["links"]["gp"])
    try:
        await citizen.wait_for_function(TWO_REMOTE_VIDEOS_PLAYING, arg=5, timeout=30_000)
    except Exception:
        raise AssertionError(f"not playing: {await citizen.evaluate(DIAGNOSIS)}") from None
    await hears(citizen, 2)
    for page in (nurse, gp):
        await page.wait_for_function(
            "() => document.querySelectorAll('.tile.remote').length === 2", timeout=30_000
        )
    if refused == "camera":
        await hears(gp, 2)  # the citizen's microphone reaches the others
        caption = gp.locator(".tile.remote figcaption").filter(has_text="Borger")
        assert "kamera slukket" in (await caption.text_content() or "")


async def test_an_h264_only_browser_and_a_vp8_one_see_and_hear_each_other(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    gp = await open_link(browser, visit["links"]["gp"])  # offers VP8 first, and sends it
    await in_call(gp)
    iphone = await new_page(browser, H264_ONLY)
    await iphone.goto(visit["links"]["citizen"])
    await iphone.get_by_role("button", name="Deltag", exact=True).click()
    for page in (iphone, gp):
        try:
            await page.wait_for_function(ONE_REMOTE_VIDEO_PLAYING, arg=30, timeout=40_000)
        except Exception:
            raise AssertionError(f"not playing: {await page.evaluate(DIAGNOSIS)}") from None
        await hears(page, 1)
    # The GP was asked to switch to H264, the codec both can decode.
    assert set(await iphone.evaluate(VIDEO_CODECS_RECEIVED)) == {"video/H264"}
    assert set(await gp.evaluate(VIDEO_CODECS_RECEIVED)) == {"video/H264"}


async def test_a_forged_or_expired_link_fails_on_load_before_any_device_prompt(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit()
    link = visit["links"]["citizen"]
    forged = await new_page(browser, REFUSE, "none")
    await forged.goto(link[:-6] + "AAAAAA")
    await forged.get_by_role("heading", name="Linket virker ikke").wait_for()
    assert "Linket er ikke gyldigt" in (await forged.get_by_role("alert").text_content() or "")
    assert await forged.evaluate("window.deviceRequests") == 0
    assert not await forged.get_by_role("button", name="Deltag", exact=True).is_visible()

    key = load_or_create_signing_key(server.data_dir / "signing-key.pem")
    claims = jwt.decode(link.split("#", 1)[1], options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 3600
    expired_token = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.kid})
    expired = await new_page(browser, REFUSE, "none")
    await expired.goto(link.split("#", 1)[0] + "?lang=en#" + expired_token)
    await expired.get_by_role("heading", name="This link no longer works").wait_for()
    assert "The link has expired" in (await expired.get_by_role("alert").text_content() or "")
    assert await expired.evaluate("window.deviceRequests") == 0


def gp_token(server: RunningServer) -> str:
    key = load_or_create_signing_key(server.data_dir / "signing-key.pem")
    issuer = TokenIssuer("screenvisit-local", "screenvisit", key)
    return issuer.sign(
        sub="gp-api", role=Role.GP, sector=Sector.GENERAL_PRACTICE, lifetime=300, org="demo"
    )


async def api(server: RunningServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.base_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {gp_token(server)}"},
        )
        data: dict[str, Any] = await response.json()
        assert response.status < 300, data
        return data


async def end_state(page: Page, title: str) -> str:
    """Wait for the end state `title`; return the page's text, which must not still say that
    the participant is in the call."""
    await page.get_by_role("heading", name=title).wait_for(timeout=30_000)
    text = await page.locator("main").inner_text()
    assert "Du er med i besøget" not in text and "Deltag" not in text.split(title)[-1]
    return text


async def test_cancelled_and_not_yet_open_visits_say_so_on_load(
    server: RunningServer, browser: Browser
) -> None:
    cancelled = await server.create_visit()
    await api(server, f"/api/visits/{cancelled['visit']}/cancel", {})
    page = await new_page(browser, REFUSE, "none")
    await page.goto(cancelled["links"]["citizen"])
    assert "Dette videobesøg er blevet aflyst." in await end_state(page, "Besøget er aflyst")
    assert await page.evaluate("window.deviceRequests") == 0

    later = await api(
        server,
        "/api/visits",
        {
            "participants": [{"role": "citizen"}, {"role": "gp"}],
            "planned_start": time.time() + 3 * 3600,
        },
    )
    link = later["links"]["citizen"]
    page = await new_page(browser, REFUSE, "none")
    await page.goto(link)
    text = await end_state(page, "Besøget er ikke åbnet endnu")
    assert "Besøget åbner " in text and " kl. " in text and "{time}" not in text
    assert await page.evaluate("window.deviceRequests") == 0


async def test_a_visit_cancelled_during_the_call_says_it_is_cancelled(
    server: RunningServer, browser: Browser
) -> None:
    """As when the EHR cancels the Appointment (PUT status cancelled) while the citizen waits
    in the call: the page says cancelled, not merely over."""
    visit = await server.create_visit("--no-waiting-room")
    citizen = await open_link(browser, visit["links"]["citizen"])
    await in_call(citizen)
    await api(server, f"/api/visits/{visit['visit']}/cancel", {})
    assert "Dette videobesøg er blevet aflyst." in await end_state(citizen, "Besøget er aflyst")
    await citizen.context.close()


async def test_removed_declined_replaced_and_ended_each_have_their_own_page(
    server: RunningServer, browser: Browser
) -> None:
    visit = await server.create_visit("--relative", "--interpreter")
    gp = await open_link(browser, visit["links"]["gp"])
    await in_call(gp)
    # Declined in the waiting room.
    relative = await open_link(browser, visit["links"]["relative"])
    await relative.get_by_text("Du er i venteværelset").wait_for()
    await gp.get_by_role("button", name="Afvis").click()
    await end_state(relative, "Du blev ikke lukket ind")

    # Removed from the call.
    citizen = await open_link(browser, visit["links"]["citizen"])
    await citizen.get_by_text("Du er i venteværelset").wait_for()
    await gp.get_by_role("button", name="Luk ind").click()
    await in_call(citizen)
    await gp.locator(".tile.remote .remove").click()
    await gp.get_by_role("dialog", name="Fjern Borger?").get_by_role("button", name="Fjern").click()
    text = await end_state(citizen, "Du er ikke længere med i besøget")
    assert "Lægen har fjernet dig fra besøget." in text

    # The same seat opened on another device.
    interpreter = await open_link(browser, visit["links"]["interpreter"])
    await interpreter.get_by_text("Du er i venteværelset").wait_for()
    again = await open_link(browser, visit["links"]["interpreter"])
    await again.get_by_text("Du er i venteværelset").wait_for()
    await end_state(interpreter, "Besøget er åbnet et andet sted")
    assert await interpreter.get_by_role("button", name="Fortsæt her").is_visible()

    # The visit ends: the GP's page and the waiting interpreter's say so, and nothing else.
    await gp.locator("#end").click()
    await gp.get_by_role("dialog").get_by_role("button", name="Afslut for alle").click()
    for page in (gp, again):
        await page.get_by_text("Besøget er afsluttet").wait_for()
        assert "Du er med i besøget" not in await page.locator("main").inner_text()
    assert await gp.locator("#timer").is_hidden()  # the host's visit timer stopped with it


async def test_a_server_that_went_away_has_its_own_page(
    own_server: RunningServer, browser: Browser
) -> None:
    visit = await own_server.create_visit("--no-waiting-room")
    citizen = await open_link(browser, visit["links"]["citizen"])
    await in_call(citizen)
    await own_server.stop()
    text = await end_state(citizen, "Ingen forbindelse til serveren")
    assert "Prøv igen" in text
    await citizen.get_by_role("button", name="English").click()
    await citizen.get_by_role("heading", name="No connection to the server").wait_for()


async def test_an_h264_only_browser_is_told_whose_video_it_cannot_decode(
    server: RunningServer, browser: Browser
) -> None:
    # A VP8 bot hosts and lets people in; its encoder cannot switch codec mid-call (a
    # browser's can), so the H264-only page either gets its video or says on the GP's tile
    # that this browser cannot show it. Never a silent blank tile; sound comes through.
    visit = await server.create_visit()
    gp = asyncio.create_task(run_bot(visit["links"]["gp"], 20, "--admit-all"))
    iphone = await new_page(browser, H264_ONLY)
    await iphone.goto(visit["links"]["citizen"])
    await iphone.get_by_role("button", name="Deltag", exact=True).click()
    await in_call(iphone)
    await hears(iphone, 1)
    await iphone.wait_for_function(
        """() => { const tile = document.querySelector('.tile.remote');
          if (!tile) return false;
          const v = tile.querySelector('video');
          return v.getVideoPlaybackQuality().totalVideoFrames > 30
            || tile.querySelector('figcaption').textContent.includes('kan ikke vise'); }""",
        timeout=40_000,
    )
    caption = await iphone.locator(".tile.remote figcaption").text_content() or ""
    frames = await iphone.evaluate(
        "() => document.querySelector('.tile.remote video').getVideoPlaybackQuality()"
        ".totalVideoFrames"
    )
    print(f"H264-only page: GP frames {frames}, caption {caption!r}")
    assert frames > 30 or "din browser kan ikke vise denne video (VP8)" in caption
    # The bot, for its part, decodes the page's H264.
    report = await gp
    assert report["exit_code"] == 0, report
    (from_page,) = report["remotes"]
    assert from_page["video_frames"] > 30 and from_page["audio_frames"] > 50, report
