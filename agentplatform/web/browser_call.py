"""The browser softphone's admin pages: the call page, minting a one-call token, and
the live transcript. The media stream itself is a carrier plug-in
(``carriers/browser/``), reached exactly as a phone call's stream is; these pages
only hand the logged-in admin a token for it. No provider key ever reaches the
browser.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from agentplatform.carriers.browser.stream import CALL_PREFIX, MEDIA_PATH, browser_tokens
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.storage import queries
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import templates

router = APIRouter(dependencies=[Depends(require_csrf)])


def _tokens(request: Request) -> StreamTokens:
    """Signed and spent as the browser carrier's own: same secret, same store."""
    state = request.app.state
    tokens = getattr(state, "browser_tokens", None)
    if tokens is None:
        platform = state.platform
        tokens = state.browser_tokens = browser_tokens(platform.settings, platform.single_use)
    return tokens


@router.get("/agents/{name}/call", response_class=HTMLResponse)
async def call_page(request: Request, name: str) -> HTMLResponse:
    store = request.app.state.platform.store
    await store.refresh_async()
    agent = store.get(name)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r} is loaded")
    return templates.TemplateResponse(request, "agent_call.html", {
        "name": name, "agent": agent, "media_path": MEDIA_PATH,
    })


@router.post("/agents/{name}/call/start")
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


@router.get("/agents/{name}/call/{call_sid}/transcript")
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
