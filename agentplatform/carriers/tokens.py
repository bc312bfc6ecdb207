"""Short-lived, single-use tokens that let one call's media stream in.

Whoever admits a call (Twilio's signed voice webhook, or the logged-in admin starting
a browser test call) mints a token for that call id and agent; the media socket is
accepted only if the token in ``start.customParameters`` verifies for that call id
*and* has not been used before. So a stranger who finds the WebSocket URL cannot open
model sessions at our expense, and neither can anyone who saw a token go by: the
first stream spends it, on whichever server process it lands.

Signing is ``signing.Signer`` (one salt per purpose: a browser token never opens a
Twilio stream, nor the other way round); spending is a ``SingleUseStore`` claim of
the token's ``jti``, kept until the token would have expired anyway.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentplatform import signing
from agentplatform.config import Settings
from agentplatform.errors import StreamAuthError
from agentplatform.single_use import MemorySingleUse, SingleUseStore, SingleUseUnavailable

# Short names for the purposes, prefixed to the spent ids so they never collide.
_ID_PREFIX = {signing.STREAM_TOKEN: "stream", signing.BROWSER_CALL_TOKEN: "browser"}


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a verified token allows: one stream for ``call_id`` to ``agent``."""

    call_id: str
    agent: str
    token_id: str
    expires_at: float


class StreamTokens:
    """Mints, verifies and redeems media-stream tokens for one purpose."""

    def __init__(self, secret: bytes | str, *, purpose: str = signing.STREAM_TOKEN,
                 single_use: SingleUseStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = signing.Signer(secret, purpose, clock=clock)
        self._prefix = _ID_PREFIX.get(purpose, purpose)
        self._single_use = single_use if single_use is not None else MemorySingleUse(clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings, *, purpose: str = signing.STREAM_TOKEN,
                      single_use: SingleUseStore | None = None,
                      clock: Callable[[], float] = time.time) -> StreamTokens:
        """Secret: ``stream_token_secret``, else the Twilio auth token, else per-process
        (fine for one process: tokens live for the seconds before their stream starts)."""
        secret = settings.stream_token_secret or settings.twilio_auth_token
        return cls(secret or signing.PROCESS_SECRET, purpose=purpose,
                   single_use=single_use, clock=clock)

    def mint(self, call_id: str, agent: str, ttl: float) -> str:
        """A token for one stream of ``call_id`` to ``agent``, valid for ``ttl`` seconds."""
        return self._signer.dumps({"call": call_id, "agent": agent}, ttl)

    def verify(self, token: str, call_id: str) -> StreamGrant:
        """What ``token`` allows, without spending it; ``StreamAuthError`` if it is
        malformed, forged, for another purpose or call, or expired."""
        try:
            body = self._signer.loads(token)
        except signing.BadToken as exc:
            raise StreamAuthError(f"stream token rejected: {exc}") from exc
        token_call, agent = body.get("call"), body.get("agent")
        if not isinstance(token_call, str) or not isinstance(agent, str):
            raise StreamAuthError("stream token rejected: malformed payload")
        if not hmac.compare_digest(token_call.encode(), call_id.encode()):
            raise StreamAuthError("stream token was minted for another call")
        return StreamGrant(call_id=token_call, agent=agent,
                           token_id=f"{self._prefix}:{body['jti']}",
                           expires_at=float(body["exp"]))

    async def redeem(self, token: str, call_id: str) -> StreamGrant:
        """``verify``, then spend the token: a second stream with it, on any process
        sharing the store, raises ``StreamAuthError``. If the store cannot answer the
        stream is refused too (a replay must not get through an outage)."""
        grant = self.verify(token, call_id)
        try:
            first = await self._single_use.claim(grant.token_id, grant.expires_at)
        except SingleUseUnavailable as exc:
            raise StreamAuthError(f"cannot check whether the stream token was used: {exc}") from exc
        if not first:
            raise StreamAuthError("stream token already used")
        return grant
