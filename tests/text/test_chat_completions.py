"""The chat-completions text step against the simulated endpoint, over real HTTP.

Every request body is checked against the OpenAI SDK's request TypedDicts and every
chunk the simulator streamed is parsed with ``ChatCompletionChunk`` when a test ends.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.chat import completion_create_params as params
from pydantic import TypeAdapter

from agentplatform.errors import ModelConnectError
from agentplatform.realtime.base import ResponseDone, SessionError, ToolCall, ToolSpec, Usage
from agentplatform.testing.chat_completions_server import ChatCompletionsServer, ChatToolRule
from agentplatform.text.chat_completions import ChatCompletionsSession

from .conftest import Feed, text_of

KEY = "sk-local"
REQUEST_KEYS = params.CompletionCreateParamsStreaming.__required_keys__ | \
    params.CompletionCreateParamsStreaming.__optional_keys__
MESSAGES = TypeAdapter(list[ChatCompletionMessageParam])
TOOLS = [ToolSpec("lookup_order", "Find an order by number.",
                  {"type": "object", "properties": {"number": {"type": "string"}},
                   "required": ["number"]})]


@pytest.fixture
async def server() -> AsyncIterator[ChatCompletionsServer]:
    rules = [ChatToolRule("order", "lookup_order", '{"number": "A-1234"}', pieces=4)]
    async with ChatCompletionsServer(api_key=KEY, tool_rules=rules) as srv:
        yield srv
    for method, _, _, body in srv.requests:
        if method == "POST" and body is not None:
            assert set(body) <= REQUEST_KEYS, set(body) - REQUEST_KEYS
            MESSAGES.validate_python(body["messages"])
    for stream in srv.streams:
        for chunk in stream.chunks:
            ChatCompletionChunk.model_validate(chunk)


@pytest.fixture
async def opened(server: ChatCompletionsServer):
    sessions: list[ChatCompletionsSession] = []

    async def open_one(**kw: Any) -> tuple[ChatCompletionsSession, Feed]:
        options: dict[str, Any] = {"url": server.base_url, "model": "llama3.2", "api_key": KEY,
                                   "instructions": "Be brief.", "tools": TOOLS}
        options.update(kw)
        session = ChatCompletionsSession(**options)
        await session.connect()
        sessions.append(session)
        return session, Feed(session)

    yield open_one
    for session in sessions:
        await session.close()


async def test_an_answer_streams_as_deltas_with_usage(server, opened) -> None:
    server.script.append("Our shop opens at nine in the morning.")
    session, feed = await opened(temperature=0.3, max_output_tokens=200)
    await session.send_user("When do you open?")
    events = await feed.response()
    assert text_of(events) == "Our shop opens at nine in the morning."
    assert sum(1 for e in events if not isinstance(e, ResponseDone)) == 8
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed"
    assert isinstance(done.usage, Usage) and done.usage.output_text > 0
    body = server.streams[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 200
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "When do you open?"}]
    assert body["tools"][0]["function"]["name"] == "lookup_order"
    assert server.requests[-1][2]["authorization"] == f"Bearer {KEY}"


async def test_a_tool_call_split_across_chunks_becomes_one_call_then_the_answer_continues(
        server, opened) -> None:
    session, feed = await opened()
    await session.send_user("Where is my order?")
    first = await feed.response()
    calls = [e for e in first if isinstance(e, ToolCall)]
    assert len(calls) == 1
    assert calls[0].name == "lookup_order"
    assert orjson.loads(calls[0].arguments) == {"number": "A-1234"}
    argument_pieces = [c for c in server.streams[-1].chunks
                       if c["choices"] and (c["choices"][0]["delta"].get("tool_calls"))]
    assert len(argument_pieces) > 2  # it really was streamed in pieces
    await session.send_tool_result(calls[0].call_id, "lookup_order", '{"status": "shipped"}')
    second = await feed.response()
    assert text_of(second) == 'Done: {"status": "shipped"}'
    messages = server.streams[-1].body["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == calls[0].call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": calls[0].call_id,
                            "content": '{"status": "shipped"}'}


async def test_a_refused_key_is_a_fatal_session_error(server, opened) -> None:
    session, feed = await opened()
    server.api_key = "rotated"
    await session.send_user("hello")
    events = await feed.response()
    errors = [e for e in events if isinstance(e, SessionError)]
    assert len(errors) == 1 and errors[0].fatal and errors[0].code == "unauthorized"
    assert "Incorrect API key" in errors[0].message
    assert events[-1].status == "failed"
    assert session.history[-1] == {"role": "user", "content": "hello"}


async def test_connect_with_a_refused_key_fails(server) -> None:
    session = ChatCompletionsSession(url=server.base_url, model="m", api_key="wrong")
    with pytest.raises(ModelConnectError, match="refused the key"):
        await session.connect()
    await session.close()


async def test_an_endpoint_that_is_down_fails_connect_and_later_turns(server, opened) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    session = ChatCompletionsSession(url=dead, model="m")
    with pytest.raises(ModelConnectError, match="cannot reach"):
        await session.connect()
    await session.close()
    live, feed = await opened()
    await server.stop()
    await live.send_user("anyone there?")
    events = await feed.response()
    assert any(isinstance(e, SessionError) and e.fatal for e in events)


async def test_a_server_error_is_not_fatal_and_the_next_turn_works(server, opened) -> None:
    session, feed = await opened()
    server.fail_next.append(503)
    await session.send_user("hi")
    events = await feed.response()
    error = next(e for e in events if isinstance(e, SessionError))
    assert not error.fatal and "503" in error.message
    await session.send_user("hi again")
    assert text_of(await feed.response())


async def test_a_malformed_event_is_a_session_error(server, opened) -> None:
    session, feed = await opened()
    server.malformed_next = True
    await session.send_user("hi")
    events = await feed.response()
    assert any(isinstance(e, SessionError) and e.code == "malformed_stream" for e in events)


async def test_a_refused_max_tokens_switches_to_max_completion_tokens(server, opened) -> None:
    server.reject_max_tokens = True
    session, feed = await opened(max_output_tokens=64)
    await session.send_user("hi")
    events = await feed.response()
    assert not any(isinstance(e, SessionError) for e in events)
    assert server.streams[-1].body["max_completion_tokens"] == 64
    assert "max_tokens" not in server.streams[-1].body


async def test_cancel_closes_the_stream_and_keeps_what_was_streamed(server, opened) -> None:
    server.chunk_delay = 0.02
    server.script.append(" ".join(f"word{i}" for i in range(200)))
    session, feed = await opened()
    await session.send_user("talk a lot")
    events = [await feed.next(), await feed.next()]
    await session.cancel()
    events += await feed.response()
    assert events[-1] == ResponseDone(status="cancelled", usage=None)
    heard = text_of(events)
    assert heard.startswith("word0") and "word199" not in heard
    assert session.history[-1] == {"role": "assistant", "content": heard}
    async with asyncio.timeout(5):
        while not server.streams[-1].client_closed:
            await asyncio.sleep(0.01)
    assert not server.streams[-1].completed
    await session.set_heard("word0")
    assert session.history[-1]["content"] == "word0"


async def test_a_greeting_nudge_is_sent_but_not_kept(server, opened) -> None:
    session, feed = await opened()
    await session.respond('Greet the caller now. Say exactly: "Hello!"')
    await feed.response()
    sent = server.streams[-1].body["messages"]
    assert sent[-1]["role"] == "system" and "Say exactly" in sent[-1]["content"]
    assert all("Say exactly" not in str(m.get("content")) for m in session.history)


def test_tool_call_pieces_without_an_index_join_the_call_they_continue() -> None:
    from agentplatform.text.chat_completions import _call_index, _PartialCall

    calls: dict[int, _PartialCall] = {}
    assert _call_index({"id": "a", "function": {"name": "f"}}, calls) == 0
    calls[0] = _PartialCall("a", "f")
    assert _call_index({"function": {"arguments": "{}"}}, calls) == 0
    assert _call_index({"id": "b", "function": {"name": "g"}}, calls) == 1
    assert _call_index({"index": 5}, calls) == 5
