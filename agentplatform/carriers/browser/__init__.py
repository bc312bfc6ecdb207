"""The browser softphone as a carrier: an admin's browser speaks the Twilio Media
Streams protocol over ``/browser-call/media`` with a one-call token; the admin pages
that mint the token live in ``web/browser_call.py``."""

from agentplatform.carriers.browser.plugin import BrowserCarrier
from agentplatform.carriers.browser.stream import MEDIA_PATH, BrowserCallAudio, browser_tokens

__all__ = ["MEDIA_PATH", "BrowserCallAudio", "BrowserCarrier", "browser_tokens"]
