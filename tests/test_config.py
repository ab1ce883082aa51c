from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rooms.cluster import DEFAULT_NODE_TTL
from server import appkeys
from server.app import create_app
from server.config import SETTINGS, Settings, SettingsError


def test_defaults_env_and_flags_layer_in_that_order() -> None:
    assert Settings.load(env={}).port == 8080
    env = {
        "SCREENVISIT_PORT": "9000",
        "SCREENVISIT_DATA_DIR": "/srv/sv",
        "SCREENVISIT_ICE_HOSTS": "10.0.0.5, 127.0.0.1",
    }
    loaded = Settings.load(env=env)
    assert loaded.port == 9000 and loaded.data_dir == Path("/srv/sv")
    assert loaded.ice_hosts == ("10.0.0.5", "127.0.0.1")
    assert Settings.load(env=env, overrides={"port": "9100"}).port == 9100
    assert loaded.base_url == "http://127.0.0.1:9000"
    public = Settings.load(env={"SCREENVISIT_PUBLIC_URL": "https://video.rn.dk/"})
    assert public.base_url == "https://video.rn.dk"


def test_ice_servers_come_only_from_settings() -> None:
    assert Settings.load(env={}).ice_servers == ()
    loaded = Settings.load(
        env={
            "SCREENVISIT_ICE_SERVERS": '[{"urls": "turn:t:443", '
            '"username": "u", "credential": "c"}]'
        }
    )
    assert loaded.ice_servers[0].urls == ("turn:t:443",)
    assert loaded.ice_servers[0].to_browser() == {
        "urls": ["turn:t:443"],
        "username": "u",
        "credential": "c",
    }


def test_bad_settings_are_reported() -> None:
    with pytest.raises(SettingsError):
        Settings.load(env={"SCREENVISIT_PORT": "eighty"})


def test_every_setting_has_an_env_name_and_a_flag() -> None:
    for setting in SETTINGS:
        assert setting.env.startswith("SCREENVISIT_") and setting.flag.startswith("--")


def test_the_node_ttl_is_a_setting_with_the_cluster_default() -> None:
    assert Settings.load(env={}).node_ttl == DEFAULT_NODE_TTL == 6.0
    assert Settings.load(env={"SCREENVISIT_NODE_TTL": "2.5"}).node_ttl == 2.5
    with pytest.raises(SettingsError):
        Settings.load(env={"SCREENVISIT_NODE_TTL": "0"})


async def test_the_node_ttl_reaches_the_cluster_state(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(replace(settings, node_ttl=2.5)))
    assert client.app[appkeys.NODE].cluster.node_ttl == 2.5


def test_the_media_silence_cut_off_is_a_setting() -> None:
    assert Settings.load(env={}).media_silence == 6.0
    assert Settings.load(env={"SCREENVISIT_MEDIA_SILENCE": "1.5"}).media_silence == 1.5
    assert Settings.load(env={}, overrides={"media_silence": "3"}).media_silence == 3.0
    with pytest.raises(SettingsError):
        Settings.load(env={"SCREENVISIT_MEDIA_SILENCE": "0"})
