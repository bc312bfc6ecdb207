"""A chat ends as a phone call would when the agent uses end_call, and the built-in's
instruction to the model is not shown as if it were the tool's answer."""

from __future__ import annotations

from .conftest import served, write_agent
from .test_chat import chat

DESK = """\
name: desk
model: local/offline
voice_streaming: false
rules:
  - match: "bye"
    reply: Thanks for calling, goodbye!
    tool: {name: end_call}
fallback_reply: Sorry?
tools:
  - type: end_call
"""


async def test_end_call_ends_the_chat_after_the_goodbye_and_says_what_it_did(tmp_path):
    write_agent(tmp_path / "agents", DESK, name="desk")
    async with served(tmp_path) as client:
        events = await chat(client, "/api/agents/desk/chat", "ok bye")
        conversation = events[0]["id"]
        after = await chat(client, "/api/agents/desk/chat", "hello again?", conversation)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["name"] == "end_call" and "hang up" in result["note"]
    done = events[-1]
    assert done["type"] == "done" and done["ended"] is True
    assert "goodbye" in "".join(e.get("text", "") for e in events if e["type"] == "delta")
    # The ended conversation takes no more messages: a new one starts instead.
    assert after[0]["type"] == "conversation" and after[0]["id"] != conversation
