"""A live call from its page: the running transcript, re-fetched every few seconds,
and the admin's hang-up.

The hang-up ends the call in the process that serves it (``Platform.hang_up``): the
carrier's line is hung up and the record closed as ``admin_hung_up``, like any other
ending. A call served by another process of the same deployment (``serve --workers``,
several machines on one database) is asked through the database: the request is a
``hangup_requested`` event on the call, and every process looks for requests on its
own live calls about once a second (one small query, only while it has calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from agentplatform.storage import queries
from agentplatform.storage.models import CallEvent
from agentplatform.web.auth import require_csrf, session_of
from agentplatform.web.templating import render

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(require_csrf)])
HANGUP_REQUESTED = "hangup_requested"
POLL_SECONDS = 1.0


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
    log.info("call %s: another server process serves it; asking it to hang up", call_id)
    await asyncio.to_thread(_ask_to_hang_up, request.app.state.engine, call_id, who)
    return RedirectResponse(f"/calls/{call_id}?hung_up=1", status_code=303)


def _ask_to_hang_up(engine: Engine, call_id: str, who: str) -> None:
    """Written now, in its own transaction (not queued behind the call writer's work,
    where call events may be shed under load)."""
    with Session(engine) as session:
        session.add(CallEvent(call_id=call_id, kind=HANGUP_REQUESTED, detail={"by": who}))
        session.commit()


def _asked(engine: Engine, call_ids: list[str]) -> dict[str, str]:
    """Of these calls, those an admin asked to hang up, with who asked."""
    with Session(engine) as session:
        rows = session.exec(select(CallEvent.call_id, CallEvent.detail).where(
            CallEvent.kind == HANGUP_REQUESTED, col(CallEvent.call_id).in_(call_ids))).all()
    return {call_id: str((d or {}).get("by", "")) if isinstance(d, Mapping) else ""
            for call_id, d in rows}


async def watch_hang_ups(platform: Any, engine: Engine, interval: float = POLL_SECONDS) -> None:
    """Hang up this process's live calls that an admin asked another process to end."""
    while True:
        await asyncio.sleep(interval)
        live = list(platform.live)
        if not live:
            continue
        try:
            asked = await asyncio.to_thread(_asked, engine, live)
        except (SQLAlchemyError, OSError) as exc:  # the database is away: ask again later
            log.warning("could not read hang-up requests: %s", exc)
            continue
        for call_id, who in asked.items():
            platform.hang_up(call_id, who or "hung up from the admin screens")
