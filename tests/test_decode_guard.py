"""The decode guard must see decoding where it happens, or the no-decode test proves nothing."""

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from media.ice import restrict_host_candidates
from media.synthetic import SyntheticVideoTrack
from tests.support.decode_guard import install_guard


async def test_the_guard_counts_a_plain_receiver_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiortc.rtcrtpreceiver

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", aiortc.rtcrtpreceiver.get_decoder)
    counts = install_guard()
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender.addTrack(SyntheticVideoTrack(160, 120))
    received: asyncio.Queue[object] = asyncio.Queue()
    pulls: list[asyncio.Task[None]] = []

    @receiver.on("track")
    def on_track(track: object) -> None:
        async def pull() -> None:
            received.put_nowait(await track.recv())  # type: ignore[attr-defined]

        pulls.append(asyncio.ensure_future(pull()))

    offer = await sender.createOffer()
    restrict_host_candidates(sender, ("127.0.0.1",))
    await sender.setLocalDescription(offer)
    await receiver.setRemoteDescription(sender.localDescription)
    restrict_host_candidates(receiver, ("127.0.0.1",))
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    frame = await asyncio.wait_for(received.get(), timeout=20)
    assert frame is not None
    assert counts["decoders"] >= 1 and counts["frames"] >= 1
    await sender.close()
    await receiver.close()
