"""Twilio as a carrier plug-in: its endpoints under ``/twilio/``, the media listener
when ``MEDIA_LISTEN`` asks for one (``media_listener.py``), and which of its call
statuses mean a call is over."""

from __future__ import annotations

from fastapi import APIRouter

from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.carriers.plugin import Carrier, CarrierContext
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.media_listener import MediaListener
from agentplatform.carriers.twilio.outbound import LiveStreams, TwilioDialer
from agentplatform.carriers.twilio.routes import TwilioEndpoints

# Twilio call statuses after which no stream can still be live.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class TwilioCarrier(Carrier):
    """Always mounted: without ``TWILIO_AUTH_TOKEN`` every endpoint refuses (fails
    closed), which tells a misconfigured Twilio number more than a 404 would."""

    name = "twilio"
    can_dial = True  # REST calls.create (``outbound.py``), given credentials and PUBLIC_URL
    # Every endpoint checks X-Twilio-Signature, and the stream its single-use token.
    public_paths = ("/twilio/",)
    server_paths = ("/twilio/",)

    def __init__(self, context: CarrierContext) -> None:
        super().__init__(context)
        # One token mint for the webhook's streams and the placed calls' streams.
        self.tokens = StreamTokens.from_settings(context.settings, single_use=context.single_use)
        self.live = LiveStreams()
        # Media streams on their own compiled WebSocket server, when MEDIA_LISTEN is set.
        self.listener = MediaListener.from_settings(context.settings)
        listener = self.listener
        self.dialer = TwilioDialer(
            context.settings, self.tokens, context, self.live,
            media_url=(lambda: listener.stream_url("")) if listener is not None else None)
        self._endpoints: TwilioEndpoints | None = None

    @property
    def endpoints(self) -> TwilioEndpoints:
        """The routes and the stream code, built once (the route and the listener share it)."""
        if self._endpoints is None:
            context, listener = self.context, self.listener
            self._endpoints = TwilioEndpoints(
                settings=context.settings, lookup_agent=context.lookup_agent,
                handle_call=context.handle_call, on_call_status=self.on_call_status,
                admit=context.admit, tokens=self.tokens, single_use=context.single_use,
                dialer=self.dialer, live=self.live,
                media_url=listener.stream_url if listener is not None else None,
            )
        return self._endpoints

    def routes(self) -> APIRouter:
        return self.endpoints.router

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start(self.endpoints.listener_stream)

    @property
    def steers_streams(self) -> bool:
        """Whether new streams can be left to a sibling worker (``accept_streams``): they
        arrive on the media listener's socket, which every worker accepts on."""
        return self.listener is not None

    async def accept_streams(self, accepting: bool) -> None:
        """Stop (or resume) accepting new media streams on the shared listener socket;
        a full worker does so while a sibling has room (``limits/worker_room.py``)."""
        if self.listener is not None:
            await self.listener.set_accepting(accepting)

    def dial_problem(self) -> str | None:
        return self.dialer.problem()

    async def place_call(self, request: OutboundRequest) -> None:
        await self.dialer.place_call(request)

    async def stop(self) -> None:
        await self.dialer.cancel_ringing()
        if self.listener is not None:
            await self.listener.stop()

    def on_call_status(self, call_sid: str, status: str) -> None:
        """A status callback: a final status closes whatever the stream left open."""
        if status in FINAL_CALL_STATUSES:
            self.context.call_finished(call_sid)
