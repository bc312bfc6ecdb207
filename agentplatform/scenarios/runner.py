"""Run scenarios: set each one up offline, converse (text or call), check the record.

Each run gets its own workspace (a temporary folder): a copy of the scenario's
agent file with its webhook tools pointed at the scenario's mocks (``mocks.py``),
and a fresh SQLite database for the call record. With ``simulated_model`` the
agent's OpenAI Realtime endpoint is the bundled simulator, scripted by the
scenario's ``simulated_model:`` section; without it, an agent whose provider needs a
key that is not set is skipped (not failed), with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentplatform.agents.store import AgentStore
from agentplatform.catalog import Catalog, load_catalog
from agentplatform.config import Settings, get_settings
from agentplatform.errors import CatalogError
from agentplatform.scenarios.assertions import Context, Outcome, evaluate, skip
from agentplatform.scenarios.mocks import MockWebhooks, mocked_agent_text
from agentplatform.scenarios.record import ConversationRecord, ToolUse, slice_record
from agentplatform.scenarios.spec import Scenario
from agentplatform.testing.line_impairments import LineImpairments

Mode = Literal["text", "call"]
Carrier = Literal["twilio", "sip"]
Judge = Callable[[str, ConversationRecord], Awaitable[Outcome]]


@dataclass(slots=True)
class RunOptions:
    via: Mode = "text"
    carrier: Carrier = "twilio"  # call mode: Twilio Media Streams or SIP/RTP
    simulated_model: bool = False
    line: LineImpairments | None = None
    judge: Judge | None = None
    agents_dir: Path | None = None  # default: the settings' AGENTS_DIR


@dataclass(slots=True)
class AssertionResult:
    turn: int | None  # index in turns; None: about the whole conversation
    description: str
    status: str  # passed | failed | skipped
    message: str = ""


@dataclass(slots=True)
class ScenarioResult:
    scenario: str
    file: str
    agent: str
    via: str  # text, call, or call/sip
    status: str  # passed | failed | skipped | error
    seconds: float
    call_id: str = ""
    message: str = ""  # why it was skipped or errored
    assertions: list[AssertionResult] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    cost_usd: float = 0.0
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    tools: list[ToolUse] = field(default_factory=list)  # as the record holds them

    @property
    def failures(self) -> list[AssertionResult]:
        return [a for a in self.assertions if a.status == "failed"]


SIMULATED_PROVIDER = "openai"  # the provider ``--simulated-model`` stands in for


def _needs_key(agent_model: str, catalog: Catalog, settings: Settings,
               simulated: bool) -> str:
    """The setting that must hold a key for this model, when it is empty (the
    simulator stands in for OpenAI only: other providers still need theirs)."""
    try:
        provider = catalog.model(agent_model).provider
    except CatalogError:
        return ""
    if simulated and provider.name == SIMULATED_PROVIDER:
        return ""
    setting = provider.key_setting
    if setting and not getattr(settings, setting, ""):
        return setting.upper()
    return ""


@contextlib.asynccontextmanager
async def _simulator(scenario: Scenario, greeting: str) -> AsyncIterator[object]:
    """The OpenAI Realtime simulator, scripted by the scenario. On a call the model
    itself is asked to say the agent's greeting, so the script starts with it."""
    import json

    from agentplatform.testing.openai_realtime_server import (
        OpenAIRealtimeServer,
        Reply,
        ToolRule,
    )

    script = scenario.simulated_model
    replies = [Reply(r.text) for r in script.replies] if script else []
    if greeting:
        replies.insert(0, Reply(greeting))
    rules = [ToolRule(r.contains, r.name, json.dumps(r.arguments)) for r in script.tool_rules] \
        if script else []
    says = [t.say for t in scenario.turns if t.say is not None]
    async with OpenAIRealtimeServer(pace=1.0, record=False, script=replies, tool_rules=rules,
                                    caller_texts=says) as server:
        yield server


async def run_scenario(scenario: Scenario, options: RunOptions, *,
                       settings: Settings | None = None,
                       catalog: Catalog | None = None) -> ScenarioResult:
    """One run of ``scenario``; never raises for what the agent or the model does."""
    settings = settings or get_settings()
    catalog = catalog or load_catalog()
    started = time.perf_counter()

    def result(status: str, message: str = "", **extra: object) -> ScenarioResult:
        via = "call/sip" if options.via == "call" and options.carrier == "sip" else options.via
        return ScenarioResult(scenario.name, scenario.path, scenario.agent, via, status,
                              round(time.perf_counter() - started, 2), message=message,
                              **extra)  # type: ignore[arg-type]

    agents_dir = options.agents_dir or settings.agents_dir
    store = await asyncio.to_thread(AgentStore, agents_dir, catalog, settings)
    loaded = store.get(scenario.agent)
    if loaded is None:
        problems = store.problems.get(str(store.path_for(scenario.agent)), [])
        detail = "; ".join(str(i) for i in problems) or f"no {scenario.agent}.yaml in {agents_dir}"
        return result("error", f"agent {scenario.agent!r} cannot be loaded: {detail}")
    if options.via == "text":
        from agentplatform.scenarios.text_mode import unsupported_in_text

        why = unsupported_in_text(scenario)
        if why:
            return result("skipped", why)
    if options.via == "call" and not loaded.spec.phone_numbers:
        return result("skipped", f"agent {scenario.agent!r} has no phone number to call")
    needs = _needs_key(loaded.spec.model, catalog, settings, options.simulated_model)
    if needs:
        hint = "" if options.simulated_model else ", or run with --simulated-model"
        return result("skipped", f"{loaded.spec.model} needs {needs}; set it{hint}")

    async with contextlib.AsyncExitStack() as stack:
        workspace = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scenario-")))
        mocks = await stack.enter_async_context(MockWebhooks(scenario.mocks))
        source = store.path_for(scenario.agent)
        assert source is not None
        (workspace / "agents").mkdir()
        text = await asyncio.to_thread(mocked_agent_text, source, mocks)
        (workspace / "agents" / source.name).write_text(text, encoding="utf-8")
        overrides: dict[str, object] = {"agents_dir": workspace / "agents",
                                        "database_url": f"sqlite:///{workspace / 'calls.db'}"}
        if options.simulated_model:
            greeting = loaded.spec.greeting if options.via == "call" else ""
            sim = await stack.enter_async_context(_simulator(scenario, greeting))
            overrides.update(openai_realtime_url=sim.url, openai_api_key=sim.api_key)  # type: ignore[attr-defined]
        run_settings = settings.model_copy(update=overrides)
        try:
            record, error = await _converse(scenario, options, run_settings, catalog)
        except Exception as exc:  # noqa: BLE001 - the run itself broke: an error, not a failure
            return result("error", f"{type(exc).__name__}: {exc}")

    outcome = await _check(scenario, record, options)
    call = record.call
    status = "error" if error else (
        "failed" if any(a.status == "failed" for a in outcome) else "passed")
    return result(status, error, call_id=call.id, assertions=outcome,
                  latencies_ms=record.whole.latencies, cost_usd=call.cost_usd or 0.0,
                  transcript=[(t.role, t.text) for t in call.turns], tools=record.whole.tools)


async def _converse(scenario: Scenario, options: RunOptions, settings: Settings,
                    catalog: Catalog) -> tuple[ConversationRecord, str]:
    if options.via == "text":
        from agentplatform.scenarios.text_mode import run_text
        from agentplatform.storage.database import create_tables, make_engine

        engine = make_engine(settings.database_url)
        try:
            await asyncio.to_thread(create_tables, engine)
            store = await asyncio.to_thread(AgentStore, settings.agents_dir, catalog, settings)
            loaded = store.get(scenario.agent)
            assert loaded is not None
            run = await run_text(scenario, loaded.spec, engine=engine, catalog=catalog,
                                 settings=settings)
        finally:
            engine.dispose()
        return slice_record(run.call, run.marks), run.error
    from agentplatform.scenarios.call_mode import call_settings, run_call

    store = await asyncio.to_thread(AgentStore, settings.agents_dir, catalog, settings)
    loaded = store.get(scenario.agent)
    assert loaded is not None
    server_settings = call_settings(settings, agents_dir=settings.agents_dir,
                                    database_url=settings.database_url, rest_url="")
    run = await run_call(scenario, loaded.spec, server_settings, catalog,
                         carrier=options.carrier, line=options.line)
    return slice_record(run.call, run.marks), run.error


async def _check(scenario: Scenario, record: ConversationRecord,
                 options: RunOptions) -> list[AssertionResult]:
    results: list[AssertionResult] = []
    for index, assertion in scenario.assertions():
        if index is not None and index >= len(record.turns):
            outcome = skip("not reached: the conversation had ended")
            part = None
        else:
            part = record.whole if index is None else record.turns[index]
            turn = None if index is None else scenario.turns[index]
            ctx = Context(record, options.via, turn, options.judge)
            outcome = await evaluate(assertion, part, ctx)
        results.append(AssertionResult(index, assertion.describe(), outcome.status,
                                       outcome.message))
    return results


async def run_all(scenarios: list[Scenario], options: RunOptions, *, repeat: int = 1,
                  settings: Settings | None = None,
                  progress: Callable[[ScenarioResult], None] | None = None,
                  ) -> list[list[ScenarioResult]]:
    """Every scenario ``repeat`` times, one after another (a call mode run is real
    time, and runs side by side would measure each other)."""
    settings = settings or get_settings()
    catalog = await asyncio.to_thread(load_catalog)
    groups: list[list[ScenarioResult]] = []
    for scenario in scenarios:
        runs: list[ScenarioResult] = []
        for _ in range(max(1, repeat)):
            run = await run_scenario(scenario, options, settings=settings, catalog=catalog)
            runs.append(run)
            if progress is not None:
                progress(run)
            if run.status == "skipped":
                break  # the same reason holds for every repeat
        groups.append(runs)
    return groups
