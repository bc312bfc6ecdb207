"""Point a Twilio phone number's voice webhook at this server, over Twilio's REST API
(the IncomingPhoneNumbers resource), so an admin need not paste URLs into the console.

The ``twilio`` library does the HTTP (basic auth, form encoding, errors); its calls
block, so each runs in a worker thread. ``TWILIO_API_BASE_URL`` moves it to a
simulator in tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from twilio.base.exceptions import TwilioException

from agentplatform.carriers.twilio.control import rest_client
from agentplatform.errors import CarrierError


@dataclass(frozen=True, slots=True)
class NumberWebhooks:
    sid: str
    phone_number: str
    voice_url: str
    status_callback: str


async def point_number(account_sid: str, auth_token: str, phone_number: str, *,
                       voice_url: str, status_callback: str,
                       api_base_url: str = "") -> NumberWebhooks:
    """Set ``phone_number``'s voice webhook (POST) and status callback (POST) and return
    what Twilio then holds; ``CarrierError`` saying why when it cannot."""
    def work() -> NumberWebhooks:
        client = rest_client(account_sid, auth_token, api_base_url)
        try:
            found = client.incoming_phone_numbers.list(phone_number=phone_number, limit=2)
            if not found:
                raise CarrierError(f"the Twilio account has no number {phone_number}")
            updated = client.incoming_phone_numbers(found[0].sid).update(
                voice_url=voice_url, voice_method="POST",
                status_callback=status_callback, status_callback_method="POST")
        except TwilioException as exc:
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            raise CarrierError(f"Twilio refused to update {phone_number}: {status} {code} "
                               f"{getattr(exc, 'msg', '') or exc}") from exc
        except OSError as exc:
            raise CarrierError(f"could not reach Twilio: {exc!r}") from exc
        return NumberWebhooks(str(updated.sid), str(updated.phone_number),
                              str(updated.voice_url or ""), str(updated.status_callback or ""))

    return await asyncio.to_thread(work)
