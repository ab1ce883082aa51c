"""Firefox ESR (Debian's `firefox-esr`, driven over Marionette with `marionette-driver`) in a
three-way call with two aiortc participants.

Firefox gathers no loopback candidates, so the test gives the server an address of its own: a
network namespace joined to this one by a veth pair, in TEST-NET-1 (192.0.2.0/24). The server
runs inside the namespace; Firefox and the two bots reach it over the veth pair, as a browser on
another machine would."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

with warnings.catch_warnings():
    # marionette-driver's own imports use telnetlib and distro.linux_distribution().
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver.by import By  # type: ignore[import-untyped]
    from marionette_driver.marionette import Marionette  # type: ignore[import-untyped]
    from marionette_driver.wait import Wait  # type: ignore[import-untyped]

from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
FIREFOX_PRESENT = Path(FIREFOX).exists()

#: Headless Firefox with fake camera and microphone, no prompts, nothing fetched from outside,
#: and the server's plain-http address treated as a secure context (as https would be).
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.startup.homepage_override.mstone": "ignore",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "media.autoplay.default": 0,
}

#: Each remote video: width, paused, frames painted (Firefox's own counter; its
#: getVideoPlaybackQuality counts nothing for a MediaStream). Marionette's scripts see the page's
#: own globals through `window.wrappedJSObject`.
REMOTE_VIDEOS = """
const videos = [...document.querySelectorAll('.tile.remote video')];
return videos.map(v => [v.videoWidth, v.paused, v.mozPaintedFrames]);
"""

DIAGNOSIS = """
const sv = window.wrappedJSObject.screenvisit || {};
return {
  pc: sv.pc ? [sv.pc.connectionState, sv.pc.iceConnectionState, sv.pc.signalingState] : null,
  status: (document.getElementById('status') || {}).textContent,
  error: (document.getElementById('error') || {}).textContent,
  text: document.body.innerText.slice(0, 400),
};
"""


@dataclass(frozen=True)
class Namespace:
    name: str
    #: This side of the veth pair (Firefox and the bots) and the namespace's side (the server).
    outside: str
    inside: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    """A network namespace with a veth pair to this one: a /30 of 192.0.2.0/24 chosen by pid, so
    that two test runs on one machine do not collide."""
    if shutil.which("ip") is None:
        pytest.fail("`ip` (Debian's iproute2) is missing")
    slot = os.getpid() % 60
    name, here, there = f"svff{os.getpid()}", f"svf{slot}a", f"svf{slot}b"
    outside, inside = f"192.0.2.{4 * slot + 1}", f"192.0.2.{4 * slot + 2}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", here], capture_output=True)
    ip("netns", "add", name)
    try:
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", name)
        ip("addr", "add", f"{outside}/30", "dev", here)
        ip("link", "set", here, "up")
        ip("-n", name, "addr", "add", f"{inside}/30", "dev", there)
        ip("-n", name, "link", "set", there, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, outside, inside)
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@dataclass
class Server:
    process: asyncio.subprocess.Process
    url: str
    env: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    namespace: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    tmp = tmp_path_factory.mktemp("firefox")
    port = 8080  # the namespace is new: nothing else listens in it
    env = {
        **os.environ,
        "SCREENVISIT_DATA_DIR": str(tmp / "data"),
        "SCREENVISIT_HOST": namespace.inside,
        "SCREENVISIT_PORT": str(port),
        "SCREENVISIT_ICE_HOSTS": namespace.inside,
        "SCREENVISIT_ICE_ALLOWED_NETWORKS": f"{namespace.outside}/30",
    }
    log = await asyncio.to_thread((tmp / "server.log").open, "wb")
    process = await asyncio.create_subprocess_exec(
        *("ip", "netns", "exec", namespace.name),
        *(sys.executable, "-m", "server.cli", "serve", "--no-demo"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert b"listening on" in line, (tmp / "server.log").read_text()
    yield Server(process, f"http://{namespace.inside}:{port}", env)
    process.terminate()
    await asyncio.wait_for(process.wait(), timeout=30)


async def run(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode in (0, 3, 4), err.decode()[-2000:]
    return out.decode()


class Firefox:
    """Headless Firefox ESR on a fresh profile, with a Marionette session (blocking calls: run
    them in a thread)."""

    def __init__(self, profile: Path, allow: str) -> None:
        self.port = free_port()
        prefs = {**PREFS, "marionette.port": self.port, "dom.securecontext.allowlist": allow}
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
        )
        self.process = subprocess.Popen(
            [FIREFOX, "--marionette", "--headless", "--no-remote", "--profile", str(profile)],
            env={**os.environ, "MOZ_HEADLESS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = Marionette(host="127.0.0.1", port=self.port, startup_timeout=60)

    def start(self) -> None:
        self.client.start_session()

    def close(self) -> None:
        try:
            self.client.delete_session()
        except Exception:
            pass
        self.process.kill()
        self.process.wait()


def join_in_firefox(firefox: Firefox, link: str) -> None:
    firefox.start()
    firefox.client.navigate(link)
    button = firefox.client.find_element(By.XPATH, "//button[normalize-space()='Deltag']")
    # The page enables Deltag once its link check has answered.
    Wait(firefox.client, timeout=30).until(lambda _: button.is_enabled() and button.is_displayed())
    button.click()


def remote_videos(firefox: Firefox) -> list[list[Any]]:
    videos: list[list[Any]] = firefox.client.execute_script(REMOTE_VIDEOS)
    return videos


# marionette-driver leaves its port probe's socket for the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_firefox_esr_takes_part_in_a_three_way_call(
    server: Server, namespace: Namespace, tmp_path: Path
) -> None:
    if not FIREFOX_PRESENT:
        pytest.fail("firefox-esr is missing: install Debian's firefox-esr (.ci/run does)")
    visit = json.loads(await run("visit", "create", "--json", "--no-waiting-room", env=server.env))
    links = visit["links"]
    firefox = Firefox(tmp_path / "profile", namespace.inside)
    try:
        await asyncio.to_thread(join_in_firefox, firefox, links["gp"])
        bots = [
            asyncio.create_task(
                run(
                    *("bot", links[role], "--seconds", "12", "--json"),
                    *("--width", "320", "--height", "240", "--ice-host", namespace.outside),
                    env=server.env,
                )
            )
            for role in ("citizen", "nurse")
        ]
        # Firefox plays both bots' video: frames decoded and advancing.
        deadline = time.monotonic() + 45
        seen: list[list[Any]] = []
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(remote_videos, firefox)
            if len(seen) == 2 and all(w > 0 and not paused and n > 30 for w, paused, n in seen):
                break
            await asyncio.sleep(0.5)  # polling the page's own playback counters
        else:
            state = await asyncio.to_thread(firefox.client.execute_script, DIAGNOSIS)
            outputs = [await bot for bot in bots]
            raise AssertionError(f"Firefox's remote videos: {seen}; the page: {state}; {outputs}")
        reports = [json.loads(out) for out in await asyncio.gather(*bots)]
    finally:
        await asyncio.to_thread(firefox.close)

    # And each bot received Firefox's camera and microphone.
    for report in reports:
        [gp] = [r for r in report["remotes"] if r["role"] == "gp"]
        assert gp["video_frames"] > 30 and gp["audio_frames"] > 100, report
        assert report["errors"] == [], report
