"""Admin screens (Jinja): the agents, and every call with its transcript."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from agentplatform.storage import queries

# The templates/ folder beside the package (a source checkout), else in the working
# directory (an installed package run from the project folder, as in the container).
_CANDIDATES = (Path(__file__).resolve().parents[2] / "templates", Path.cwd() / "templates")
TEMPLATES_DIR = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def agents_page(request: Request) -> HTMLResponse:
    store = request.app.state.platform.store
    store.refresh()
    return templates.TemplateResponse(request, "agents.html", {
        "agents": list(store.agents.values()), "problems": store.problems,
    })


@router.get("/calls", response_class=HTMLResponse)
async def calls_page(request: Request, agent: str | None = None) -> HTMLResponse:
    calls = await asyncio.to_thread(queries.list_calls, request.app.state.engine, 100, 0, agent)
    return templates.TemplateResponse(request, "calls.html", {"calls": calls, "agent": agent})


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(request: Request, call_id: str) -> HTMLResponse:
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id}")
    return templates.TemplateResponse(request, "call.html", {"call": detail})
