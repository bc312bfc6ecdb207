"""The REST API: health, agents, calls with their transcripts, live bridge metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from agentplatform.storage import queries

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, object]:
    platform = request.app.state.platform
    return {"status": "ok", "active_calls": len(platform.calls),
            "agents": len(platform.store.agents)}


@router.get("/api/agents")
async def list_agents(request: Request) -> dict[str, object]:
    store = request.app.state.platform.store
    await store.refresh_async()
    return {
        "agents": [
            {"name": a.name, "model": a.spec.model, "voice": a.spec.voice,
             "phone_numbers": a.spec.phone_numbers, "description": a.spec.description,
             "warnings": [str(i) for i in a.issues]}
            for a in store.agents.values()
        ],
        "problems": {file: [str(i) for i in issues] for file, issues in store.problems.items()},
    }


@router.get("/api/calls")
async def list_calls(request: Request, limit: int = 50, offset: int = 0,
                     agent: str | None = None) -> dict[str, object]:
    engine = request.app.state.engine
    calls = await asyncio.to_thread(queries.list_calls, engine, limit, offset, agent)
    return {"calls": [c.model_dump(mode="json") for c in calls]}


@router.get("/api/calls/{call_id}")
async def get_call(request: Request, call_id: str) -> dict[str, object]:
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id}")
    return detail.model_dump(mode="json")


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus exposition: calls, refusals, latency histograms, provider errors,
    malformed carrier messages, cost, the writer's backlog (this process only)."""
    return Response(request.app.state.observer.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/debug/metrics")
async def metrics(request: Request) -> dict[str, object]:
    from agentplatform.cascade.metrics import CASCADE_METRICS

    return {**request.app.state.metrics.snapshot(), "cascade": CASCADE_METRICS.snapshot()}


@router.post("/debug/metrics/reset")
async def reset_metrics(request: Request) -> dict[str, str]:
    from agentplatform.cascade.metrics import CASCADE_METRICS

    request.app.state.metrics.reset()
    CASCADE_METRICS.reset()
    return {"status": "reset"}
