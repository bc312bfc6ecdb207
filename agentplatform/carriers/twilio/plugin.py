"""Twilio as a carrier plug-in: its endpoints under ``/twilio/``, and which of its
call statuses mean a call is over."""

from __future__ import annotations

from fastapi import APIRouter

from agentplatform.carriers.plugin import Carrier
from agentplatform.carriers.twilio.routes import build_router

# Twilio call statuses after which no stream can still be live.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class TwilioCarrier(Carrier):
    """Always mounted: without ``TWILIO_AUTH_TOKEN`` every endpoint refuses (fails
    closed), which tells a misconfigured Twilio number more than a 404 would."""

    name = "twilio"
    # Every endpoint checks X-Twilio-Signature, and the stream its single-use token.
    public_paths = ("/twilio/",)
    server_paths = ("/twilio/",)

    def routes(self) -> APIRouter:
        context = self.context
        return build_router(
            settings=context.settings, lookup_agent=context.lookup_agent,
            handle_call=context.handle_call, on_call_status=self.on_call_status,
            admit=context.admit, single_use=context.single_use,
        )

    def on_call_status(self, call_sid: str, status: str) -> None:
        """A status callback: a final status closes whatever the stream left open."""
        if status in FINAL_CALL_STATUSES:
            self.context.call_finished(call_sid)
