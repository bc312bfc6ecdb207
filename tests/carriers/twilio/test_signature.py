"""Signature URLs behind a proxy, and the check itself."""

from __future__ import annotations

import pytest
from starlette.datastructures import URL

from agentplatform.carriers.twilio import signature
from agentplatform.carriers.twilio.signature import check_bind_host
from agentplatform.config import Settings
from agentplatform.errors import PlatformError

TOKEN = "auth-token"


def test_request_url_is_rebuilt_from_public_url_behind_a_proxy() -> None:
    url = URL("http://10.0.0.5:8000/twilio/voice?x=1")
    assert signature.public_request_url(url, "https://calls.example.com") == "https://calls.example.com/twilio/voice?x=1"
    assert signature.public_request_url(url, "https://example.com/base/") == "https://example.com/base/twilio/voice?x=1"
    assert signature.public_request_url(url, "") == "http://10.0.0.5:8000/twilio/voice?x=1"


def test_stream_upgrade_url_is_wss_on_the_public_or_host_header_host() -> None:
    url = URL("ws://10.0.0.5:8000/twilio/media")
    assert signature.stream_upgrade_url(url, "10.0.0.5:8000", "https://calls.example.com") == "wss://calls.example.com/twilio/media"
    assert signature.stream_upgrade_url(url, "calls.example.com", "") == "wss://calls.example.com/twilio/media"


def test_a_signed_request_validates_and_any_change_does_not() -> None:
    url = "https://calls.example.com/twilio/voice"
    params = {"CallSid": "CA1", "To": "+15550100"}
    sig = signature.sign(TOKEN, url, params)
    assert signature.is_valid(TOKEN, url, params, sig)
    assert not signature.is_valid(TOKEN, url, {**params, "To": "+15550199"}, sig)
    assert not signature.is_valid(TOKEN, url + "x", params, sig)
    assert not signature.is_valid("other-token", url, params, sig)
    assert not signature.is_valid(TOKEN, url, params, None)
    assert not signature.is_valid(TOKEN, url, params, "")


# ------------------------------------------------------------ the insecure escape hatch


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "calls.example.com"])
def test_skipping_signatures_refuses_to_serve_on_a_non_loopback_host(host: str) -> None:
    settings = Settings(_env_file=None, insecure_skip_twilio_signature=True)
    with pytest.raises(PlatformError, match="INSECURE_SKIP_TWILIO_SIGNATURE"):
        check_bind_host(settings, host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_skipping_signatures_is_allowed_on_loopback(host: str) -> None:
    check_bind_host(Settings(_env_file=None, insecure_skip_twilio_signature=True), host)


def test_with_signatures_checked_any_host_may_be_served() -> None:
    check_bind_host(Settings(_env_file=None, twilio_auth_token="t"), "0.0.0.0")


def test_serve_exits_before_listening_when_the_hatch_is_open_on_a_public_host(
        monkeypatch, capsys) -> None:
    import argparse

    from agentplatform import cli
    from agentplatform.config import get_settings

    monkeypatch.setenv("INSECURE_SKIP_TWILIO_SIGNATURE", "1")
    get_settings.cache_clear()
    try:
        assert cli._serve(argparse.Namespace(host="0.0.0.0", port=1)) == 2
    finally:
        get_settings.cache_clear()
    assert "loopback" in capsys.readouterr().err
