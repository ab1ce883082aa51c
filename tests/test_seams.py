import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media.errors import SeamMoved
from media.seams import check_seams


def test_the_pinned_aiortc_has_every_seam() -> None:
    check_seams()


def test_a_moved_seam_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(SeamMoved, match="_send_rtcp_pli"):
        check_seams()


def test_an_unchecked_aiortc_version_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiortc

    monkeypatch.setattr(aiortc, "__version__", "1.99.0")
    with pytest.raises(SeamMoved, match="outside the checked range"):
        check_seams()
