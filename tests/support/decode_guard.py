"""Counts every decoder aiortc creates and every frame it decodes, in this process.

`python -m tests.support.decode_guard serve ...` runs the real server with the guard installed
and writes the counts as JSON to $SCREENVISIT_DECODE_REPORT when the server exits. An SFU that
forwards encoded frames must report zero; a slide back to transcoding cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import aiortc.rtcrtpreceiver


def install_guard() -> dict[str, int]:
    """Wrap aiortc's decoder factory (as used by the receiver's decoder thread); return counts."""
    counts = {"decoders": 0, "frames": 0}
    original = aiortc.rtcrtpreceiver.get_decoder

    class CountingDecoder:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def decode(self, encoded_frame: Any) -> Any:
            counts["frames"] += 1
            return self._inner.decode(encoded_frame)

    def counting_get_decoder(codec: Any) -> CountingDecoder:
        counts["decoders"] += 1
        return CountingDecoder(original(codec))

    aiortc.rtcrtpreceiver.get_decoder = counting_get_decoder  # type: ignore[assignment]
    return counts


def main() -> int:
    counts = install_guard()
    from server.cli import main as cli_main

    try:
        return cli_main(sys.argv[1:])
    finally:
        report = os.environ.get("SCREENVISIT_DECODE_REPORT")
        if report:
            with open(report, "w") as handle:
                json.dump(counts, handle)


if __name__ == "__main__":
    sys.exit(main())
