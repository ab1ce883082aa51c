"""The operations settings: metrics port, log format, webhook endpoints and their secret (a bad
secret is refused, and never echoed)."""

from __future__ import annotations

import base64

import pytest

from server.config import Settings, SettingsError

GOOD = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_defaults_serve_no_metrics_and_send_no_webhooks() -> None:
    settings = Settings.load(env={})
    assert settings.metrics_port is None and settings.metrics_host == "127.0.0.1"
    assert settings.log_format == "console"
    assert settings.webhook_urls == () and settings.worker == 0


def test_webhook_urls_are_a_list_and_the_secret_stays_out_of_repr() -> None:
    settings = Settings.load(
        env={
            "SCREENVISIT_WEBHOOK_URL": "https://a.example/hooks, https://b.example/hooks",
            "SCREENVISIT_WEBHOOK_SECRET": GOOD,
            "SCREENVISIT_METRICS_PORT": "9101",
            "SCREENVISIT_LOG_FORMAT": "JSON",
        }
    )
    assert settings.webhook_urls == ("https://a.example/hooks", "https://b.example/hooks")
    assert settings.metrics_port == 9101 and settings.log_format == "json"
    assert GOOD not in repr(settings)


@pytest.mark.parametrize("secret", ["", "not-whsec", "whsec_", "whsec_%%%%", GOOD + "x!"])
def test_a_webhook_url_needs_a_whsec_secret_and_the_error_never_echoes_it(secret: str) -> None:
    env = {
        "SCREENVISIT_WEBHOOK_URL": "https://a.example/hooks",
        "SCREENVISIT_WEBHOOK_SECRET": secret,
    }
    with pytest.raises(SettingsError) as refused:
        Settings.load(env=env)
    assert "webhook-secret" in str(refused.value) or "webhook-url" in str(refused.value)
    if len(secret) > len("whsec_"):
        assert secret not in str(refused.value)


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(SettingsError, match="log-format"):
        Settings.load(env={"SCREENVISIT_LOG_FORMAT": "xml"})
