"""The browser softphone's carrier plug-in: one WebSocket, public because the
one-call token it carries is the check (minted only for a logged-in admin)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from agentplatform.carriers.browser.stream import MEDIA_PATH, BrowserCallAudio, browser_tokens
from agentplatform.carriers.plugin import Carrier, CarrierContext
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)


class BrowserCarrier(Carrier):
    name = "browser"
    # Opened by a browser, so (unlike Twilio's) the Origin rule applies to it.
    public_paths = (MEDIA_PATH,)

    def __init__(self, context: CarrierContext) -> None:
        super().__init__(context)
        self.tokens = browser_tokens(context.settings, context.single_use)

    def routes(self) -> APIRouter:
        router = APIRouter()
        router.add_api_websocket_route(MEDIA_PATH, self.media)
        return router

    async def media(self, websocket: WebSocket) -> None:
        call = BrowserCallAudio(websocket, tokens=self.tokens, control=None)
        try:
            await call.accept_and_start()
        except CarrierError:
            return  # logged by the stream; closed 1008, no model session opened
        log.info("browser test call %s to agent %s", call.info.call_id, call.info.agent)
        try:
            await self.context.handle_call(call)
        except Exception:
            log.exception("browser call %s: handler failed", call.info.call_id)
        finally:
            await call.close()
