"""The last step of forwarding: a subscriber's RTP header written, SRTP, and the datagram sent.

What is forwarded to whom, and as which sequence number and timestamp, is decided in Python
(media.downtrack, media.rtpwriter); a `Fanout` does the per-datagram work. Two implementations
with the same output, byte for byte:

- `PyFanout` writes, protects (media.srtp) and sends each datagram at once, on the asyncio
  transport of the subscriber's ICE pair;
- `CFanout` collects the datagrams of one event loop iteration (every packet the loop's readers
  took in it, for every subscriber) and hands them to the compiled `media._fastpath`, which
  writes, protects with pylibsrtp's own libsrtp and sends them with one `sendmmsg` per socket,
  without the interpreter. A datagram the kernel does not take at once (its buffer full) goes
  to the transport as on the Python path; so does everything for a transport that is not a
  socket's (a test's lossy link, say).

`make_fanout` picks one by the `fastpath` setting: `auto` uses the compiled path when it is
built and its libsrtp binding checks out, `on` insists on it, `off` stays in Python.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import pylibsrtp
from pylibsrtp import SRTP_MAX_TRAILER_LEN

from media.config import Fastpath
from media.srtp import FastSrtp, fast_srtp

logger = logging.getLogger(__name__)

#: The libsrtp 2 signature pylibsrtp's binding must have for the compiled path to call it.
SRTP_PROTECT_TYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"

# The DTLS transport's send counters (as media.rtpwriter names them).
DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"


class FastpathUnavailable(RuntimeError):
    """`fastpath=on` but the compiled path cannot be used."""


class SendTarget:
    """Where one subscriber's datagrams go: its ICE pair's transport and address, the SRTP
    session and the DTLS transport's counters."""

    __slots__ = ("address", "c", "counters", "session", "srtp", "udp")

    def __init__(
        self,
        udp: Any,
        address: tuple[str, int],
        session: pylibsrtp.Session,
        counters: dict[str, Any],
        sockaddr: Callable[[str, int], bytes] | None = None,
    ) -> None:
        self.udp = udp
        self.address = address
        self.session = session
        self.srtp: FastSrtp = fast_srtp(session)
        self.counters = counters
        #: For media._fastpath: the session's srtp_t, the socket's descriptor (-1: send through
        #: the transport) and the address as a struct sockaddr.
        self.c: tuple[int, int, bytes] = (0, -1, b"")
        if sockaddr is not None:
            from pylibsrtp._binding import ffi

            ctx = int(ffi.cast("uintptr_t", session._srtp[0]))
            sock = udp.get_extra_info("socket") if _is_socket_transport(udp) else None
            try:
                self.c = (ctx, sock.fileno() if sock is not None else -1, sockaddr(*address))
            except (ValueError, OSError):
                self.c = (ctx, -1, b"")  # a name, not a numeric address: the transport's job


def _is_socket_transport(udp: Any) -> bool:
    """An asyncio or uvloop transport, whose socket may be written to directly (anything else,
    a wrapper that drops packets say, must see every datagram)."""
    return isinstance(udp, asyncio.BaseTransport) or type(udp).__module__ == "uvloop.loop"


#: A datagram to send: the header template (RTP header and extension block), where its 3-byte
#: abs-send-time goes (-1: none), marker | payload type, sequence number, timestamp, SSRC, the
#: payload and the send time.
Fields = tuple[bytes, int, int, int, int, int, bytes, int]

#: The fixed RTP header after its first byte: marker and payload type, sequence, timestamp, SSRC.
_FIXED = struct.Struct("!BHLL")


class Fanout(Protocol):
    def target(
        self, udp: Any, address: tuple[str, int], session: pylibsrtp.Session, counters: Any
    ) -> SendTarget: ...

    def send(self, target: SendTarget, fields: Fields) -> None:
        """Send `fields`' template with its fixed fields and send time set, and the payload,
        SRTP-protected, to `target`."""


class PyFanout:
    """Each datagram made and sent at once, in Python."""

    name = "python"

    def __init__(self) -> None:
        #: Datagrams that could not be protected (too long for the SRTP buffer).
        self.unsendable = 0

    def target(
        self, udp: Any, address: tuple[str, int], session: pylibsrtp.Session, counters: Any
    ) -> SendTarget:
        return SendTarget(udp, address, session, counters)

    def send(self, target: SendTarget, fields: Fields) -> None:
        template, at, marker_payload_type, sequence, timestamp, ssrc, payload, send_time = fields
        head = bytearray(template)
        _FIXED.pack_into(head, 1, marker_payload_type, sequence, timestamp, ssrc)
        if at >= 0:
            head[at] = (send_time >> 16) & 0xFF
            head[at + 1] = (send_time >> 8) & 0xFF
            head[at + 2] = send_time & 0xFF
        try:
            datagram = target.srtp.protect(head, payload)
        except (ValueError, pylibsrtp.Error):
            self.unsendable += 1  # too long for the session's buffer: lost, like on a link
            return
        target.udp.sendto(datagram, target.address)
        counters = target.counters
        counters[DTLS_TX_PACKETS] += 1
        counters[DTLS_TX_BYTES] += len(datagram)


class CFanout(PyFanout):
    """The datagrams of one loop iteration, made and sent by media._fastpath."""

    name = "compiled"

    def __init__(self, module: ModuleType, protect: int) -> None:
        super().__init__()
        self._module = module
        self._protect = protect
        self._room = 1500 - SRTP_MAX_TRAILER_LEN  # pylibsrtp's buffer (media.srtp)
        self._entries: list[tuple[tuple[int, int, bytes], Fields]] = []
        self._targets: list[SendTarget] = []
        self._scheduled = False
        self.batches = 0
        self.datagrams = 0

    def target(
        self, udp: Any, address: tuple[str, int], session: pylibsrtp.Session, counters: Any
    ) -> SendTarget:
        return SendTarget(udp, address, session, counters, self._module.sockaddr)

    def send(self, target: SendTarget, fields: Fields) -> None:
        self._entries.append((target.c, fields))
        self._targets.append(target)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send what was collected (the loop calls it once per iteration that collected any)."""
        self._scheduled = False
        entries, targets = self._entries, self._targets
        if not entries:
            return
        self._entries, self._targets = [], []
        results = self._module.fanout(self._protect, self._room, entries)
        self.batches += 1
        self.datagrams += len(entries)
        for target, result in zip(targets, results, strict=True):
            if result is None:
                self.unsendable += 1
                continue
            if result.__class__ is int:
                length = result
            else:
                target.udp.sendto(result, target.address)
                length = len(result)
            counters = target.counters
            counters[DTLS_TX_PACKETS] += 1
            counters[DTLS_TX_BYTES] += length


def compiled_module() -> tuple[ModuleType, int] | str:
    """media._fastpath and the address of pylibsrtp's srtp_protect, or why they are unusable."""
    try:
        from media import _fastpath  # type: ignore[attr-defined]
    except ImportError as exc:
        return f"media._fastpath is not built ({exc})"
    try:
        from pylibsrtp._binding import ffi, lib

        protect = ffi.addressof(lib, "srtp_protect")
        kind = ffi.typeof(protect).cname
    except (ImportError, AttributeError) as exc:
        return f"pylibsrtp's srtp_protect is not reachable ({exc})"
    if kind != SRTP_PROTECT_TYPE:
        return f"pylibsrtp's srtp_protect is {kind}, not {SRTP_PROTECT_TYPE}"
    return _fastpath, int(ffi.cast("uintptr_t", protect))


def make_fanout(fastpath: Fastpath) -> PyFanout | CFanout:
    """The fanout `fastpath` asks for; logs which one and why."""
    if fastpath == "off":
        logger.info("media fast path: python (fastpath=off)")
        return PyFanout()
    found = compiled_module()
    if isinstance(found, str):
        if fastpath == "on":
            raise FastpathUnavailable(found)
        logger.warning("media fast path: python, because %s", found)
        return PyFanout()
    logger.info("media fast path: compiled (media._fastpath, sendmmsg)")
    return CFanout(*found)
