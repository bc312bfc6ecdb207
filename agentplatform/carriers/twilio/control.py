"""Hang up and transfer a live call through Twilio's REST API.

Kept apart from the media stream on purpose: the stream only moves audio, and a
REST call (hundreds of ms, may fail) must never sit on the audio path. The
``twilio`` client is synchronous, so every request runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging

from twilio.base.exceptions import TwilioException
from twilio.http import HttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from agentplatform.config import Settings
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)

# Twilio answers 404 (error 20404) for a call that no longer exists: it ended.
_GONE_STATUS = 404
_GONE_CODE = 20404


def transfer_twiml(number: str) -> str:
    """The TwiML that replaces the stream with a dial to ``number``."""
    response = VoiceResponse()
    response.dial(number)
    return str(response)


def say_and_hang_up_twiml(text: str) -> str:
    """The TwiML that replaces the stream with a spoken message, then hangs up."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)


def rest_client(account_sid: str, auth_token: str, api_base_url: str = "",
                http_client: HttpClient | None = None) -> Client:
    """The ``twilio`` REST client, its API base URL moved to ``api_base_url`` when
    given (``TWILIO_API_BASE_URL``: a simulator, a regional proxy)."""
    client = Client(account_sid, auth_token, http_client=http_client)
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
    return client


class TwilioCallControl:
    """REST call control for one Twilio account."""

    def __init__(self, account_sid: str, auth_token: str, *, http_client: HttpClient | None = None,
                 api_base_url: str = "") -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio call control needs an account sid and an auth token")
        self._client = rest_client(account_sid, auth_token, api_base_url, http_client)

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioCallControl | None:
        """The control for the configured account, or ``None`` without credentials
        (the stream then ends calls by closing, and cannot transfer)."""
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            return None
        return cls(settings.twilio_account_sid, settings.twilio_auth_token,
                   api_base_url=settings.twilio_api_base_url)

    async def hang_up(self, call_sid: str, say: str | None = None) -> None:
        """End the call, first speaking ``say`` in Twilio's voice when given (the
        apology when no model can be reached). A call already ended counts as done."""
        if say:
            await self._update(call_sid, twiml=say_and_hang_up_twiml(say))
        else:
            await self._update(call_sid, status="completed")

    async def transfer(self, call_sid: str, number: str) -> None:
        """Replace the call's TwiML with a ``<Dial>``; Twilio then stops the stream."""
        await self._update(call_sid, twiml=transfer_twiml(number))

    async def replace_twiml(self, call_sid: str, twiml: str) -> None:
        """Run ``twiml`` on the call in place of what runs now (``<Play digits>``
        then a fresh stream: touch-tones on a streamed call)."""
        await self._update(call_sid, twiml=twiml)

    async def _update(self, call_sid: str, **fields: str) -> None:
        try:
            await asyncio.to_thread(self._client.calls(call_sid).update, **fields)
        except TwilioException as exc:
            # Both the legacy and the RFC 9457 error types carry status and code.
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            if status == _GONE_STATUS or code == _GONE_CODE:
                log.info("call %s already ended (%s)", call_sid, code)
                return
            raise CarrierError(f"Twilio refused to update call {call_sid}: {status} {code}") from exc
        except OSError as exc:
            raise CarrierError(f"could not reach Twilio for call {call_sid}: {exc!r}") from exc
