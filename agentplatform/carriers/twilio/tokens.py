"""Short-lived signed tokens that let one call's media stream in.

The voice webhook (itself signature-checked) mints a token for the CallSid and
puts it in a ``<Parameter>``; the media WebSocket accepts the stream only if the
token in ``start.customParameters`` verifies for that CallSid. So a stranger who
finds the WebSocket URL cannot open model sessions at our expense.

Token: ``base64url(json([call_sid, agent, expiry])) "." base64url(hmac_sha256)``.
The call id travels inside so a mismatch says "another call", not just "bad".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import orjson

from agentplatform.config import Settings
from agentplatform.errors import StreamAuthError

# Used when no secret is configured: fine for one process, and tokens only live
# for the seconds between the webhook and the WebSocket anyway.
_PROCESS_SECRET = secrets.token_bytes(32)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Mints and verifies stream tokens with one secret."""

    def __init__(self, secret: bytes | str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else secret
        if not self._secret:
            raise ValueError("stream token secret must not be empty")
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> StreamTokens:
        """Secret: ``stream_token_secret``, else the Twilio auth token, else per-process."""
        secret = settings.stream_token_secret or settings.twilio_auth_token
        return cls(secret.encode() if secret else _PROCESS_SECRET, clock=clock)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def mint(self, call_sid: str, agent: str, ttl: float) -> str:
        """A token for ``call_sid`` that names ``agent`` and expires in ``ttl`` seconds."""
        expiry = int(self._clock() + ttl)
        body = orjson.dumps([call_sid, agent, expiry])
        return f"{_b64e(body)}.{_b64e(self._mac(body))}"

    def verify(self, token: str, call_sid: str) -> str:
        """Return the agent the token names; raise ``StreamAuthError`` if the token
        is malformed, tampered with, minted for another call, or expired."""
        try:
            body_part, mac_part = token.split(".")
            body, mac = _b64d(body_part), _b64d(mac_part)
        except (ValueError, AttributeError) as exc:
            raise StreamAuthError("malformed stream token") from exc
        if not hmac.compare_digest(mac, self._mac(body)):
            raise StreamAuthError("stream token signature does not match")
        try:
            token_call, agent, expiry = orjson.loads(body)
            expiry = int(expiry)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise StreamAuthError("malformed stream token") from exc
        if not hmac.compare_digest(str(token_call).encode(), call_sid.encode()):
            raise StreamAuthError("stream token was minted for another call")
        if self._clock() >= expiry:
            raise StreamAuthError("stream token expired")
        return str(agent)
