"""Admin screens (Jinja): every call with its transcript. The agent screens live in
``agents_admin.py``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from agentplatform.errors import CatalogError
from agentplatform.observability.charts import cost_charts, latency_chart, turn_bars
from agentplatform.realtime.base import Usage
from agentplatform.recording.files import recording_path
from agentplatform.records import REFUSED_REASONS, EndReason
from agentplatform.storage import queries
from agentplatform.storage.models import CallDetail, utcnow
from agentplatform.storage.pricing import KIND_LABELS, cost_breakdown
from agentplatform.web import params
from agentplatform.web.templating import TEMPLATES_DIR, render, templates  # noqa: F401 (re-exported)

router = APIRouter()


CALLS_PAGE = 100
COST_CHART_DAYS = 14
# "live" selects calls still in progress; the rest are how a call ended.
REASON_FILTERS = frozenset({"live", *(r.value for r in EndReason)})


@router.get("/calls", response_class=HTMLResponse)
async def calls_page(
    request: Request, agent: str | None = None, reason: str | None = None,
    number: str | None = None, since: str | None = None, until: str | None = None,
    page: str | None = None, part: str | None = None,
) -> HTMLResponse:
    """Every call, newest first, with filters; per-agent daily cost over two weeks.
    Every filter is checked first (400 naming it); reading, charting and rendering run
    in one worker thread. ``part=list``: only the list, which the page re-fetches every
    few seconds to keep itself current (no charts drawn for it)."""
    only_list = params.choice(part, "part", frozenset({"list"})) == "list"
    engine = request.app.state.engine
    first, last = params.day_range(since, until)
    page_no = params.whole_number(page, "page", default=1, low=1, high=params.MAX_PAGE)
    agent_name = params.text(agent, "agent")
    window = {
        "agent": agent_name, "end_reason": params.choice(reason, "reason", REASON_FILTERS),
        "number": params.text(number, "number", max_length=params.MAX_NUMBER_LENGTH),
        "since": queries.day_bounds(first)[0] if first else None,
        "until": queries.day_bounds(last)[1] if last else None,
    }
    today = utcnow().date()
    chart_from = today - timedelta(days=COST_CHART_DAYS - 1)
    filters = {k: v for k, v in {"agent": agent, "reason": reason, "number": number,
                                 "since": since, "until": until}.items() if v}

    def context() -> dict[str, object]:
        calls = queries.list_calls(engine, CALLS_PAGE, (page_no - 1) * CALLS_PAGE, **window)
        total = queries.count_calls(engine, **window)
        listing = {
            "calls": calls, "total": total, "page": page_no,
            "pages": max(1, -(-total // CALLS_PAGE)),
            "filters": filters, "query": urlencode(filters), "agent": agent,
            "reasons": [r.value for r in EndReason],
            "refused": {r.value for r in REFUSED_REASONS},
        }
        if only_list:
            return listing
        days = queries.agent_days(engine, chart_from, today, agent_name)
        return {
            **listing,
            "cost_charts": cost_charts(days, chart_from, today),
            "today": [d for d in days if d.day == today.isoformat()],
            "chart_from": chart_from, "chart_to": today,
        }

    return await render(request, "calls_list.html" if only_list else "calls.html", context)


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(request: Request, call_id: str) -> HTMLResponse:
    """One call: transcript, tools, events, usage and cost by kind, latency per answer.
    A long call has thousands of turns: read, chart and render in a worker thread."""
    engine = request.app.state.engine
    catalog = request.app.state.platform.catalog
    detail = await asyncio.to_thread(queries.get_call, engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id[:64]}")

    def context() -> dict[str, object]:
        try:
            model = catalog.model(detail.model)
            usage = Usage(input_text=detail.input_text_tokens,
                          input_audio=detail.input_audio_tokens,
                          input_cached=detail.input_cached_tokens,
                          output_text=detail.output_text_tokens,
                          output_audio=detail.output_audio_tokens)
            breakdown = cost_breakdown(model.prices, usage, audio_seconds=detail.audio_seconds)
            prices_as_of = model.prices_as_of
        except CatalogError:
            breakdown, prices_as_of = [], ""
        latencies = sorted(b.latency_ms for b in turn_bars(detail.turns))
        recording, offsets = _recording(request, detail)
        return {
            "call": detail, "breakdown": breakdown, "kind_labels": KIND_LABELS,
            "prices_as_of": prices_as_of, "latency_chart": latency_chart(detail.turns),
            "latency_median": latencies[len(latencies) // 2] if latencies else None,
            "latency_max": latencies[-1] if latencies else None,
            "refused": detail.end_reason in {r.value for r in REFUSED_REASONS},
            "recording_url": recording, "turn_offsets": offsets,
        }

    return await render(request, "call.html", context)


def _recording(request: Request, detail: CallDetail) -> tuple[str | None, list[float | None]]:
    """The recording's URL if the call has one, and where each transcript line starts in
    it (seconds; None where unknown), from the ``recording`` event the call wrote when
    its recording was closed. Runs in the page's worker thread (it stats a file)."""
    path = recording_path(request.app.state.platform.settings.recordings_dir, detail.id)
    if path is None or not path.is_file():
        return None, [None] * len(detail.turns)
    offsets: list[float | None] = []
    for event in detail.events:
        if event.kind == "recording" and isinstance(event.detail, dict):
            offsets = [ms / 1000.0 if isinstance(ms, int | float) else None
                       for ms in event.detail.get("turn_offsets_ms", [])]
    offsets += [None] * (len(detail.turns) - len(offsets))
    return f"/api/calls/{detail.id}/recording", offsets[: len(detail.turns)]
