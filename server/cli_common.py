"""What every `screenvisit` command shares: the server-setting flags, the settings they make,
and a call to the running server with a short-lived token signed by its own key."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any

import aiohttp

from rooms.roles import Role, Sector
from server.auth import TokenIssuer
from server.config import SETTINGS, Settings, SettingsError
from server.keys import load_or_create_signing_key
from server.timeparse import parse_when


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """The server settings as flags, in their own help section after the command's own options
    (call this last, so that usage lists the command's options first)."""
    group = parser.add_argument_group(
        "server settings", "where the server is and how it runs (each also an environment variable)"
    )
    for setting in SETTINGS:
        group.add_argument(
            setting.flag,
            dest=setting.name.replace("-", "_"),
            default=None,
            help=f"{setting.help} (env {setting.env}, default {setting.default!r})",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {s.name: getattr(args, s.name.replace("-", "_"), None) for s in SETTINGS}
    try:
        return Settings.load(overrides=overrides)
    except SettingsError as exc:
        raise SystemExit(f"screenvisit: bad setting: {exc}") from None


def port_flag(settings: Settings) -> str:
    """` --port N` when the settings name another port than the default, so that a hint can be
    pasted as it is."""
    return "" if settings.port == Settings().port else f" --port {settings.port}"


async def local_issuer(settings: Settings) -> TokenIssuer:
    """Signs with this server's own key (read, or made on first use, off the loop)."""
    key = await asyncio.to_thread(load_or_create_signing_key, settings.key_path)
    return TokenIssuer(settings.issuer, settings.audience, key)


async def call_server(
    settings: Settings,
    role: Role,
    sector: Sector,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    method: str = "POST",
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`method` `path` on the running server as `role`, with a five-minute token signed by its
    own key. An error answer or no server ends the command with one line (no traceback)."""
    issuer = await local_issuer(settings)
    token = issuer.sign(
        sub="cli-" + secrets.token_urlsafe(6),
        role=role,
        sector=sector,
        lifetime=300,
        org=settings.org,
    )
    url = f"http://{settings.host}:{settings.port}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.request(
                method, url, json=body, params=query, headers=headers
            ) as response:
                try:
                    data: dict[str, Any] = await response.json()
                except (aiohttp.ContentTypeError, ValueError):
                    raise SystemExit(
                        f"screenvisit: {url} answered {response.status} without JSON;"
                        " is that a screenvisit server?"
                    ) from None
                if response.status >= 400:
                    error = data.get("error", {})
                    raise SystemExit(f"screenvisit: {error.get('code')}: {error.get('message')}")
                return data
        except aiohttp.ClientConnectionError:
            raise SystemExit(
                f"screenvisit: no server at {url}; start one with"
                f" `screenvisit serve{port_flag(settings)}`"
            ) from None


def time_flag(flag: str, text: str | None) -> float | None:
    """`text` through `server.timeparse.parse_when`, from now; a bad one ends the command with
    one line naming the flag and the forms (no usage dump, no traceback)."""
    if not text:
        return None
    try:
        return parse_when(text, time.time())
    except ValueError as exc:
        raise SystemExit(f"screenvisit: {flag}: {exc}") from None
