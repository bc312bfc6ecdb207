"""The OpenAI Realtime simulator, driven by a bare WebSocket client.

Every event the simulator sends (OpenAI flavour) is checked against the SDK's typed
server events as it arrives.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentplatform.audio.codecs import pcm16_to_ulaw
from agentplatform.audio.frames import silence, tone
from agentplatform.testing.typed_events import strict_validate
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, Reply, ToolRule

KEY = "sim-key"
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
SESSION_EXTRAS = {"$.session.id", "$.session.object", "$.session.expires_at"}
GA_SESSION = {"type": "realtime", "instructions": "Hi.",
              "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                  "turn_detection": {"type": "server_vad"},
                                  "transcription": {"model": "gpt-4o-mini-transcribe"}},
                        "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                   "voice": "marin"}}}



class Client:
    """A raw client: sends dicts, reads events (validated) until the one it waits for."""

    def __init__(self, ws: ClientConnection, validate: bool = True) -> None:
        self.ws = ws
        self.validate = validate

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(event).decode())

    async def until(self, kind: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while True:
                raw = await self.ws.recv()
                if self.validate:
                    strict_validate(SERVER_EVENT, raw, SESSION_EXTRAS)
                seen.append(orjson.loads(raw))
                if seen[-1]["type"] == kind:
                    return seen

    async def audio(self, pcm: bytes, frame_ms: int = 20, rate: int = 24000,
                    ulaw: bool = False) -> None:
        step = rate * frame_ms // 1000 * 2
        for i in range(0, len(pcm), step):
            frame = pcm[i:i + step]
            frame = pcm16_to_ulaw(frame) if ulaw else frame
            await self.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(frame).decode()})


@pytest.fixture
async def server() -> AsyncIterator[OpenAIRealtimeServer]:
    async with OpenAIRealtimeServer(api_key=KEY) as srv:
        yield srv


async def open_client(server: OpenAIRealtimeServer, session: dict[str, Any] | None = None,
                      validate: bool = True) -> Client:
    ws = await connect(server.url + "?model=gpt-realtime",
                       additional_headers={"Authorization": f"Bearer {KEY}"})
    client = Client(ws, validate)
    await client.until("conversation.created" if server.flavour == "xai" else "session.created")
    if session is not None:
        await client.send({"type": "session.update", "session": session})
        await client.until("session.updated")
    return client


def caller_turn(voice_ms: int = 600, rate: int = 24000) -> bytes:
    return tone(250, voice_ms, rate, 0.3) + silence(700, rate)


# ---------------------------------------------------------------- upgrade and session


async def test_a_wrong_key_is_refused_with_401_at_the_upgrade(
        server: OpenAIRealtimeServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(server.url, additional_headers={"Authorization": "Bearer nope"})
    assert info.value.response.status_code == 401
    server.refuse_key = True
    with pytest.raises(InvalidStatus):
        await connect(server.url, additional_headers={"Authorization": f"Bearer {KEY}"})


async def test_the_api_key_header_is_accepted_like_a_bearer(
        server: OpenAIRealtimeServer) -> None:
    async with connect(server.url, additional_headers={"api-key": KEY}) as ws:
        assert orjson.loads(await ws.recv())["type"] == "session.created"


async def test_fail_connects_refuses_that_many_upgrades(server: OpenAIRealtimeServer) -> None:
    server.fail_connects = 1
    with pytest.raises(InvalidStatus) as info:
        await open_client(server)
    assert info.value.response.status_code == 503
    client = await open_client(server)
    await client.ws.close()


async def test_session_update_is_recorded_and_answered_with_the_effective_session(
        server: OpenAIRealtimeServer) -> None:
    client = await open_client(server)
    await client.send({"type": "session.update", "session": {**GA_SESSION,
                                                             "max_output_tokens": 200}})
    updated = (await client.until("session.updated"))[-1]["session"]
    assert updated["audio"]["output"]["voice"] == "marin"
    assert updated["max_output_tokens"] == 200
    assert server.sessions == [{**GA_SESSION, "max_output_tokens": 200}]


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"temperature": 0.8}, "unknown_parameter", "session.temperature"),
        ({"type": None}, "missing_required_parameter", "session.type"),
        ({"max_output_tokens": 9000}, "invalid_value", "session.max_output_tokens"),
        ({"output_modalities": ["audio", "text"]}, "invalid_value", "session.output_modalities"),
        ({"audio": {"output": {"voice": "nobody"}}}, "invalid_value",
         "session.audio.output.voice"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
         "invalid_value", "session.audio.input.format.rate"),
        ({"audio": {"input": {"vad": {}}}}, "unknown_parameter", "session.audio.input.vad"),
    ],
)
async def test_an_invalid_session_update_is_an_error_event(
        server: OpenAIRealtimeServer, change: dict[str, Any], code: str, param: str) -> None:
    client = await open_client(server)
    session = {**GA_SESSION, **change}
    if change.get("type", "") is None:
        del session["type"]
    await client.send({"type": "session.update", "event_id": "ev1", "session": session})
    error = (await client.until("error"))[-1]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "ev1")
    assert server.sessions == []


async def test_malformed_json_and_unknown_events_get_errors_not_a_closed_socket(
        server: OpenAIRealtimeServer) -> None:
    client = await open_client(server)
    await client.ws.send("{oops")
    assert (await client.until("error"))[-1]["error"]["code"] == "invalid_json"
    await client.send({"type": "no.such.event"})
    assert (await client.until("error"))[-1]["error"]["param"] == "type"
    await client.send({"type": "session.update", "session": GA_SESSION})
    await client.until("session.updated")


# ---------------------------------------------------------------- turns and answers


async def test_vad_commits_a_caller_turn_and_answers_with_audio_and_usage(
        server: OpenAIRealtimeServer) -> None:
    server.caller_texts = ["hello there"]
    client = await open_client(server, GA_SESSION)
    await client.audio(caller_turn(voice_ms=600))
    events = await client.until("response.done")
    kinds = [e["type"] for e in events]
    for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed", "response.created",
                     "response.output_item.added", "response.content_part.added",
                     "response.output_audio_transcript.delta", "response.output_audio.done",
                     "response.content_part.done", "response.output_item.done"):
        assert expected in kinds
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.created")
    done = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert done[0]["transcript"] == "hello there"
    audio = b"".join(base64.b64decode(e["delta"]) for e in events
                     if e["type"] == "response.output_audio.delta")
    assert len(audio) == server.reply_ms * 48
    usage = events[-1]["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 600 // 100
    assert usage["output_token_details"]["audio_tokens"] == server.reply_ms // 50
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 600


async def test_ulaw_input_and_output_are_8khz_g711(server: OpenAIRealtimeServer) -> None:
    ulaw = {"type": "audio/pcmu"}
    client = await open_client(server, {**GA_SESSION, "audio": {
        "input": {"format": ulaw, "turn_detection": {"type": "server_vad"}},
        "output": {"format": ulaw, "voice": "marin"}}})
    await client.audio(caller_turn(400, 8000), rate=8000, ulaw=True)
    events = await client.until("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events
                     if e["type"] == "response.output_audio.delta")
    assert len(audio) == server.reply_ms * 8
    assert "input_audio_buffer.speech_started" in [e["type"] for e in events]


async def test_silence_alone_never_starts_a_turn(server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, GA_SESSION)
    await client.audio(silence(1000, 24000))
    await client.send({"type": "response.cancel"})
    events = await client.until("error")
    assert [e["type"] for e in events] == ["error"]


async def test_manual_commit_on_an_empty_buffer_is_an_error(server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, {**GA_SESSION, "audio": {"input": {"turn_detection": None}}})
    await client.send({"type": "input_audio_buffer.commit"})
    assert (await client.until("error"))[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    await client.audio(tone(250, 200, 24000))
    await client.send({"type": "input_audio_buffer.commit"})
    events = await client.until("input_audio_buffer.committed")
    assert "input_audio_buffer.speech_started" not in [e["type"] for e in events]


async def test_text_modality_streams_text_not_audio(server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, {**GA_SESSION, "output_modalities": ["text"]})
    await client.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    kinds = {e["type"] for e in events}
    assert "response.output_text.done" in kinds and "response.output_audio.delta" not in kinds


async def test_a_second_response_create_while_answering_is_an_error(
        server: OpenAIRealtimeServer) -> None:
    server.pace = 1.0
    client = await open_client(server, GA_SESSION)
    await client.send({"type": "response.create"})
    await client.until("response.created")
    await client.send({"type": "response.create"})
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == "conversation_already_has_active_response"


# ---------------------------------------------------------------- truncate and cancel


async def test_truncate_is_checked_against_the_audio_sent_so_far(
        server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, GA_SESSION)
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    item_id = next(e["item_id"] for e in events if e["type"] == "response.output_audio.delta")
    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    await client.send({**truncate, "audio_end_ms": server.reply_ms + 1})
    error = (await client.until("error"))[-1]["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "audio_end_ms"
    await client.send({**truncate, "audio_end_ms": 700})
    truncated = (await client.until("conversation.item.truncated"))[-1]
    assert truncated["audio_end_ms"] == 700
    assert server.truncates == [(item_id, 700)]


async def test_cancel_ends_the_response_as_cancelled_and_idle_cancel_is_an_error(
        server: OpenAIRealtimeServer) -> None:
    server.pace, server.script = 1.0, [Reply("Long.", audio_ms=6000)]
    client = await open_client(server, GA_SESSION)
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.send({"type": "response.cancel"})
    events = await client.until("response.done")
    response = events[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "client_cancelled"
    sent = sum(len(base64.b64decode(e["delta"])) for e in events
               if e["type"] == "response.output_audio.delta")
    assert sent < 6000 * 48
    await client.send({"type": "response.cancel"})
    assert (await client.until("error"))[-1]["error"]["code"] == "response_cancel_not_active"


async def test_caller_speech_interrupts_the_answer(server: OpenAIRealtimeServer) -> None:
    server.pace, server.script = 1.0, [Reply("Long.", audio_ms=6000)]
    client = await open_client(server, GA_SESSION)
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.audio(tone(250, 100, 24000, 0.3))
    events = await client.until("response.done")
    assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"


# ---------------------------------------------------------------- tools


async def test_a_tool_rule_calls_the_tool_and_the_output_gets_an_answer(
        server: OpenAIRealtimeServer) -> None:
    server.caller_texts = ["what is the weather"]
    server.tool_rules = [ToolRule("weather", "get_weather", '{"city": "Oslo"}')]
    client = await open_client(server, GA_SESSION)
    await client.audio(caller_turn())
    events = await client.until("response.done")
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert (call["name"], call["arguments"]) == ("get_weather", '{"city": "Oslo"}')
    assert events[-1]["response"]["output"][0]["type"] == "function_call"
    await client.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}})
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    assert "response.function_call_arguments.done" not in [e["type"] for e in events]
    assert events[-1]["response"]["output"][0]["role"] == "assistant"


async def test_a_scripted_reply_can_speak_and_then_call_a_tool(
        server: OpenAIRealtimeServer) -> None:
    server.script = [Reply("Let me check.", audio_ms=300, tool_call=("lookup", "{}"))]
    client = await open_client(server, GA_SESSION)
    await client.send({"type": "response.create"})
    output = (await client.until("response.done"))[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]


# ---------------------------------------------------------------- faults and scale


async def test_expire_session_sends_session_expired_then_closes_1001(
        server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, GA_SESSION)
    await server.expire_session()
    assert (await client.until("error"))[-1]["error"]["code"] == "session_expired"
    with pytest.raises(ConnectionClosed) as info:
        await client.ws.recv()
    assert info.value.rcvd.code == 1001


async def test_drop_cuts_the_connection_without_a_close_frame(
        server: OpenAIRealtimeServer) -> None:
    client = await open_client(server, GA_SESSION)
    await server.drop()
    with pytest.raises(ConnectionClosed) as info:
        await client.ws.recv()
    assert info.value.rcvd is None


async def test_xai_flavour_greets_with_conversation_created_and_takes_xai_sessions() -> None:
    async with OpenAIRealtimeServer(api_key=KEY, flavour="xai") as server:
        client = await open_client(server, validate=False)
        await client.send({"type": "session.update", "session": {"type": "realtime"}})
        assert (await client.until("error"))[-1]["error"]["param"] == "session.type"
        await client.send({"type": "session.update", "session": {
            "voice": "rex", "turn_detection": {"type": "server_vad"},
            "audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
        await client.until("session.updated")
        assert server.connections[0].facts.voice == "rex"
        await client.send({"type": "session.update", "session": {"voice": "marin"}})
        assert (await client.until("error"))[-1]["error"]["param"] == "session.voice"


async def test_many_concurrent_calls_are_served_independently(
        server: OpenAIRealtimeServer) -> None:
    async def one_call(n: int) -> int:
        client = await open_client(server, GA_SESSION)
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        await client.ws.close()
        return sum(len(base64.b64decode(e["delta"])) for e in events
                   if e["type"] == "response.output_audio.delta")

    sizes = await asyncio.gather(*(one_call(n) for n in range(30)))
    assert sizes == [server.reply_ms * 48] * 30
    assert len(server.connections) == 30
