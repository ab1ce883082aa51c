"""Response headers: framing only by configured ancestors, no MIME sniffing, HSTS under TLS."""

from __future__ import annotations

import dataclasses
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.app import create_app
from server.config import Settings, SettingsError
from tests.support.servers import free_port

PATHS = ("/", "/v/some-visit", "/evaluation", "/static/join.js", "/healthz", "/api/visits", "/nope")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", ice_hosts=("127.0.0.1",))


async def _get(client: Any, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
    response: aiohttp.ClientResponse = await client.get(path, **kwargs)
    await response.read()
    return response


async def test_every_response_says_nosniff(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    missing = []
    for path in PATHS:
        response = await _get(client, path)
        if response.headers.get("X-Content-Type-Options") != "nosniff":
            missing.append((path, response.status))
    assert missing == []


async def test_pages_may_not_be_framed_by_default(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    for path in ("/", "/v/some-visit", "/evaluation"):
        policy = (await _get(client, path)).headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy, (path, policy)


async def test_frame_ancestors_setting_lets_an_ehr_embed_the_pages(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    configured = Settings.load(
        env={
            "SCREENVISIT_DATA_DIR": str(tmp_path / "data"),
            "SCREENVISIT_FRAME_ANCESTORS": "'self' https://ehr.example.dk",
        }
    )
    client = await aiohttp_client(create_app(configured))
    policy = (await _get(client, "/v/some-visit")).headers["Content-Security-Policy"]
    directives = [d.strip() for d in policy.split(";")]
    assert "frame-ancestors 'self' https://ehr.example.dk" in directives


@pytest.mark.parametrize(
    "value", ["https://a.example; script-src *", "https://a.example, *", "x\r\nSet-Cookie: a=b", ""]
)
def test_a_frame_ancestors_value_that_would_change_the_policy_is_refused(value: str) -> None:
    with pytest.raises(SettingsError):
        Settings.load(env={"SCREENVISIT_FRAME_ANCESTORS": value})


async def test_no_hsts_over_plain_http_even_if_an_untrusted_client_claims_https(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    for headers in ({}, {"X-Forwarded-Proto": "https"}):
        response = await _get(client, "/", headers=headers)
        assert "Strict-Transport-Security" not in response.headers


async def test_hsts_when_a_trusted_proxy_says_https(
    aiohttp_client: Any, settings: Settings
) -> None:
    behind_proxy = dataclasses.replace(settings, trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(behind_proxy))
    response = await _get(client, "/api/visits", headers={"X-Forwarded-Proto": "https"})
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = await _get(client, "/api/visits", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in plain.headers


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_url(tmp_path: Path, settings: Settings) -> AsyncIterator[str]:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


async def test_hsts_over_tls(tls_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(tls_url + "/", ssl=False) as response,
    ):
        await response.read()
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
