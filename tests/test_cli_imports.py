"""The command line's light commands (visit create, token revoke, audit, ...) load neither the
server's application nor aiortc: the test suite runs them about a hundred times, and an operator's
`screenvisit visit create` starts in a third of the time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiortc", "av", "server.app", "server.appkeys", "signaling.bot", "aiohttp.web")


def test_the_command_line_module_loads_no_server_and_no_media() -> None:
    probe = f"import sys, server.cli\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "", f"server.cli loads {done.stdout.strip()}"
