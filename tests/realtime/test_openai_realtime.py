"""The OpenAI Realtime adapter against the simulator, over a real loopback socket.

Every event the adapter sends is checked against the SDK's typed client events, and
every event the simulator sent against its typed server events, when each test ends.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.server import serve

from agentplatform.audio.frames import silence, tone
from agentplatform.errors import ModelConnectError
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    HistoryItem,
    ModelEvent,
    ResponseDone,
    SessionError,
    SessionNotice,
    SessionSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    ToolSpec,
    Transcript,
)
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession, SessionState
from agentplatform.testing.typed_events import strict_validate
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, Reply, ToolRule

KEY = "sk-sim"
CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
# The GA server reports these on its session object; the SDK's request model omits them.
SESSION_EXTRAS = {"$.session.id", "$.session.object", "$.session.expires_at"}



def _strict(adapter: TypeAdapter, event: dict[str, Any], allowed: set[str]) -> None:
    strict_validate(adapter, event, allowed)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIRealtimeServer]:
    async with OpenAIRealtimeServer(api_key=KEY, caller_texts=["I need help"]) as srv:
        yield srv
    for event in srv.received:
        _strict(CLIENT_EVENT, event, set())
    for call in srv.connections:
        for event in call.sent:
            _strict(SERVER_EVENT, event, SESSION_EXTRAS)


def make_setup(server: OpenAIRealtimeServer, **kw: Any) -> SessionSetup:
    base: dict[str, Any] = {"model": "gpt-realtime", "instructions": "Be brief.",
                            "voice": "marin", "url": server.url, "api_key": KEY}
    base.update(kw)
    return SessionSetup(**base)


class Feed:
    """Reads a session's events up to the one a test waits for (with a hang guard)."""

    def __init__(self, session: OpenAIRealtimeSession) -> None:
        self._events = session.events()

    async def until(self, match: Callable[[ModelEvent], bool]) -> list[ModelEvent]:
        seen: list[ModelEvent] = []
        async with asyncio.timeout(10):
            while True:
                event = await anext(self._events)
                seen.append(event)
                if match(event):
                    return seen


@pytest.fixture
async def opened(server: OpenAIRealtimeServer) -> AsyncIterator[Callable[..., Any]]:
    sessions: list[OpenAIRealtimeSession] = []

    async def open_session(**kw: Any) -> tuple[OpenAIRealtimeSession, Feed]:
        options = {k: kw.pop(k) for k in ("reconnect_attempts", "reconnect_backoff") if k in kw}
        session = OpenAIRealtimeSession(make_setup(server, **kw), **options)
        await session.connect()
        sessions.append(session)
        return session, Feed(session)

    yield open_session
    for session in sessions:
        await session.close()


async def speak(session: OpenAIRealtimeSession, voice_ms: int = 400, quiet_ms: int = 600) -> None:
    rate = session.capabilities.input_rate
    voiced, quiet = tone(300, 20, rate, 0.3), silence(20, rate)
    if session.capabilities.g711:
        from agentplatform.audio.codecs import pcm16_to_ulaw
        voiced, quiet = pcm16_to_ulaw(voiced), pcm16_to_ulaw(quiet)
    for _ in range(voice_ms // 20):
        await session.send_audio(voiced)
    for _ in range(quiet_ms // 20):
        await session.send_audio(quiet)


async def until_true(check: Callable[[], Any]) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)


def is_done(event: ModelEvent) -> bool:
    return isinstance(event, ResponseDone)


def of_type(server: OpenAIRealtimeServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.received if e.get("type") == kind]


# ---------------------------------------------------------------- connect


async def test_connect_sends_the_agent_session_with_advanced_merged_last(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    tool = ToolSpec("lookup", "Find an order.", {"type": "object", "properties": {}})
    await opened(max_output_tokens=300, tools=[tool],
                 turn_detection={"type": "server_vad", "threshold": 0.4,
                                 "prefix_padding_ms": 250, "silence_duration_ms": 600},
                 advanced={"audio": {"output": {"voice": "cedar"}}})
    path, headers = server.requests[0]
    assert path == "/v1/realtime?model=gpt-realtime"
    assert headers["Authorization"] == f"Bearer {KEY}"
    (session,) = server.sessions
    assert session["instructions"] == "Be brief."
    assert session["max_output_tokens"] == 300
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 600
    assert session["tools"][0]["name"] == "lookup"
    assert server.connections[0].facts.voice == "cedar"


async def test_seeded_history_is_sent_right_after_the_session_update(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    await opened(history=[HistoryItem("user", "My order is late."),
                          HistoryItem("assistant", "Let me check.")])
    await until_true(lambda: len(server.connections[0].items) == 2)
    kinds = [e["type"] for e in server.received]
    assert kinds == ["session.update", "conversation.item.create", "conversation.item.create"]
    items = [e["item"] for e in server.received[1:]]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("user", "My order is late."), ("assistant", "Let me check.")]


async def test_a_wrong_key_is_a_connect_error(server: OpenAIRealtimeServer) -> None:
    session = OpenAIRealtimeSession(make_setup(server, api_key="wrong"))
    with pytest.raises(ModelConnectError, match="401"):
        await session.connect()
    assert session.state is SessionState.CLOSED


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = OpenAIRealtimeSession(SessionSetup(model="m", instructions="",
                                                 url=f"ws://127.0.0.1:{port}/v1/realtime"))
    with pytest.raises(ModelConnectError):
        await session.connect()


async def test_a_server_that_never_greets_times_out_as_a_connect_error() -> None:
    async def silent(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as quiet:
        port = quiet.sockets[0].getsockname()[1]
        session = OpenAIRealtimeSession(
            SessionSetup(model="m", instructions="", url=f"ws://127.0.0.1:{port}/v1/realtime"),
            connect_timeout=0.3)
        with pytest.raises(ModelConnectError, match="timed out"):
            await session.connect()


async def test_a_rejected_session_update_is_a_connect_error(server: OpenAIRealtimeServer) -> None:
    session = OpenAIRealtimeSession(make_setup(server, voice="nobody"))
    with pytest.raises(ModelConnectError, match="invalid_value"):
        await session.connect()


@pytest.mark.parametrize(
    ("api_version", "path"),
    [("", "/openai/v1/realtime?model=my-rt"),
     ("2025-04-01-preview", "/openai/realtime?api-version=2025-04-01-preview&deployment=my-rt")],
)
async def test_azure_urls_and_api_key_header_reach_the_server(
        server: OpenAIRealtimeServer, opened: Callable[..., Any], api_version: str,
        path: str) -> None:
    await opened(model="my-rt", url=server.base_url, auth="api-key",
                 extra={"endpoint": server.base_url, "api_version": api_version})
    got_path, headers = server.requests[0]
    assert got_path == path
    assert headers["api-key"] == KEY
    assert "Authorization" not in headers


async def test_an_entra_token_is_sent_as_bearer(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    await opened(api_key="", auth="api-key",
                 extra={"endpoint": server.base_url, "azure_ad_token": KEY})
    assert server.requests[0][1]["Authorization"] == f"Bearer {KEY}"


# ---------------------------------------------------------------- a call


async def test_a_caller_turn_becomes_speech_events_audio_transcripts_and_usage(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await speak(session, voice_ms=400)
    events = await feed.until(is_done)
    kinds = [type(e) for e in events]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(AudioDelta)
    user = [e for e in events if isinstance(e, Transcript) and e.role == "user" and e.final]
    assert [u.text for u in user] == ["I need help"]
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    assert len(audio) == server.reply_ms * 48
    assert any(isinstance(e, AudioDone) for e in events)
    said = [e for e in events if isinstance(e, Transcript) and e.role == "assistant"]
    assert said[-1].final
    assert said[-1].text == "".join(e.text for e in said[:-1])
    done = events[-1]
    assert done.status == "completed"
    assert done.usage.input_audio == 400 // 100
    assert done.usage.output_audio == server.reply_ms // 50
    assert session.history == [HistoryItem("user", "I need help"),
                               HistoryItem("assistant", said[-1].text)]


async def test_ulaw_passthrough_sends_and_receives_g711(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened(audio_format="g711_ulaw")
    assert (session.capabilities.input_rate, session.capabilities.g711) == (8000, True)
    await speak(session)
    events = await feed.until(is_done)
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    assert len(audio) == server.reply_ms * 8
    assert server.connections[0].facts.in_fmt == "audio/pcmu"


async def test_text_modality_answers_in_text(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened(output_modality="text")
    await session.send_text("Hello?")
    events = await feed.until(is_done)
    assert not any(isinstance(e, AudioDelta) for e in events)
    final = [e for e in events if isinstance(e, Transcript) and e.final]
    assert final and final[-1].role == "assistant" and final[-1].text
    created = of_type(server, "conversation.item.create")[0]["item"]
    assert created["content"] == [{"type": "input_text", "text": "Hello?"}]


async def test_request_response_passes_per_response_instructions(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.request_response("Greet the caller.")
    await feed.until(is_done)
    assert server.response_instructions == ["Greet the caller."]


# ---------------------------------------------------------------- barge-in


async def test_truncate_within_the_sent_audio_is_recorded_and_cuts_history(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.request_response()
    events = await feed.until(is_done)
    item_id = next(e.item_id for e in events if isinstance(e, AudioDelta))
    await session.truncate(item_id, server.reply_ms // 2)
    await until_true(lambda: server.truncates)
    assert server.truncates == [(item_id, server.reply_ms // 2)]
    full = next(e.text for e in events if isinstance(e, Transcript) and e.final)
    heard = session.history[-1].text
    assert heard.endswith("…") and full.startswith(heard.removesuffix("…").strip())


async def test_truncate_beyond_the_sent_audio_comes_back_as_an_error(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.request_response()
    events = await feed.until(is_done)
    item_id = next(e.item_id for e in events if isinstance(e, AudioDelta))
    await session.truncate(item_id, server.reply_ms + 500)
    (error,) = [e for e in await feed.until(lambda e: isinstance(e, SessionError))]
    assert not error.fatal and "shorter" in error.message
    assert server.truncates == []


async def test_cancel_stops_the_answer_once(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    server.pace, server.script = 1.0, [Reply("A long answer.", audio_ms=5000)]
    session, feed = await opened()
    await session.request_response()
    await feed.until(lambda e: isinstance(e, AudioDelta))
    await session.cancel_response()
    await session.cancel_response()
    events = await feed.until(is_done)
    assert events[-1].status == "cancelled"
    await session.cancel_response()  # nothing runs now: must not reach the server
    server.pace = None
    await session.request_response()
    events = await feed.until(is_done)
    assert len(of_type(server, "response.cancel")) == 1
    assert not any(isinstance(e, SessionError) for e in events)


async def test_speech_over_an_answer_lets_the_server_cancel_without_a_second_cancel(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    server.pace, server.script = 1.0, [Reply("A long answer.", audio_ms=8000)]
    session, feed = await opened()
    await session.request_response()
    await feed.until(lambda e: isinstance(e, AudioDelta))
    await speak(session, voice_ms=100, quiet_ms=0)
    await feed.until(lambda e: isinstance(e, SpeechStarted))
    await session.cancel_response()
    events = await feed.until(is_done)
    assert events[-1].status == "cancelled"
    assert of_type(server, "response.cancel") == []


# ---------------------------------------------------------------- tools


async def test_a_tool_call_round_trip_emits_the_call_once_and_answers_after(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    server.caller_texts = ["where is my order"]
    server.tool_rules = [ToolRule("order", "lookup", '{"order": 42}')]
    session, feed = await opened(tools=[ToolSpec("lookup", "", {"type": "object"})])
    await speak(session)
    events = await feed.until(is_done)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("lookup", '{"order": 42}')]
    await session.send_tool_result(calls[0].call_id, "lookup", '{"status": "shipped"}')
    events = await feed.until(is_done)
    assert events[-1].status == "completed"
    assert any(isinstance(e, Transcript) and e.role == "assistant" and e.final for e in events)
    assert not any(isinstance(e, ToolCall) for e in events)
    outputs = [e["item"] for e in of_type(server, "conversation.item.create")]
    assert outputs == [{"type": "function_call_output", "call_id": calls[0].call_id,
                        "output": '{"status": "shipped"}'}]
    assert server.received[-1]["type"] == "response.create"


# ---------------------------------------------------------------- faults


async def test_an_expired_session_reconnects_and_replays_the_conversation(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.send_text("My name is Ada.")
    answer = [e for e in await feed.until(is_done) if isinstance(e, Transcript) and e.final]
    await server.expire_session()
    events = await feed.until(lambda e: isinstance(e, SessionNotice))
    assert not any(isinstance(e, SessionError) for e in events)
    assert events[-1].kind == "reconnected" and events[-1].detail["reason"] == "session_expired"
    await until_true(lambda: len(server.connections[1].items) == 2)
    second = server.connections[1].received
    assert second[0]["type"] == "session.update"
    replayed = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in second[1:]]
    assert replayed == [("user", "My name is Ada."), ("assistant", answer[-1].text)]
    await session.send_text("Still there?")
    assert (await feed.until(is_done))[-1].status == "completed"


async def test_a_dropped_socket_reconnects_and_drops_audio_meanwhile(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened(reconnect_backoff=0.05)
    server.fail_connects = 2
    await server.drop()
    await until_true(lambda: session.state is SessionState.RECONNECTING)
    await session.send_audio(silence(20, 24000))
    assert session.dropped_audio == 1
    notice = (await feed.until(lambda e: isinstance(e, SessionNotice)))[-1]
    assert notice.detail["attempt"] == 3
    assert session.state is SessionState.OPEN
    await session.request_response()
    assert (await feed.until(is_done))[-1].status == "completed"


async def test_a_lost_session_that_cannot_reconnect_is_a_fatal_error(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened(reconnect_attempts=2, reconnect_backoff=0.01)
    server.fail_connects = 5
    await server.drop()
    events = await feed.until(lambda e: isinstance(e, SessionError))
    assert events[-1].fatal
    with pytest.raises(StopAsyncIteration):
        await feed.until(lambda e: True)


async def test_malformed_and_unknown_server_events_are_skipped(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    ws = server.connections[0].ws
    await ws.send("{not json")
    await ws.send('{"type": "something.new", "x": 1}')
    await session.request_response()
    assert (await feed.until(is_done))[-1].status == "completed"
    assert session.malformed == 1


async def test_close_ends_the_event_stream(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.close()
    with pytest.raises(StopAsyncIteration):
        await feed.until(lambda e: True)
    await session.send_audio(silence(20, 24000))  # after close: dropped, never raises
    assert session.dropped_audio == 1


async def test_audio_to_a_model_that_stops_reading_waits_instead_of_piling_up(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    # Appends are written straight to the socket while it keeps up; once the peer stops
    # reading and the kernel's buffers fill, an append must wait for the peer (as
    # ``send`` does), not queue without bound in the process.
    session, _ = await opened()
    server.connections[0].ws.transport.pause_reading()
    chunk = silence(100, 24000)
    for _ in range(5000):  # 32 MB: far more than loopback socket buffers hold
        try:
            await asyncio.wait_for(session.send_audio(chunk), 1.0)
        except TimeoutError:
            break
    else:
        pytest.fail("every append returned at once while the model read nothing")
    assert session._ws is not None
    assert session._ws.transport.get_write_buffer_size() < 256 * 1024
    server.connections[0].ws.transport.resume_reading()


async def test_a_response_cut_off_by_a_drop_ends_as_failed_before_the_reconnect(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    server.pace, server.script = 1.0, [Reply("A long answer.", audio_ms=8000)]
    session, feed = await opened()
    await session.request_response()
    await feed.until(lambda e: isinstance(e, AudioDelta))
    await server.drop()
    events = await feed.until(lambda e: isinstance(e, SessionNotice))
    done = [e for e in events if isinstance(e, ResponseDone)]
    assert [d.status for d in done] == ["failed"]


async def test_a_tool_result_sent_while_reconnecting_is_delivered_after_the_replay(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened(reconnect_backoff=0.05,
                                 history=[HistoryItem("user", "Check order 42.")])
    server.fail_connects = 1
    await server.drop()
    await until_true(lambda: session.state is SessionState.RECONNECTING)
    await session.send_tool_result("call_7", "lookup", '{"status": "shipped"}')
    await feed.until(lambda e: isinstance(e, SessionNotice))
    await feed.until(is_done)
    kinds = [(e["type"], e.get("item", {}).get("type")) for e in server.connections[-1].received]
    assert kinds == [("session.update", None), ("conversation.item.create", "message"),
                     ("conversation.item.create", "function_call_output"),
                     ("response.create", None)]


async def test_delivered_events_reach_the_sink_in_order_after_the_queued_ones(
        server: OpenAIRealtimeServer, opened: Callable[..., Any]) -> None:
    session, feed = await opened()
    await session.request_response()
    first = await feed.until(is_done)  # one answer read through events()
    await session.request_response()
    await until_true(lambda: session._queue.qsize() >= 3)  # part of a second one waits queued
    queued = session._queue.qsize()
    got: list[ModelEvent] = []
    session.deliver_to(got.append)
    assert len(got) == queued  # what was queued went first, in order
    await until_true(lambda: got and isinstance(got[-1], ResponseDone))
    assert [type(e) for e in got] == [type(e) for e in first]
    assert b"".join(e.audio for e in got if isinstance(e, AudioDelta)) == \
        b"".join(e.audio for e in first if isinstance(e, AudioDelta))
    await session.close()
    with pytest.raises(StopAsyncIteration):  # the end still comes through events()
        await feed.until(lambda e: True)
