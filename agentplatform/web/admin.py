"""Admin screens (Jinja): every call with its transcript. The agent screens live in
``agents_admin.py``."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from agentplatform.errors import CatalogError
from agentplatform.observability.charts import cost_charts, latency_chart, turn_bars
from agentplatform.realtime.base import Usage
from agentplatform.records import REFUSED_REASONS, EndReason
from agentplatform.storage import queries
from agentplatform.storage.models import utcnow
from agentplatform.storage.pricing import KIND_LABELS, cost_breakdown
from agentplatform.web.templating import TEMPLATES_DIR, templates  # noqa: F401 (re-exported)

router = APIRouter()


CALLS_PAGE = 100
COST_CHART_DAYS = 14


def _day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(status_code=400,
                            detail=f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None


@router.get("/calls", response_class=HTMLResponse)
async def calls_page(
    request: Request, agent: str | None = None, reason: str | None = None,
    number: str | None = None, since: str | None = None, until: str | None = None,
    page: int = 1,
) -> HTMLResponse:
    """Every call, newest first, with filters; per-agent daily cost over two weeks."""
    engine = request.app.state.engine
    first, last = _day(since, "since"), _day(until, "until")
    window = {
        "agent": agent or None, "end_reason": reason or None, "number": (number or "").strip() or None,
        "since": queries.day_bounds(first)[0] if first else None,
        "until": queries.day_bounds(last)[1] if last else None,
    }
    page = max(page, 1)
    today = utcnow().date()
    chart_from = today - timedelta(days=COST_CHART_DAYS - 1)

    def load():  # one worker thread for the three reads
        return (queries.list_calls(engine, CALLS_PAGE, (page - 1) * CALLS_PAGE, **window),
                queries.count_calls(engine, **window),
                queries.agent_days(engine, chart_from, today, agent or None))

    calls, total, days = await asyncio.to_thread(load)
    today_rows = [d for d in days if d.day == today.isoformat()]
    filters = {k: v for k, v in {"agent": agent, "reason": reason, "number": number,
                                 "since": since, "until": until}.items() if v}
    return templates.TemplateResponse(request, "calls.html", {
        "calls": calls, "total": total, "page": page, "pages": max(1, -(-total // CALLS_PAGE)),
        "filters": filters, "query": urlencode(filters), "agent": agent,
        "reasons": [r.value for r in EndReason], "refused": {r.value for r in REFUSED_REASONS},
        "cost_charts": cost_charts(days, chart_from, today), "today": today_rows,
        "chart_from": chart_from, "chart_to": today,
    })


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(request: Request, call_id: str) -> HTMLResponse:
    """One call: transcript, tools, events, usage and cost by kind, latency per answer."""
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id}")
    catalog = request.app.state.platform.catalog
    try:
        model = catalog.model(detail.model)
        usage = Usage(input_text=detail.input_text_tokens, input_audio=detail.input_audio_tokens,
                      input_cached=detail.input_cached_tokens,
                      output_text=detail.output_text_tokens,
                      output_audio=detail.output_audio_tokens)
        breakdown = cost_breakdown(model.prices, usage, audio_seconds=detail.audio_seconds)
        prices_as_of = model.prices_as_of
    except CatalogError:
        breakdown, prices_as_of = [], ""
    bars = turn_bars(detail.turns)
    latencies = sorted(b.latency_ms for b in bars)
    return templates.TemplateResponse(request, "call.html", {
        "call": detail, "breakdown": breakdown, "kind_labels": KIND_LABELS,
        "prices_as_of": prices_as_of, "latency_chart": latency_chart(detail.turns),
        "latency_median": latencies[len(latencies) // 2] if latencies else None,
        "latency_max": latencies[-1] if latencies else None,
        "refused": detail.end_reason in {r.value for r in REFUSED_REASONS},
    })
