"""A live call from its page: the running transcript, re-fetched every few seconds,
and the admin's hang-up.

The hang-up ends the call in the process that serves it (``Platform.hang_up``): the
carrier's line is hung up and the record closed as ``admin_hung_up``, like any other
ending. A call served by another process of the same deployment is not reachable
from here; the page says so rather than pretend.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentplatform.storage import queries
from agentplatform.web.auth import require_csrf, session_of
from agentplatform.web.templating import render

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(require_csrf)])


@router.get("/calls/{call_id}/live", response_class=HTMLResponse)
async def live_part(request: Request, call_id: str) -> HTMLResponse:
    """The call's transcript so far and whether it is still on the line."""
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id[:64]}")
    return await render(request, "call_live.html", lambda: {"call": detail})


@router.post("/calls/{call_id}/hangup")
async def hang_up(request: Request, call_id: str) -> Response:
    """Hang up a live call served by this process; 409 saying why when it cannot be."""
    platform = request.app.state.platform
    me = session_of(request)
    who = f"hung up by {me.user}" if me is not None and me.user != "local" else \
        "hung up from the admin screens"
    if platform.hang_up(call_id, who):
        return RedirectResponse(f"/calls/{call_id}?hung_up=1", status_code=303)
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id[:64]}")
    if detail.end_reason is not None:
        raise HTTPException(status_code=409, detail="this call has already ended")
    log.warning("call %s: hang-up asked, but another server process serves it", call_id)
    raise HTTPException(status_code=409, detail="another server process serves this call; "
                        "hang it up from that process's admin screens")
