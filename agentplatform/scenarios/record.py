"""A finished conversation as the assertions see it: the call record, cut into turns.

Both modes leave a call record (``storage/models.py``: the call row, its transcript,
tool invocations and events), and this is the only thing the assertions read, so a
scenario is judged the same way whether it ran as text or as a phone call.

The record knows nothing of the scenario's turns, so the runner notes when each
scenario turn began (``marks``, UTC) and the record is cut there: everything written
from one mark to the next (the agent's answers, its tool calls) belongs to that turn.
What came before the first mark is the greeting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentplatform.storage.models import (
    CallDetail,
    CallEventPublic,
    ToolInvocationPublic,
    TurnPublic,
)


@dataclass(slots=True)
class ToolUse:
    name: str
    arguments: dict[str, Any]
    result: str
    ok: bool


@dataclass(slots=True)
class Slice:
    """The part of a record one assertion looks at (one turn, or the whole call)."""

    said: list[TurnPublic] = field(default_factory=list)  # the agent's lines
    heard: list[TurnPublic] = field(default_factory=list)  # the caller's lines
    tools: list[ToolUse] = field(default_factory=list)
    events: list[CallEventPublic] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        """The record's per-answer latency, for the answers that have one."""
        return [t.latency_ms for t in self.said if t.latency_ms is not None]

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.said)


@dataclass(slots=True)
class ConversationRecord:
    call: CallDetail
    turns: list[Slice]  # one per scenario turn
    whole: Slice

    @property
    def ended_by(self) -> str:
        """``agent``, ``caller``, ``transfer``, or the record's own end reason."""
        return END_REASONS.get(self.call.end_reason or "", self.call.end_reason or "open")


# The record's end reasons as a scenario names them.
END_REASONS = {"agent_ended": "agent", "caller_hung_up": "caller", "transferred": "transfer",
               "idle_timeout": "agent"}


def tool_arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool(t: ToolInvocationPublic) -> ToolUse:
    return ToolUse(t.name, tool_arguments(t.arguments), t.result, t.ok)


def _index(at: datetime, marks: list[datetime]) -> int:
    """Which scenario turn an entry written at ``at`` belongs to (-1: before the first)."""
    index = -1
    for i, mark in enumerate(marks):
        if at >= mark:
            index = i
    return index


def slice_record(call: CallDetail, marks: list[datetime]) -> ConversationRecord:
    """Cut ``call`` at the scenario turns' start times ``marks`` (one per turn)."""
    turns = [Slice() for _ in marks]
    whole = Slice()
    for turn in call.turns:
        index = _index(turn.created_at, marks)
        bucket = "said" if turn.role == "assistant" else "heard"
        getattr(whole, bucket).append(turn)
        if index >= 0:
            getattr(turns[index], bucket).append(turn)
    for invocation in call.tools:
        use = _tool(invocation)
        whole.tools.append(use)
        index = _index(invocation.created_at, marks)
        if index >= 0:
            turns[index].tools.append(use)
    for event in call.events:
        whole.events.append(event)
        index = _index(event.created_at, marks)
        if index >= 0:
            turns[index].events.append(event)
    return ConversationRecord(call, turns, whole)
