"""bench.vs_janus reads a server's CPU from /proc and configures Janus with only what it runs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from bench.vs_janus import janus_config, process_cpu


def test_process_cpu_is_what_psutil_reports_for_the_same_process() -> None:
    sum(range(2_000_000))  # some CPU time of our own to read
    times = psutil.Process().cpu_times()
    ours = process_cpu(os.getpid())
    assert times.user + times.system <= ours + 0.02
    assert ours <= psutil.Process().cpu_times().user + psutil.Process().cpu_times().system + 0.02


def test_janus_loads_only_the_videoroom_plugin_and_the_http_transport(tmp_path: Path) -> None:
    config = janus_config(tmp_path, 18088, 17088, "192.0.2.2")
    assert [p.name for p in (tmp_path / "plugins").iterdir()] == ["libjanus_videoroom.so"]
    assert [p.name for p in (tmp_path / "transports").iterdir()] == ["libjanus_http.so"]
    text = config.read_text()
    assert 'ice_enforce_list = "192.0.2.2"' in text
    http = (tmp_path / "janus.transport.http.jcfg").read_text()
    assert "port = 18088" in http and "admin_port = 17088" in http
    assert 'ip = "127.0.0.1"' in http and 'admin_ip = "127.0.0.1"' in http
