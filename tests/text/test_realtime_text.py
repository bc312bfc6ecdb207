"""The realtime model in text modality as the text step, against the OpenAI simulator.

Every event the adapter sent is checked against the SDK's typed client events, and
every event the simulator sent against its typed server events, when each test ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter

from agentplatform.realtime.base import ResponseDone, SessionSetup, ToolCall, ToolSpec
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, Reply, ToolRule
from agentplatform.testing.typed_events import strict_validate
from agentplatform.text.base import TextDelta
from agentplatform.text.realtime_text import RealtimeTextSession

from .conftest import Feed, text_of

KEY = "sk-sim"
CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
SESSION_EXTRAS = {"$.session.id", "$.session.object", "$.session.expires_at"}
TOOLS = [ToolSpec("check_weather", "Weather for a city.",
                  {"type": "object", "properties": {"city": {"type": "string"}}})]


@pytest.fixture
async def server() -> AsyncIterator[OpenAIRealtimeServer]:
    rules = [ToolRule("weather", "check_weather", '{"city": "Oslo"}')]
    async with OpenAIRealtimeServer(api_key=KEY, tool_rules=rules) as srv:
        yield srv
    for event in srv.received:
        strict_validate(CLIENT_EVENT, event)
    for call in srv.connections:
        for event in call.sent:
            strict_validate(SERVER_EVENT, event, SESSION_EXTRAS)


@pytest.fixture
async def session(server: OpenAIRealtimeServer) -> AsyncIterator[RealtimeTextSession]:
    setup = SessionSetup(model="gpt-realtime", instructions="Be brief.", voice="marin",
                         url=server.url, api_key=KEY, tools=TOOLS, output_modality="text",
                         turn_detection={"type": "none"})
    text = RealtimeTextSession(OpenAIRealtimeSession(setup))
    await text.connect()
    yield text
    await text.close()


async def test_the_session_asks_for_text_and_no_turn_detection(
        server: OpenAIRealtimeServer, session: RealtimeTextSession) -> None:
    sent = server.sessions[0]
    assert sent["output_modalities"] == ["text"]
    assert sent["audio"]["input"]["turn_detection"] is None


async def test_a_text_turn_streams_deltas(server: OpenAIRealtimeServer,
                                          session: RealtimeTextSession) -> None:
    server.script.append(Reply("Sunny days are ahead of us."))
    feed = Feed(session)
    await session.send_user("How are things?")
    events = await feed.response()
    assert text_of(events) == "Sunny days are ahead of us."
    assert sum(isinstance(e, TextDelta) for e in events) == 6
    assert events[-1].status == "completed" and events[-1].usage is not None
    assert session.history[-2:] == [{"role": "user", "content": "How are things?"},
                                    {"role": "assistant", "content": "Sunny days are ahead of us."}]


async def test_a_tool_call_round_trip(server: OpenAIRealtimeServer,
                                      session: RealtimeTextSession) -> None:
    server.script.append(Reply("It is cold in Oslo."))
    feed = Feed(session)
    await session.send_user("What's the weather?")
    first = await feed.response()
    call = next(e for e in first if isinstance(e, ToolCall))
    assert call.name == "check_weather" and orjson.loads(call.arguments) == {"city": "Oslo"}
    await session.send_tool_result(call.call_id, call.name, '{"temp_c": -3}')
    second = await feed.response()
    assert text_of(second) == "It is cold in Oslo."
    outputs = [e["item"] for e in server.received if e["type"] == "conversation.item.create"
               and e["item"]["type"] == "function_call_output"]
    assert outputs == [{"type": "function_call_output", "call_id": call.call_id,
                        "output": '{"temp_c": -3}'}]


async def test_set_heard_replaces_the_assistant_item_on_the_server(
        server: OpenAIRealtimeServer, session: RealtimeTextSession) -> None:
    server.script.append(Reply("One two three four five six."))
    feed = Feed(session)
    await session.send_user("Count please.")
    await feed.response()
    item_id = next(e["item"]["id"] for c in server.connections for e in c.sent
                   if e["type"] == "response.output_item.done")
    await session.set_heard("One two")
    await _until(lambda: any(e["type"] == "conversation.item.create"
                             and e["item"].get("role") == "assistant" for e in server.received))
    assert server.deleted == [item_id]
    created = [e for e in server.received if e["type"] == "conversation.item.create"][-1]
    assert created["item"] == {"type": "message", "role": "assistant",
                               "content": [{"type": "output_text", "text": "One two"}]}
    assert session.history[-1] == {"role": "assistant", "content": "One two"}
    assert [h.text for h in session.adapter.history][-1] == "One two"


async def test_cancel_stops_deltas_and_ends_with_cancelled(
        server: OpenAIRealtimeServer, session: RealtimeTextSession) -> None:
    server.pace = 1.0
    server.chunk_ms = 50
    server.script.append(Reply(" ".join(f"w{i}" for i in range(100))))
    feed = Feed(session)
    await session.send_user("Talk.")
    first = await feed.next()
    assert isinstance(first, TextDelta)
    await session.cancel()
    rest = await feed.response()
    assert rest[-1] == ResponseDone(status="cancelled", usage=rest[-1].usage)
    assert not any(isinstance(e, TextDelta) for e in rest)
    assert any(e["type"] == "response.cancel" for e in server.received)
    server.pace = None
    server.script.append(Reply("Back again."))
    await session.send_user("Hello?")
    assert text_of(await feed.response()) == "Back again."


async def test_a_fixed_greeting_added_by_hand_reaches_the_server_first(
        server: OpenAIRealtimeServer, session: RealtimeTextSession) -> None:
    feed = Feed(session)
    session.add_assistant("Welcome to Acme.")
    await session.send_user("Hi")
    await feed.response()
    items = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
    assert items[0]["role"] == "assistant" and items[1]["role"] == "user"


async def _until(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.01)
