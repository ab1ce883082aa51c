"""Capture-time stamps on encoded video frames, for measuring end-to-end frame latency.

A light participant that sends a pre-encoded loop (`media.encoded`) can append a 12-byte trailer
to each VP8 frame it sends: a marker and the wall-clock time it handed the frame to its sender.
The SFU forwards encoded frames untouched, so a light subscriber reads the trailer back and
knows how long the frame took from the publisher's sender to its own receiver (both clocks must
agree: on one machine they do; across machines they need NTP). A VP8 decoder never reads past
its last partition, so a stamped frame still decodes; a server that decodes and re-encodes
(the relay baseline) drops the stamp, and then nothing is measured.

Only load tools stamp: a browser's frames are never changed.
"""

from __future__ import annotations

import time

#: Starts the trailer; 0xFF then b"SVt" is unlikely to end a real VP8 frame by chance.
STAMP_MARKER = b"\xffSVt"
STAMP_BYTES = len(STAMP_MARKER) + 8


def stamp(data: bytes, now_ns: int | None = None) -> bytes:
    """`data` with the current wall-clock time (nanoseconds) appended."""
    sent = time.time_ns() if now_ns is None else now_ns
    return data + STAMP_MARKER + sent.to_bytes(8, "big")


def read_stamp(data: bytes) -> int | None:
    """The sending time (ns) a stamped frame carries, or None for an unstamped frame."""
    if len(data) <= STAMP_BYTES or data[-STAMP_BYTES:-8] != STAMP_MARKER:
        return None
    return int.from_bytes(data[-8:], "big")
