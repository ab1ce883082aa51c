"""SRTP on the forwarding path, with one copy in and one out per packet.

pylibsrtp's `Session.protect` and `unprotect` check the argument's type, allocate a C int per
call and copy the packet into the session's buffer and back out: fine for aiortc's sender, but
the forwarding path protects every packet once per subscriber. `FastSrtp` calls the same libsrtp
functions on the same session and buffer, and writes an RTP header and a payload into the
buffer as two parts, so the caller never joins them into one bytes object first.

Only ever used from the event loop's thread, like the session itself: each call copies in,
runs libsrtp and copies out before it returns. The pylibsrtp names used are checked at start-up
(media.seams).
"""

from __future__ import annotations

from pylibsrtp import SRTP_MAX_TRAILER_LEN, Error, Session
from pylibsrtp._binding import ffi, lib


class FastSrtp:
    """Protects and unprotects RTP packets with `session`'s keys."""

    __slots__ = ("_buffer", "_cdata", "_context", "_length", "_room", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session  # keeps the libsrtp context alive
        self._context = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._length = ffi.new("int *")
        #: The longest plain packet that still leaves room for the authentication trailer.
        self._room = len(self._buffer) - SRTP_MAX_TRAILER_LEN

    def protect(self, header: bytes | bytearray, payload: bytes) -> bytes:
        """The SRTP packet for the RTP packet `header` + `payload`."""
        split = len(header)
        end = split + len(payload)
        if end > self._room:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:split] = header
        buffer[split:end] = payload
        length = self._length
        length[0] = end
        code = lib.srtp_protect(self._context, self._cdata, length)
        if code:
            raise Error(f"srtp_protect failed ({code})")
        return buffer[0 : length[0]]

    def unprotect(self, packet: bytes) -> bytes:
        """The plain RTP packet of the SRTP `packet`; pylibsrtp.Error if it is not authentic
        or is a replay."""
        end = len(packet)
        if end > len(self._buffer):
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:end] = packet
        length = self._length
        length[0] = end
        code = lib.srtp_unprotect(self._context, self._cdata, length)
        if code:
            raise Error(f"srtp_unprotect failed ({code})")
        return buffer[0 : length[0]]


#: Marks a session's FastSrtp (one per session, so both share nothing but the session).
_ATTR = "_screenvisit_fast"


def fast_srtp(session: Session) -> FastSrtp:
    """The FastSrtp of `session`, made on first use."""
    fast: FastSrtp | None = getattr(session, _ATTR, None)
    if fast is None:
        fast = FastSrtp(session)
        setattr(session, _ATTR, fast)
    return fast
