"""The SIP trunk as a carrier plug-in: a UDP listener, no HTTP routes.

``SIP_LISTEN`` turns it on. The settings are read when the application builds its
carriers, so a wrong ``SIP_LISTEN``/``SIP_RTP_PORTS``/``SIP_ALLOWED_PEERS`` stops
start-up with the setting named, instead of a trunk that silently answers nothing.
"""

from __future__ import annotations

import asyncio
import logging

from agentplatform.carriers.plugin import Carrier, CarrierContext
from agentplatform.carriers.sip.server import SipConfig, SipServer, serve
from agentplatform.config import Settings

log = logging.getLogger(__name__)


class SipCarrier(Carrier):
    name = "sip"

    def __init__(self, context: CarrierContext) -> None:
        super().__init__(context)
        self.config = SipConfig.from_settings(context.settings)
        self.server: SipServer | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return bool(settings.sip_listen.strip())

    async def start(self) -> None:
        self._transport, self.server = await serve(self.config, self.context)

    async def stop(self) -> None:
        """After the platform ended live calls: any call still up gets our BYE."""
        if self.server is not None:
            await self.server.stop()
        self.server = None
        self._transport = None
