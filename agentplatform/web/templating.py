"""The Jinja environment every admin screen renders with, and its globals.

``csrf_token(request)`` is a global so every form can carry the token without each
route passing it; ``static_url`` adds the file's modification time so a browser never
runs yesterday's script against today's page. ``render`` builds a page in a worker
thread: a page's size follows its data (a long call's transcript, a chart of every
turn), and that work must not hold the event loop the live calls run on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from agentplatform.observability import charts
from agentplatform.web import call_view
from agentplatform.web.auth import csrf_token, session_of

# The folders beside the package (a source checkout), else in the working directory
# (an installed package run from the project folder, as in the container).
_ROOT_CANDIDATES = (Path(__file__).resolve().parents[2], Path.cwd())


def _folder(name: str) -> Path:
    found = [root / name for root in _ROOT_CANDIDATES if (root / name).is_dir()]
    return found[0] if found else _ROOT_CANDIDATES[0] / name


TEMPLATES_DIR = _folder("templates")
STATIC_DIR = _folder("static")


def static_url(name: str) -> str:
    try:
        version = int((STATIC_DIR / name).stat().st_mtime)
    except OSError:
        version = 0
    return f"/static/{name}?v={version}"


def _since_start(call: Any) -> list[float]:
    """Seconds from a call's start to each of its transcript lines."""
    return call_view.since_start(call.started_at, [t.created_at for t in call.turns])


def _latency_legend(turns: Any) -> list[tuple[str, str, str]]:
    """(part, label, colour) of the parts the call's latency chart shows."""
    return charts.parts_in(charts.turn_bars(turns))


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals.update(csrf_token=csrf_token, session_of=session_of, static_url=static_url)
templates.env.globals.update(detail_rows=call_view.detail_rows, end_text=call_view.end_text,
                             offset_text=call_view.offset_text, since_start=_since_start,
                             latency_legend=_latency_legend)


async def render(request: Request, name: str, context: Callable[[], dict[str, Any]], *,
                 status_code: int = 200) -> HTMLResponse:
    """Build ``context()`` and render ``name`` with it, both in a worker thread."""
    def build() -> HTMLResponse:
        return templates.TemplateResponse(request, name, context(), status_code=status_code)
    return await asyncio.to_thread(build)
