"""Checks, at start-up, that aiortc's private seams used for forwarding are still in place.

Forwarding needs things aiortc does not offer publicly (see ARCHITECTURE.md): the receiver's
decoder queue and jitter buffer (media.reassembly), the receiver's PLI and NACK senders, the
sender's keyframe hook and RTCP handling, the receiver's RTCP sending (media.remb), the DTLS
transport's receiver registration and REMB routing (media.rtx, media.remb), the sender's start,
retransmissions and reported counters, the DTLS transport's SRTP and counters and aioice's
nominated pairs (media.rtpwriter), aioice's per-component candidate gathering, sockets and
incoming checks (media.ice), the socket callback, receive queue, receiver state and header
extension ids the direct receive path uses (media.directreceive), and pylibsrtp's session
internals (media.srtp). If an aiortc upgrade moves any of them, fail loudly instead of silently
decoding, dropping keyframe requests, stalling on loss or offering the wrong addresses.
"""

import inspect

import aioice
import aiortc
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import rtcrtpreceiver
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensionsMap

from media.errors import SeamMoved

SUPPORTED_AIORTC = ("1.16.",)


def check_seams() -> None:
    """Raise SeamMoved naming every seam that is missing."""
    problems: list[str] = []
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        problems.append(
            f"aiortc {aiortc.__version__} is outside the checked range {SUPPORTED_AIORTC}"
        )
    init_source = inspect.getsource(RTCRtpReceiver.__init__)
    if "self.__decoder_queue: queue.Queue = queue.Queue()" not in init_source:
        problems.append("RTCRtpReceiver.__decoder_queue is no longer created in __init__")
    receive_source = inspect.getsource(RTCRtpReceiver.receive)
    if "self.__decoder_queue" not in receive_source:
        problems.append("RTCRtpReceiver.receive no longer hands __decoder_queue to the decoder")
    handle_source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    if "self.__decoder_queue.put((codec, encoded_frame))" not in handle_source:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer queues encoded frames")
    if "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" not in handle_source:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer uses __jitter_buffer.add")
    if "self.__jitter_buffer = JitterBuffer(" not in init_source:
        problems.append("RTCRtpReceiver.__jitter_buffer is no longer created in __init__")
    if not callable(getattr(JitterBuffer, "_remove_frame", None)):
        problems.append("JitterBuffer._remove_frame is gone")
    if not hasattr(rtcrtpreceiver, "TimestampMapper"):
        problems.append("aiortc.rtcrtpreceiver.TimestampMapper is gone")
    for sender in ("_send_rtcp_pli", "_send_rtcp_nack"):
        if not inspect.iscoroutinefunction(getattr(RTCRtpReceiver, sender, None)):
            problems.append(f"RTCRtpReceiver.{sender} is gone")
    if not inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_send_rtcp", None)):
        problems.append("RTCRtpReceiver._send_rtcp is gone")
    if "self.__remote_bitrate_estimator is not None" not in handle_source:
        problems.append("RTCRtpReceiver no longer skips a missing __remote_bitrate_estimator")
    if "self.__rtcp_ssrc = " not in inspect.getsource(RTCRtpReceiver):
        problems.append("RTCRtpReceiver no longer keeps its RTCP SSRC in __rtcp_ssrc")
    if "unpack_remb_fci" not in inspect.getsource(RtpRouter.route_rtcp):
        problems.append("RtpRouter no longer routes REMB to senders by the SSRCs it names")
    rtcp_source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    if "self._send_keyframe()" not in rtcp_source:
        problems.append("RTCRtpSender no longer routes PLI/FIR to _send_keyframe")
    if "await self._retransmit(seq)" not in rtcp_source:
        problems.append("RTCRtpSender no longer answers NACKs through _retransmit")
    sender_init = inspect.getsource(RTCRtpSender.__init__)
    if "self.__rtt: Optional[float] = None" not in sender_init:
        problems.append("RTCRtpSender no longer keeps its measured round trip in __rtt")
    for counter in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count"):
        if f"self.__{counter} = 0" not in sender_init:
            problems.append(f"RTCRtpSender no longer reports __{counter}")
    if "transceiver.sender.send(" not in inspect.getsource(RTCPeerConnection):
        problems.append("RTCPeerConnection no longer starts senders through sender.send")
    if "self._state = State.NEW" not in inspect.getsource(RTCDtlsTransport.__init__):
        problems.append("RTCDtlsTransport no longer keeps its State in _state")
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    for line in ("self._tx_srtp.protect(data)", "self.__tx_bytes +=", "self.__tx_packets +="):
        if line not in send_rtp:
            problems.append(f"RTCDtlsTransport._send_rtp no longer does {line!r}")
    if "self._nominated.get(component)" not in inspect.getsource(aioice.Connection.sendto):
        problems.append("aioice.Connection no longer sends on its _nominated pairs")
    if "self.transport.sendto(data, addr)" not in inspect.getsource(StunProtocol.send_data):
        problems.append("aioice's StunProtocol no longer sends on its transport")
    if "self._connection = gatherer._connection" not in inspect.getsource(RTCIceTransport):
        problems.append("RTCIceTransport no longer keeps its aioice connection in _connection")
    for encoder in (Vp8Encoder, OpusEncoder):
        if not callable(getattr(encoder, "pack", None)):
            problems.append(f"{encoder.__name__}.pack (pre-encoded packets) is gone")
    if "self._protocols" not in inspect.getsource(aioice.Connection.get_component_candidates):
        problems.append("aioice.Connection no longer keeps its sockets' protocols in _protocols")
    dtls_init = inspect.getsource(RTCDtlsTransport.__init__)
    if "self._rtp_router = RtpRouter()" not in dtls_init:
        problems.append("RTCDtlsTransport no longer keeps its RtpRouter in _rtp_router")
    if not callable(getattr(RTCDtlsTransport, "_register_rtp_receiver", None)):
        problems.append("RTCDtlsTransport._register_rtp_receiver is gone")
    if "self.ssrc_table" not in inspect.getsource(RtpRouter.route_rtp):
        problems.append("RtpRouter.route_rtp no longer routes by ssrc_table")
    if not hasattr(aioice.Connection, "get_component_candidates"):
        problems.append("aioice.Connection.get_component_candidates is gone")
    if "_connection" not in inspect.getsource(RTCIceGatherer.__init__):
        problems.append("RTCIceGatherer no longer keeps its aioice connection in _connection")
    if "self.receiver.request_received(" not in inspect.getsource(StunProtocol.datagram_received):
        # media.ice drops checks from refused sources there
        problems.append("aioice's StunProtocol no longer hands checks to request_received")
    problems += _direct_receive_problems(init_source, handle_source, dtls_init)
    if problems:
        raise SeamMoved("; ".join(problems))


def _direct_receive_problems(receiver_init: str, handle_rtp: str, dtls_init: str) -> list[str]:
    """media.directreceive and media.srtp: what they read and replace."""
    problems: list[str] = []
    datagram = inspect.getsource(StunProtocol.datagram_received)
    if "self.receiver.data_received(data" not in datagram:
        problems.append("aioice's StunProtocol no longer hands media to its connection")
    if "self._queue.put_nowait((data, component))" not in inspect.getsource(
        aioice.Connection.data_received
    ):
        problems.append("aioice.Connection no longer queues received data in _queue")
    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    for line in ("self.__rx_bytes += len(data)", "self.__rx_packets += 1", "self._rx_srtp"):
        if line not in recv_next:
            problems.append(f"RTCDtlsTransport._recv_next no longer does {line!r}")
    if "self._rtp_header_extensions_map = " not in dtls_init:
        problems.append("RTCDtlsTransport no longer keeps _rtp_header_extensions_map")
    if "self.__ids = HeaderExtensions()" not in inspect.getsource(HeaderExtensionsMap.__init__):
        problems.append("HeaderExtensionsMap no longer keeps its ids in __ids")
    for name in ("__codecs", "__rtx_ssrc", "__remote_streams", "__nack_generator"):
        if f"self.{name}" not in receiver_init:
            problems.append(f"RTCRtpReceiver no longer keeps {name}")
    if "self._enabled = True" not in receiver_init:
        problems.append("RTCRtpReceiver no longer keeps _enabled")
    for line in (
        "self.__remote_streams[packet.ssrc].add(packet)",
        "self.__nack_generator.add(packet)",
        "original_ssrc = self.__rtx_ssrc.get(packet.ssrc)",
    ):
        if line not in handle_rtp:
            problems.append(f"RTCRtpReceiver._handle_rtp_packet no longer does {line!r}")
    session_init = inspect.getsource(pylibsrtp.Session.__init__)
    for line in ('self._cdata = ffi.new("char[]", 1500)', "self._buffer = ", "self._srtp = "):
        if line not in session_init:
            problems.append(f"pylibsrtp.Session no longer sets {line.strip(' =')}")
    if not hasattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN"):
        problems.append("pylibsrtp.SRTP_MAX_TRAILER_LEN is gone")
    return problems
