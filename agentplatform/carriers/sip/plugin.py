"""The SIP trunk as a carrier plug-in: a UDP listener, no HTTP routes.

``SIP_LISTEN`` turns it on. The settings are read when the application builds its
carriers, so a wrong ``SIP_LISTEN``/``SIP_RTP_PORTS``/``SIP_ALLOWED_PEERS`` stops
start-up with the setting named, instead of a trunk that silently answers nothing.

It places calls too (``outbound.py``) when ``SIP_OUTBOUND_URI`` is set; the
responses come back to the same UDP socket. ``dial_problem`` says why it cannot.
"""

from __future__ import annotations

import asyncio
import logging

from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.carriers.plugin import Carrier, CarrierContext
from agentplatform.carriers.sip.outbound import OutboundCall, OutboundConfig
from agentplatform.carriers.sip.server import SipConfig, SipServer, rtp_media_opener, serve
from agentplatform.config import Settings
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)


class SipCarrier(Carrier):
    name = "sip"
    can_dial = True

    def __init__(self, context: CarrierContext) -> None:
        super().__init__(context)
        self.config = SipConfig.from_settings(context.settings)
        self.outbound = OutboundConfig.from_settings(context.settings)
        self._attempts: set[OutboundCall] = set()  # calls being dialed, for shutdown
        self.server: SipServer | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return bool(settings.sip_listen.strip())

    def dial_problem(self) -> str | None:
        problem = self.outbound.problem()
        if problem is None and self.server is None:
            problem = "the SIP listener is not running"
        return problem

    async def place_call(self, request: OutboundRequest) -> None:
        """Send the INVITE and return; the answer, or ``dial_ended``, follows."""
        problem = self.dial_problem()
        if problem is not None:
            raise CarrierError(problem)
        assert self.server is not None
        attempt = OutboundCall(request, config=self.outbound, signaling=self.server,
                               host=self.context, open_media=rtp_media_opener(self.config))
        await attempt.start()
        self._attempts = {a for a in self._attempts if a.pending} | {attempt}

    async def start(self) -> None:
        self._transport, self.server = await serve(self.config, self.context)

    async def stop(self) -> None:
        """After the platform ended live calls: any call still up gets our BYE, any
        call still ringing our CANCEL (and its record ``server_shutdown``)."""
        for attempt in self._attempts:
            attempt.abandon("the server shut down while the call was ringing")
        self._attempts.clear()
        if self.server is not None:
            await self.server.stop()
        self.server = None
        self._transport = None
