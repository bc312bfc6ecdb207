"""Make a test from a call: any call record becomes a scenario skeleton.

The caller's lines become ``say:`` turns, each tool the agent called in answer
becomes that turn's ``tool_called`` (with its arguments), and the way the call ended
becomes ``ended_by``. A webhook tool's recorded result becomes a mock, so the new
scenario replays offline. It is a starting point: the file says so at the top, and
the person who made it adds what the agent must (or must never) say.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentplatform.agents.yamlio import dump_document
from agentplatform.scenarios.record import END_REASONS, tool_arguments
from agentplatform.storage.models import CallDetail

BUILT_INS = frozenset({"end_call", "transfer_call", "send_dtmf"})


def _returned(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def skeleton_name(call: CallDetail) -> str:
    return f"from-call-{re.sub(r'[^a-z0-9]', '', call.id.lower())[:12] or 'unknown'}"


def skeleton(call: CallDetail) -> dict[str, Any]:
    """The scenario as plain data (``skeleton_yaml`` writes it)."""
    users = [t for t in call.turns if t.role == "user" and t.text.strip()]
    turns: list[dict[str, Any]] = []
    mocks: list[dict[str, Any]] = []
    for index, user in enumerate(users):
        until = users[index + 1].created_at if index + 1 < len(users) else None
        turn: dict[str, Any] = {"say": user.text.strip()}
        expect = []
        for tool in call.tools:
            if tool.created_at < user.created_at or (until is not None and tool.created_at >= until):
                continue
            args = tool_arguments(tool.arguments)
            expect.append({"tool_called": {"name": tool.name, "args": args} if args
                           else {"name": tool.name}})
            if tool.name not in BUILT_INS and tool.ok:
                mocks.append({"tool": tool.name, "args": args, "returns": _returned(tool.result)})
        if expect:
            turn["expect"] = expect
        turns.append(turn)
    if not turns:  # a call where the caller said nothing still makes a valid file
        turns.append({"silence_ms": 3000})
    data: dict[str, Any] = {"name": skeleton_name(call), "agent": call.agent,
                            "description": f"Made from call {call.id} "
                                           f"({call.started_at:%Y-%m-%d %H:%M} UTC); "
                                           f"add what the agent must and must never say.",
                            "turns": turns}
    ended = END_REASONS.get(call.end_reason or "")
    if ended:
        data["expect"] = [{"ended_by": ended}]
    if mocks:
        data["mocks"] = mocks
    return data


def skeleton_yaml(call: CallDetail) -> str:
    header = (f"# A scenario made from call {call.id} to {call.agent}.\n"
              "# Run it: agentplatform test <this file>   (add --via call for a phone call)\n")
    return header + dump_document(skeleton(call))
