"""The agent's Tests tab and "make a test from this call".

``GET /agents/{name}/tests`` (the agent page's last tab, a page of its own) lists the scenario files beside the agents folder
(``scenarios/*.yaml`` next to ``agents/``) that test this agent, each with its last
result in this server; ``POST`` runs them as text, one run at a time per agent, in a
worker thread with its own event loop, so neither the scenarios' databases nor
their model sessions touch the server's loop. Phone-call runs stay on the command
line (``agentplatform test --via call``): they are real time and start a server.

``GET /calls/{id}/scenario.yaml`` downloads a scenario skeleton made from a call's
record (the call page's "Make a test from this call").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentplatform.scenarios.runner import RunOptions, ScenarioResult, run_all
from agentplatform.scenarios.skeleton import skeleton_name, skeleton_yaml
from agentplatform.scenarios.spec import Scenario, ScenarioInvalid, load_all
from agentplatform.storage import queries
from agentplatform.storage.models import utcnow
from agentplatform.web.agents_admin import TAB_NAMES
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import render

log = logging.getLogger(__name__)

router = APIRouter()


@dataclass(slots=True)
class AgentTests:
    """One agent's last run in this process (kept in memory: a restart forgets it)."""

    running: bool = False
    finished_at: datetime | None = None
    results: dict[str, ScenarioResult] = field(default_factory=dict)  # by scenario name
    error: str = ""


def scenarios_dir(request: Request) -> Path:
    return Path(request.app.state.platform.settings.agents_dir).resolve().parent / "scenarios"


def _state(request: Request, name: str) -> AgentTests:
    runs: dict[str, AgentTests] = request.app.state.__dict__.setdefault("scenario_runs", {})
    return runs.setdefault(name, AgentTests())


def _agent_scenarios(directory: Path, name: str) -> tuple[list[Scenario], list[str]]:
    """This agent's scenarios, and the problems of any malformed file (which stop a run)."""
    if not directory.is_dir():
        return [], []
    try:
        return [s for s in load_all([directory]) if s.agent == name], []
    except ScenarioInvalid as exc:
        return [], [str(issue) for issue in exc.issues]


@router.get("/agents/{name}/tests", response_class=HTMLResponse)
async def tests_page(request: Request, name: str) -> HTMLResponse:
    store = request.app.state.platform.store
    path = store.path_for(name)
    if store.get(name) is None and (path is None or not path.exists()):
        raise HTTPException(status_code=404, detail=f"no agent {name[:64]}")
    directory = scenarios_dir(request)
    state = _state(request, name)

    def context() -> dict[str, object]:
        scenarios, problems = _agent_scenarios(directory, name)
        return {"name": name, "scenarios": scenarios, "problems": problems, "state": state,
                "directory": str(directory), "tabs": TAB_NAMES}

    return await render(request, "agent_tests.html", context)


@router.post("/agents/{name}/tests", dependencies=[Depends(require_csrf)])
async def run_tests(request: Request, name: str) -> Response:
    store = request.app.state.platform.store
    if store.get(name) is None:
        raise HTTPException(status_code=404, detail=f"no agent {name[:64]} that loads")
    state = _state(request, name)
    if not state.running:
        state.running, state.error = True, ""
        settings = request.app.state.platform.settings
        directory = scenarios_dir(request)
        tasks: set[asyncio.Task[None]] = request.app.state.__dict__.setdefault(
            "scenario_tasks", set())
        task = asyncio.create_task(_run(state, directory, name, settings))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return RedirectResponse(f"/agents/{name}/tests", status_code=303)


async def _run(state: AgentTests, directory: Path, name: str, settings: object) -> None:
    def work() -> list[list[ScenarioResult]]:
        scenarios, problems = _agent_scenarios(directory, name)
        if problems:
            raise ScenarioInvalid([])  # shown from the page's own listing
        return asyncio.run(run_all(scenarios, RunOptions(via="text"), settings=settings))  # type: ignore[arg-type]

    try:
        groups = await asyncio.to_thread(work)
        state.results = {runs[0].scenario: runs[-1] for runs in groups}
    except ScenarioInvalid:
        state.error = "a scenario file is malformed; fix it first"
    except Exception as exc:  # shown on the page; the server carries on
        log.exception("running the scenarios of %s failed", name)
        state.error = f"the run failed: {exc}"
    finally:
        state.running = False
        state.finished_at = utcnow()


@router.get("/calls/{call_id}/scenario.yaml")
async def call_scenario(request: Request, call_id: str) -> Response:
    detail = await asyncio.to_thread(queries.get_call, request.app.state.engine, call_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id[:64]}")
    text = await asyncio.to_thread(skeleton_yaml, detail)
    return Response(text, media_type="application/yaml", headers={
        "Content-Disposition": f'attachment; filename="{skeleton_name(detail)}.yaml"'})
