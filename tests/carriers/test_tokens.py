"""Stream tokens: good for one call, one agent, a short while; nothing else."""

from __future__ import annotations

import base64

import orjson
import pytest

from agentplatform.carriers.twilio.tokens import StreamTokens
from agentplatform.config import Settings
from agentplatform.errors import StreamAuthError


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_fresh_token_verifies_and_names_its_agent() -> None:
    tokens = StreamTokens(b"s3cret")
    assert tokens.verify(tokens.mint("CA1", "front-desk", 60), "CA1") == "front-desk"


def test_an_expired_token_is_rejected() -> None:
    clock = Clock()
    tokens = StreamTokens(b"s3cret", clock=clock)
    token = tokens.mint("CA1", "front-desk", 30)
    clock.now += 29
    assert tokens.verify(token, "CA1") == "front-desk"
    clock.now += 1
    with pytest.raises(StreamAuthError, match="expired"):
        tokens.verify(token, "CA1")


def test_a_token_for_another_call_is_rejected() -> None:
    tokens = StreamTokens(b"s3cret")
    with pytest.raises(StreamAuthError, match="another call"):
        tokens.verify(tokens.mint("CA1", "front-desk", 60), "CA2")


def test_a_token_with_a_swapped_agent_is_rejected() -> None:
    tokens = StreamTokens(b"s3cret")
    body, mac = tokens.mint("CA1", "front-desk", 60).split(".")
    forged_body = base64.urlsafe_b64encode(orjson.dumps(["CA1", "admin", 9_999_999_999])).rstrip(b"=").decode()
    with pytest.raises(StreamAuthError, match="signature"):
        tokens.verify(f"{forged_body}.{mac}", "CA1")


def test_a_token_with_a_changed_signature_is_rejected() -> None:
    tokens = StreamTokens(b"s3cret")
    body, mac = tokens.mint("CA1", "front-desk", 60).split(".")
    flipped = mac[:10] + ("Q" if mac[10] != "Q" else "g") + mac[11:]
    with pytest.raises(StreamAuthError, match="signature"):
        tokens.verify(f"{body}.{flipped}", "CA1")


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    token = StreamTokens(b"other").mint("CA1", "front-desk", 60)
    with pytest.raises(StreamAuthError, match="signature"):
        StreamTokens(b"s3cret").verify(token, "CA1")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "!!!.???"])
def test_junk_is_rejected_not_crashed_on(junk: str) -> None:
    with pytest.raises(StreamAuthError):
        StreamTokens(b"s3cret").verify(junk, "CA1")


def test_secret_comes_from_settings_in_order() -> None:
    explicit = StreamTokens.from_settings(Settings(_env_file=None, stream_token_secret="a", twilio_auth_token="b"))
    from_twilio = StreamTokens.from_settings(Settings(_env_file=None, twilio_auth_token="a"))
    process_a = StreamTokens.from_settings(Settings(_env_file=None))
    process_b = StreamTokens.from_settings(Settings(_env_file=None))
    # Same secret "a" either way, so tokens cross-verify.
    assert from_twilio.verify(explicit.mint("CA1", "x", 60), "CA1") == "x"
    assert process_b.verify(process_a.mint("CA1", "y", 60), "CA1") == "y"
    with pytest.raises(StreamAuthError):
        explicit.verify(process_a.mint("CA1", "y", 60), "CA1")
