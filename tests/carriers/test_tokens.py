"""Stream tokens: good for one call, one agent, one stream, a short while; nothing else."""

from __future__ import annotations

import pytest

from agentplatform import signing
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.config import Settings
from agentplatform.errors import StreamAuthError
from agentplatform.single_use import MemorySingleUse, SingleUseUnavailable


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_fresh_token_verifies_and_names_its_call_and_agent() -> None:
    tokens = StreamTokens(b"s3cret")
    grant = tokens.verify(tokens.mint("CA1", "front-desk", 60), "CA1")
    assert (grant.call_id, grant.agent) == ("CA1", "front-desk")
    assert grant.token_id.startswith("stream:")


def test_an_expired_token_is_rejected() -> None:
    clock = Clock()
    tokens = StreamTokens(b"s3cret", clock=clock)
    token = tokens.mint("CA1", "front-desk", 30)
    clock.now += 29
    assert tokens.verify(token, "CA1").agent == "front-desk"
    clock.now += 1
    with pytest.raises(StreamAuthError, match="expired"):
        tokens.verify(token, "CA1")


def test_a_token_for_another_call_is_rejected() -> None:
    tokens = StreamTokens(b"s3cret")
    with pytest.raises(StreamAuthError, match="another call"):
        tokens.verify(tokens.mint("CA1", "front-desk", 60), "CA2")


def test_a_token_with_a_changed_payload_or_signature_is_rejected() -> None:
    tokens = StreamTokens(b"s3cret")
    token = tokens.mint("CA1", "front-desk", 60)
    body, mac = token.rsplit(".", 1)
    flipped = mac[:10] + ("Q" if mac[10] != "Q" else "g") + mac[11:]
    with pytest.raises(StreamAuthError, match="signature"):
        tokens.verify(f"{body}.{flipped}", "CA1")
    forged = signing.Signer(b"guess", signing.STREAM_TOKEN).dumps(
        {"call": "CA1", "agent": "admin"}, 60)
    with pytest.raises(StreamAuthError, match="signature"):
        tokens.verify(forged, "CA1")


def test_a_token_signed_with_another_secret_or_for_another_purpose_is_rejected() -> None:
    with pytest.raises(StreamAuthError, match="signature"):
        StreamTokens(b"s3cret").verify(StreamTokens(b"other").mint("CA1", "x", 60), "CA1")
    browser = StreamTokens(b"s3cret", purpose=signing.BROWSER_CALL_TOKEN)
    with pytest.raises(StreamAuthError, match="signature"):
        StreamTokens(b"s3cret").verify(browser.mint("CA1", "x", 60), "CA1")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "!!!.???", "x" * 5000])
def test_junk_is_rejected_not_crashed_on(junk: str) -> None:
    with pytest.raises(StreamAuthError):
        StreamTokens(b"s3cret").verify(junk, "CA1")


def test_secret_comes_from_settings_in_order() -> None:
    explicit = StreamTokens.from_settings(Settings(_env_file=None, stream_token_secret="a", twilio_auth_token="b"))
    from_twilio = StreamTokens.from_settings(Settings(_env_file=None, twilio_auth_token="a"))
    process_a = StreamTokens.from_settings(Settings(_env_file=None))
    process_b = StreamTokens.from_settings(Settings(_env_file=None))
    # Same secret "a" either way, so tokens cross-verify.
    assert from_twilio.verify(explicit.mint("CA1", "x", 60), "CA1").agent == "x"
    assert process_b.verify(process_a.mint("CA1", "y", 60), "CA1").agent == "y"
    with pytest.raises(StreamAuthError):
        explicit.verify(process_a.mint("CA1", "y", 60), "CA1")


async def test_a_token_is_redeemed_once() -> None:
    tokens = StreamTokens(b"s3cret", single_use=MemorySingleUse())
    token = tokens.mint("CA1", "front-desk", 60)
    assert (await tokens.redeem(token, "CA1")).agent == "front-desk"
    with pytest.raises(StreamAuthError, match="already used"):
        await tokens.redeem(token, "CA1")


async def test_a_token_that_fails_verification_is_not_spent() -> None:
    tokens = StreamTokens(b"s3cret", single_use=MemorySingleUse())
    token = tokens.mint("CA1", "front-desk", 60)
    with pytest.raises(StreamAuthError, match="another call"):
        await tokens.redeem(token, "CA2")
    assert (await tokens.redeem(token, "CA1")).agent == "front-desk"


class Unavailable:
    async def claim(self, token_id: str, expires_at: float) -> bool:
        raise SingleUseUnavailable("database is down")

    async def is_claimed(self, token_id: str) -> bool:
        raise SingleUseUnavailable("database is down")

    async def close(self) -> None: ...


async def test_when_used_tokens_cannot_be_checked_the_stream_is_refused() -> None:
    tokens = StreamTokens(b"s3cret", single_use=Unavailable())
    with pytest.raises(StreamAuthError, match="cannot check"):
        await tokens.redeem(tokens.mint("CA1", "front-desk", 60), "CA1")
