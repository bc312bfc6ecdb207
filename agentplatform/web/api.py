"""The REST API: health, agents, calls with their transcripts, live bridge metrics."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST

from agentplatform.recording.files import recording_path
from agentplatform.storage import queries
from agentplatform.web import params

router = APIRouter()


def _json(body: object) -> Response:
    """Serialized where it is built (a worker thread), not by the framework on the loop."""
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, object]:
    platform = request.app.state.platform
    return {"status": "ok", "active_calls": len(platform.calls),
            "agents": len(platform.store.agents)}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """For a load balancer's health check: 503 while this process is draining or has
    no headroom for another call, so new calls go to a server with room; calls already
    up are not affected."""
    platform = request.app.state.platform
    reason = platform.admission.unready()
    if reason is None:
        return _json({"status": "ready", "active_calls": len(platform.calls)})
    return Response(orjson.dumps({"status": "unready", "reason": reason,
                                  "active_calls": len(platform.calls)}),
                    status_code=503, media_type="application/json")


@router.get("/api/agents")
async def list_agents(request: Request) -> dict[str, object]:
    store = request.app.state.platform.store
    await store.refresh_async()  # parsing edited files happens off the event loop
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
async def list_calls(request: Request, limit: str | None = None, offset: str | None = None,
                     agent: str | None = None) -> Response:
    """Calls, newest first: ``limit`` 1..500 (default 50), ``offset`` from 0; anything
    else is a 400 naming the parameter."""
    count = params.whole_number(limit, "limit", default=params.DEFAULT_LIMIT, low=1,
                                high=params.MAX_LIMIT)
    skip = params.whole_number(offset, "offset", default=0, low=0, high=params.MAX_OFFSET)
    name = params.text(agent, "agent")
    engine = request.app.state.engine

    def load() -> Response:
        calls = queries.list_calls(engine, count, skip, name)
        return _json({"calls": [c.model_dump(mode="json") for c in calls]})

    return await asyncio.to_thread(load)


@router.get("/api/calls/{call_id}")
async def get_call(request: Request, call_id: str) -> Response:
    """One call with its transcript; a long call's is dumped in the worker thread too."""
    engine = request.app.state.engine

    def load() -> Response | None:
        detail = queries.get_call(engine, call_id)
        return None if detail is None else _json(detail.model_dump(mode="json"))

    found = await asyncio.to_thread(load)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id[:64]}")
    return found


@router.get("/api/calls/{call_id}/recording")
async def get_call_recording(request: Request, call_id: str) -> FileResponse:
    """The call's recording: a stereo WAV, left the caller, right the agent as the caller
    heard it. 404 when the call was not recorded. Streamed from disk, with byte ranges
    (a player seeks without fetching the whole file)."""
    directory = request.app.state.platform.settings.recordings_dir
    path = recording_path(directory, call_id)
    if path is None or not await asyncio.to_thread(path.is_file):
        raise HTTPException(status_code=404, detail=f"no recording of call {call_id[:64]}")
    return FileResponse(path, media_type="audio/wav", filename=f"call-{call_id}.wav",
                        content_disposition_type="inline")


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus exposition: calls, refusals, latency histograms, provider errors,
    malformed carrier messages, cost, the writer's backlog (this process only)."""
    body = await asyncio.to_thread(request.app.state.observer.exposition)  # grows with series
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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
