"""One signer for every token and cookie the platform hands out.

Media-stream tokens, browser one-call tokens and admin session cookies are all
"a small JSON payload, signed, with an expiry". They share this one implementation
(itsdangerous's HMAC serializer) and differ only by *purpose*: each purpose is a
distinct salt, so a value signed for one use never verifies for another, even under
the same secret.

Every payload carries ``exp`` (epoch seconds) and ``jti`` (a random id): the expiry is
checked here; the id lets a caller make a token single-use (see ``single_use.py``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

# Salts, one per use. Changing one invalidates every value signed for that use.
STREAM_TOKEN = "agentplatform.stream-token.v1"
BROWSER_CALL_TOKEN = "agentplatform.browser-call-token.v1"
SESSION_COOKIE = "agentplatform.session-cookie.v1"

# Used when no secret is configured: fine for one process (values it signs die with it).
PROCESS_SECRET = secrets.token_bytes(32)


class BadToken(ValueError):
    """The value is malformed, forged, signed for another purpose, or expired."""


class Signer:
    """Signs and verifies JSON payloads for one purpose."""

    def __init__(self, secret: bytes | str, purpose: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("signing secret must not be empty")
        if not purpose:
            raise ValueError("signing purpose must not be empty")
        self._serializer = URLSafeSerializer(key, salt=purpose)
        self._clock = clock
        self.purpose = purpose

    def dumps(self, payload: dict[str, Any], ttl: float) -> str:
        """Sign ``payload`` (plus ``exp`` and a fresh ``jti``), valid for ``ttl`` seconds."""
        body = dict(payload)
        body["exp"] = int(self._clock() + ttl)
        body["jti"] = secrets.token_urlsafe(12)
        return self._serializer.dumps(body)

    def loads(self, value: str | None) -> dict[str, Any]:
        """The payload of ``value``; raise ``BadToken`` if it does not verify or has expired."""
        if not value or not isinstance(value, str) or len(value) > 4096:
            raise BadToken("missing or oversized signed value")
        try:
            body = self._serializer.loads(value)
        except BadSignature as exc:
            raise BadToken("signature does not match") from exc
        if not isinstance(body, dict):
            raise BadToken("malformed signed value")
        try:
            expiry = int(body["exp"])
            str(body["jti"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadToken("malformed signed value") from exc
        if self._clock() >= expiry:
            raise BadToken("expired")
        return body
