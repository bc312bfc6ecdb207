"""Call an agent from the browser, down exactly the path a phone call takes.

The page asks the server (logged in, CSRF-checked) to start a call; the server mints a
short-lived token bound to a fresh call id and the agent, and the browser then speaks
the Twilio Media Streams protocol (``connected``, ``start``, ``media``, ``mark``,
``stop``; it reads ``media``, ``mark`` and ``clear``) over ``/browser-call/media``. The
stream is a :class:`TwilioCallAudio`, so the bridge, the records and the model session
are the ones a real call uses; only the carrier's REST control differs: a browser has
no phone line, so hang-up and transfer close the socket with a reason the page shows.
No provider key ever reaches the browser: it holds only that one-call token, which
the stream spends when it starts (a second socket with it is closed 1008, on any
server process sharing the database or Redis).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse

from agentplatform import signing
from agentplatform.carriers.base import CallInfo
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.stream import NORMAL_CLOSURE, TwilioCallAudio
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.single_use import SingleUseStore
from agentplatform.storage import queries
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import templates

log = logging.getLogger(__name__)

MEDIA_PATH = "/browser-call/media"
CALL_PREFIX = "BR"  # browser call ids, beside Twilio's CA… CallSids in the records
BROWSER_NUMBER = "browser"

router = APIRouter()
pages = APIRouter(dependencies=[Depends(require_csrf)])


def browser_tokens(settings: Settings, single_use: SingleUseStore | None = None) -> StreamTokens:
    """Tokens for browser streams, signed for this purpose alone (its own salt), so a
    browser token can never open a Twilio media stream or the other way round; spent
    in ``single_use`` when the stream starts, so one token opens one call."""
    return StreamTokens.from_settings(settings, purpose=signing.BROWSER_CALL_TOKEN,
                                      single_use=single_use)


class BrowserCallAudio(TwilioCallAudio):
    """A Media Stream from the admin's browser: no REST control, so ending or
    transferring the call closes the socket, and the close reason tells the page why."""

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


def _tokens(request_or_ws: Request | WebSocket) -> StreamTokens:
    state = request_or_ws.app.state
    tokens = getattr(state, "browser_tokens", None)
    if tokens is None:
        platform = state.platform
        tokens = state.browser_tokens = browser_tokens(platform.settings, platform.single_use)
    return tokens


@pages.get("/agents/{name}/call", response_class=HTMLResponse)
async def call_page(request: Request, name: str) -> HTMLResponse:
    store = request.app.state.platform.store
    await store.refresh_async()
    agent = store.get(name)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r} is loaded")
    return templates.TemplateResponse(request, "agent_call.html", {
        "name": name, "agent": agent, "media_path": MEDIA_PATH,
    })


@pages.post("/agents/{name}/call/start")
async def start_call(request: Request, name: str) -> dict[str, Any]:
    """Mint a call id and its token; the page opens the media stream with them."""
    platform = request.app.state.platform
    await platform.store.refresh_async()
    if platform.store.get(name) is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r} is loaded")
    call_sid = CALL_PREFIX + secrets.token_hex(16)
    ttl = platform.settings.browser_call_token_ttl_seconds
    return {
        "call_sid": call_sid, "stream_sid": "MZ" + secrets.token_hex(16),
        "account_sid": "AC" + "0" * 32, "token": _tokens(request).mint(call_sid, name, ttl),
        "media_path": MEDIA_PATH, "agent": name,
    }


@pages.get("/agents/{name}/call/{call_sid}/transcript")
async def transcript(request: Request, name: str, call_sid: str) -> dict[str, Any]:
    """The call's recorded turns so far (the page polls this for the live transcript)."""
    engine = request.app.state.engine

    def read() -> dict[str, Any]:
        call = queries.find_by_carrier_id(engine, call_sid)
        if call is None or call.agent != name:
            return {"turns": [], "tools": [], "ended": None}
        detail = queries.get_call(engine, call.id)
        if detail is None:
            return {"turns": [], "tools": [], "ended": None}
        return {
            "call_id": detail.id, "ended": detail.end_reason,
            "turns": [{"role": t.role, "text": t.text, "interrupted": t.interrupted}
                      for t in detail.turns],
            "tools": [{"name": t.name, "arguments": t.arguments, "result": t.result}
                      for t in detail.tools],
        }

    return await asyncio.to_thread(read)


@router.websocket(MEDIA_PATH)
async def browser_media(websocket: WebSocket) -> None:
    platform = websocket.app.state.platform
    call = BrowserCallAudio(websocket, tokens=_tokens(websocket), control=None)
    try:
        await call.accept_and_start()
    except CarrierError:
        return  # logged by the stream; closed 1008, no model session opened
    log.info("browser test call %s to agent %s", call.info.call_id, call.info.agent)
    try:
        await platform.handle_call(call)
    except Exception:
        log.exception("browser call %s: handler failed", call.info.call_id)
    finally:
        await call.close()


router.include_router(pages)
