"""Signature URLs behind a proxy, and the check itself."""

from __future__ import annotations

from starlette.datastructures import URL

from agentplatform.carriers.twilio import signature

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
