"""Run a scenario as text: the chat path drives the agent, a call record is written.

The conversation itself is the chat's (``chat/session.py``: the agent's prompt, text
engine and tool runner, so a mocked webhook really is called). Chat keeps no record,
so this module is the recorder: it writes what happened through the same
``CallWriter`` a phone call uses (carrier ``text``), and the assertions then read
that record, exactly as they read a phone call's.

In text there is no line: an answer's ``latency_ms`` here is the message sent → the
first piece of the answer; an ``end_call`` ends the conversation as ``agent_ended``,
a successful ``transfer_call`` as ``transferred``; otherwise the caller hangs up
after the last turn. ``silence_ms`` does nothing in text; ``audio:`` and ``dtmf:``
turns need a phone line, so such scenarios are skipped here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine

from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog
from agentplatform.chat.session import (
    ChatDelta,
    ChatDone,
    ChatError,
    ChatToolCall,
    ChatToolResult,
    open_chat,
)
from agentplatform.config import Settings
from agentplatform.records import CallStart, EndReason
from agentplatform.scenarios.spec import Scenario
from agentplatform.storage.models import CallDetail, utcnow
from agentplatform.storage.queries import get_call
from agentplatform.storage.writer import CallWriter

CARRIER = "text"


@dataclass(slots=True)
class TextRun:
    call: CallDetail
    marks: list[datetime]  # when each turn that was reached began
    error: str = ""


def unsupported_in_text(scenario: Scenario) -> str:
    """Why ``scenario`` cannot run as text, or ""."""
    for index, turn in enumerate(scenario.turns):
        if turn.audio is not None or turn.dtmf is not None:
            return f"turns[{index}] is {turn.action}: it needs a phone line (--via call)"
    return ""


async def run_text(scenario: Scenario, agent: AgentSpec, *, engine: Engine, catalog: Catalog,
                   settings: Settings) -> TextRun:
    """Converse as ``scenario`` says; the finished call record, read back."""
    writer = CallWriter(engine, catalog=catalog)
    writer.start()
    call_id = uuid.uuid4().hex
    writer.call_started(CallStart(call_id=call_id, carrier_call_id=f"text-{call_id[:12]}",
                                  agent=agent.name, model=agent.model, carrier=CARRIER,
                                  from_number="scenario",
                                  to_number=(agent.phone_numbers or [""])[0],
                                  parameters={"scenario": scenario.name}))
    transfers = {t.name for t in agent.tools if t.type == "transfer_call"}
    marks: list[datetime] = []
    reason, detail, error = EndReason.CALLER_HUNG_UP, "", ""
    try:
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as http:
            chat = await open_chat(agent, catalog=catalog, settings=settings, http=http,
                                   conversation_id=call_id)
            writer.model_served(call_id, agent.model)
            try:
                if chat.greeting:
                    writer.turn(call_id, "assistant", chat.greeting)
                for turn in scenario.turns:
                    await asyncio.sleep(0.002)  # marks strictly after what came before
                    marks.append(utcnow())
                    if turn.say is None:
                        continue  # silence: nothing happens in a chat
                    writer.turn(call_id, "user", turn.say)
                    outcome = await _ask(chat, turn.say, writer, call_id, transfers)
                    if outcome.error:
                        reason, detail, error = EndReason.PROVIDER_ERROR, outcome.error, \
                            outcome.error
                        break
                    if outcome.ended is not None:
                        reason = outcome.ended
                        break
            finally:
                await chat.close()
    except Exception as exc:  # noqa: BLE001 - a model that cannot start: recorded, and said
        reason, detail, error = EndReason.PROVIDER_ERROR, str(exc), str(exc) or type(exc).__name__
    writer.call_ended(call_id, reason, detail)
    await writer.flush()
    await writer.stop()
    call = await asyncio.to_thread(get_call, engine, call_id)
    assert call is not None
    return TextRun(call, marks, error)


@dataclass(slots=True)
class _Asked:
    ended: EndReason | None = None
    error: str = ""


async def _ask(chat, text: str, writer: CallWriter, call_id: str,
               transfers: set[str]) -> _Asked:
    sent = time.perf_counter()
    first_ms: float | None = None
    started: dict[str, tuple[ChatToolCall, float]] = {}
    asked = _Asked()
    async for event in chat.ask(text):
        if isinstance(event, ChatDelta):
            if first_ms is None and event.text.strip():
                first_ms = (time.perf_counter() - sent) * 1000.0
        elif isinstance(event, ChatToolCall):
            started[event.call_id] = (event, time.perf_counter())
        elif isinstance(event, ChatToolResult):
            call, at = started.get(event.call_id, (None, time.perf_counter()))
            arguments = call.arguments if call is not None else "{}"
            writer.tool_invocation(call_id, event.name, arguments or "{}", event.output,
                                   ok=event.ok,
                                   duration_ms=round((time.perf_counter() - at) * 1000.0, 1))
            if event.ok and event.name in transfers:
                asked.ended = EndReason.TRANSFERRED
        elif isinstance(event, ChatDone):
            latency = first_ms if first_ms is not None else (time.perf_counter() - sent) * 1000.0
            if event.text.strip():
                writer.turn(call_id, "assistant", event.text, latency_ms=round(latency, 1))
            if event.ended:
                asked.ended = EndReason.AGENT_ENDED
        elif isinstance(event, ChatError):
            asked.error = event.message
    return asked


