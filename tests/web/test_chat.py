"""Chat with an agent over the API and the panel endpoint: streamed text, tool calls
with their arguments and results, conversations kept by id."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer

from .conftest import csrf_of, served, write_agent

RULES_AGENT = """\
name: desk
model: local/offline
voice_streaming: false
greeting: Hello, this is the desk.
rules:
  - match: "opening hours|open"
    reply: We are open from eight to five, Monday to Friday.
  - match: "slot|appointment"
    tool: {{name: check_availability, arguments: {{day: monday}}}}
    after_tool: "The first free slot is {{output.first}}."
fallback_reply: Sorry, I can only talk about hours and slots.
tools:
  - type: webhook
    name: check_availability
    description: Free slots on a day.
    url: {url}
    allow_private_network: true
"""


class SlotService:
    """A real HTTP endpoint on loopback standing in for the agent's webhook."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SlotService:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/slots"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        self.bodies.append(json.loads(await reader.readexactly(length) or b"{}"))
        body = json.dumps({"first": "Monday at 9:30"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


async def chat(client, path: str, message: str, conversation_id: str | None = None,
               headers: dict | None = None) -> list[dict]:
    events = []
    async with client.stream("POST", path, json={"message": message,
                                                 "conversation_id": conversation_id},
                             headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        async for line in response.aiter_lines():
            if line.strip():
                events.append(json.loads(line))
    return events


async def test_api_chat_streams_the_answer_in_pieces(tmp_path):
    async with SlotService() as slots:
        write_agent(tmp_path / "agents", RULES_AGENT.format(url=slots.url), name="desk")
        async with served(tmp_path) as client:
            events = await chat(client, "/api/agents/desk/chat", "When are you open?")
    assert events[0]["type"] == "conversation" and events[0]["greeting"] == "Hello, this is the desk."
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert len(deltas) > 3  # streamed, not one block
    assert "".join(deltas) == "We are open from eight to five, Monday to Friday."
    assert events[-1] == {"type": "done", "text": "".join(deltas)}


async def test_a_tool_call_shows_its_arguments_and_result_and_really_runs(tmp_path):
    async with SlotService() as slots:
        write_agent(tmp_path / "agents", RULES_AGENT.format(url=slots.url), name="desk")
        async with served(tmp_path) as client:
            events = await chat(client, "/api/agents/desk/chat", "Any slot on Monday?")
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert call["name"] == "check_availability" and json.loads(call["arguments"]) == {"day": "monday"}
    assert result["ok"] and json.loads(result["output"]) == {"first": "Monday at 9:30"}
    assert slots.bodies == [{"day": "monday"}]
    assert events[-1]["text"] == "The first free slot is Monday at 9:30."


async def test_a_conversation_id_continues_the_same_conversation(tmp_path):
    async with SlotService() as slots:
        write_agent(tmp_path / "agents", RULES_AGENT.format(url=slots.url), name="desk")
        async with served(tmp_path) as client:
            first = await chat(client, "/api/agents/desk/chat", "hours?")
            conversation = first[0]["id"]
            second = await chat(client, "/api/agents/desk/chat", "something else", conversation)
            assert second[0]["id"] == conversation
            chat_state = client.server.app.state.conversations
            history = chat_state._open[conversation].chat.engine.history
            fresh = await chat(client, "/api/agents/desk/chat", "hours?", "chat_unknown")
    assert [m["role"] for m in history if m["role"] != "system"] == [
        "assistant", "user", "assistant", "user", "assistant"]
    assert second[-1]["text"] == "Sorry, I can only talk about hours and slots."
    assert fresh[0]["id"] != conversation


async def test_the_panel_endpoint_needs_the_csrf_header(tmp_path):
    async with SlotService() as slots:
        write_agent(tmp_path / "agents", RULES_AGENT.format(url=slots.url), name="desk")
        async with served(tmp_path) as client:
            page = await client.get("/agents/desk/chat")
            assert page.status_code == 200
            refused = await client.post("/agents/desk/chat/messages", json={"message": "hi"})
            assert refused.status_code == 403
            events = await chat(client, "/agents/desk/chat/messages", "open?",
                                headers={"X-CSRF-Token": csrf_of(page.text)})
    assert events[-1]["type"] == "done"


async def test_chat_with_an_openai_model_uses_text_modality(tmp_path):
    write_agent(tmp_path / "agents", "name: sales\nmodel: openai/gpt-realtime\n"
                "prompt: You sell things.\n", name="sales")
    async with OpenAIRealtimeServer() as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            events = await chat(client, "/api/agents/sales/chat", "What do you sell?")
    assert events[-1]["type"] == "done" and events[-1]["text"]
    assert any(e["type"] == "delta" for e in events)
    assert sim.sessions and sim.sessions[0].get("output_modalities") == ["text"]


async def test_chat_with_an_unknown_agent_is_a_404(tmp_path):
    (tmp_path / "agents").mkdir()
    async with served(tmp_path) as client:
        response = await client.post("/api/agents/nobody/chat", json={"message": "hi"})
    assert response.status_code == 404


@pytest.mark.parametrize("body", [{}, {"message": ""}])
async def test_a_chat_request_without_a_message_is_refused(tmp_path, body):
    write_agent(tmp_path / "agents", RULES_AGENT.format(url="http://127.0.0.1:9/x"), name="desk")
    async with served(tmp_path) as client:
        response = await client.post("/api/agents/desk/chat", json=body)
    assert response.status_code == 422
