"""Every module of ours imports first and on its own: no import cycle hides behind the order in
which the app happens to import them (a script or a test that starts from another module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: One process; our modules are dropped from sys.modules before each import, so each is first.
SCRIPT = """
import importlib, pkgutil, sys
ours = ("server", "rooms", "signaling", "media")
names = [f"{p}.{m.name}" for p in ours for m in pkgutil.iter_modules([p])]
for name in names:
    for loaded in [k for k in sys.modules if k.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(f"{name}: {exc}")
"""


def test_every_module_imports_on_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout
