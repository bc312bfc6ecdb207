"""A call from the admin's browser, down exactly the path a phone call takes.

The browser speaks the Twilio Media Streams protocol (``connected``, ``start``,
``media``, ``mark``, ``stop``; it reads ``media``, ``mark`` and ``clear``), so the stream
is a :class:`TwilioCallAudio` and the bridge, the records and the model session are
the ones a real call uses. Only call control differs: a browser has no phone line,
so hang-up and transfer close the socket with a reason the page shows. No provider
key ever reaches the browser: it holds only a one-call token, spent when the stream
starts (a second socket with it is closed 1008, on any server process sharing the
database or Redis).
"""

from __future__ import annotations

from agentplatform import signing
from agentplatform.carriers.base import CallInfo
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.stream import NORMAL_CLOSURE, TwilioCallAudio
from agentplatform.config import Settings
from agentplatform.single_use import SingleUseStore

MEDIA_PATH = "/browser-call/media"
CALL_PREFIX = "BR"  # browser call ids, beside Twilio's CA… CallSids in the records
BROWSER_NUMBER = "browser"


def browser_tokens(settings: Settings, single_use: SingleUseStore | None = None) -> StreamTokens:
    """Tokens for browser streams, signed for this purpose alone (its own salt), so a
    browser token can never open a Twilio media stream or the other way round; spent
    in ``single_use`` when the stream starts, so one token opens one call."""
    return StreamTokens.from_settings(settings, purpose=signing.BROWSER_CALL_TOKEN,
                                      single_use=single_use)


class BrowserCallAudio(TwilioCallAudio):
    """A Media Stream from the admin's browser: no REST control, so ending or
    transferring the call closes the socket, and the close reason tells the page why."""

    carrier = "browser"

    async def start(self) -> CallInfo:
        info = await super().start()
        # Who called is the browser, whatever parameters it sent.
        info.from_number = BROWSER_NUMBER
        info.to_number = BROWSER_NUMBER
        return info

    async def hang_up(self, say: str | None = None) -> None:
        await self._close(NORMAL_CLOSURE, (say or "the agent ended the call")[:120])

    async def transfer(self, number: str) -> None:
        await self._close(NORMAL_CLOSURE, f"transferred to {number}")
