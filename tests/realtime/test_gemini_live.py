"""The Gemini Live adapter against the simulator, over real loopback TLS."""

from __future__ import annotations

import asyncio
import json
import warnings
from http import HTTPStatus
from collections.abc import AsyncIterator, AsyncGenerator
from typing import Any

import numpy as np
import pytest
from google.genai import types
from websockets.asyncio.server import ServerConnection, serve

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
    ToolCall,
    ToolSpec,
    Transcript,
)
from agentplatform.realtime.gemini_live import GeminiLiveSession
from agentplatform.testing.gemini_live_server import (
    TOKENS_PER_AUDIO_SECOND,
    GeminiLiveServer,
    ScriptedTurn,
)
from agentplatform.testing.tls import TlsPair, make_tls_pair

KEY = "test-gemini-key"
WAIT = 10.0  # a safety net for a hung test, never a performance bound


def tone(ms: int, amplitude: int = 8000) -> bytes:
    t = np.arange(16 * ms) / 16000
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(32 * ms)


async def speak(session: GeminiLiveSession, ms: int = 300) -> None:
    """An utterance in 20 ms frames, then enough silence to end the caller's turn."""
    for frame in range(ms // 20):
        await session.send_audio(tone(20))
    for frame in range(15):
        await session.send_audio(silence(20))


def validate_client_message(message: dict[str, Any]) -> None:
    message = json.loads(json.dumps(message))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup = message.get("setup")
        if isinstance(setup, dict) and "realtimeInputConfig" in setup:
            types.RealtimeInputConfig.model_validate(setup.pop("realtimeInputConfig"))
        types.LiveClientMessage.model_validate(message)


class Events:
    """Reads a session's events in order, up to the first one of a wanted type."""

    def __init__(self, session: GeminiLiveSession) -> None:
        self._it: AsyncIterator[ModelEvent] = session.events().__aiter__()

    async def until(self, kind: type, where: Any = None) -> list[ModelEvent]:
        seen: list[ModelEvent] = []
        while True:
            event = await asyncio.wait_for(self._it.__anext__(), WAIT)
            seen.append(event)
            if isinstance(event, kind) and (where is None or where(event)):
                return seen


@pytest.fixture
def tls() -> TlsPair:
    return make_tls_pair()


@pytest.fixture
async def server(tls: TlsPair) -> AsyncGenerator[GeminiLiveServer]:
    async with GeminiLiveServer(api_key=KEY, ssl_context=tls.server, speed=20) as srv:
        yield srv


def make_setup(server: GeminiLiveServer, tls: TlsPair, **overrides: Any) -> SessionSetup:
    values: dict[str, Any] = {
        "model": "gemini-2.5-flash-native-audio-preview-12-2025",
        "instructions": "You take orders for a bakery.",
        "voice": "Aoede",
        "turn_detection": {
            "type": "server_vad", "threshold": 0.7, "prefix_padding_ms": 100,
            "silence_duration_ms": 200,
        },
        "tools": [
            ToolSpec(
                "order_status", "Look up an order.",
                {"type": "object", "properties": {"order_id": {"type": "string"}}},
            )
        ],
        "url": server.url,
        "api_key": KEY,
        "auth": "api-key",
        "extra": {"ssl": tls.client},
    }
    values.update(overrides)
    return SessionSetup(**values)


@pytest.fixture
async def session(server: GeminiLiveServer, tls: TlsPair) -> AsyncGenerator[GeminiLiveSession]:
    s = GeminiLiveSession(make_setup(server, tls))
    await s.connect()
    yield s
    await s.close()


def test_capabilities_say_16k_in_24k_out_audio_only_without_truncate() -> None:
    caps = GeminiLiveSession.capabilities
    assert (caps.input_rate, caps.output_rate) == (16000, 24000)
    assert not caps.truncates and not caps.g711 and not caps.text_modality


async def test_connect_sends_a_setup_with_voice_instructions_tools_and_vad(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    conn = server.connections[0]
    assert conn.headers.get("x-goog-api-key") == KEY
    setup = conn.setup
    assert setup is not None
    assert setup["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    voice = setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
    assert voice["voiceName"] == "Aoede"
    assert setup["systemInstruction"]["parts"][0]["text"] == "You take orders for a bakery."
    assert setup["tools"][0]["functionDeclarations"][0]["name"] == "order_status"
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {
        "disabled": False, "prefixPaddingMs": 100, "silenceDurationMs": 200,
        "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
    }
    for message in conn.received:
        validate_client_message(message)


async def test_advanced_settings_reach_the_service_merged_last(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    advanced = {
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 300}},
        "generationConfig": {"speechConfig": {"languageCode": "de-DE"}},
    }
    s = GeminiLiveSession(make_setup(server, tls, advanced=advanced))
    await s.connect()
    await s.close()
    setup = server.connections[0].setup
    assert setup is not None
    aad = setup["realtimeInputConfig"]["automaticActivityDetection"]
    assert aad["silenceDurationMs"] == 300 and aad["prefixPaddingMs"] == 100
    speech = setup["generationConfig"]["speechConfig"]
    assert speech["languageCode"] == "de-DE"
    assert speech["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Aoede"


async def test_a_spoken_turn_gives_transcripts_audio_and_usage(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    server.script.append(ScriptedTurn(says="We open at eight.", heard="when do you open", audio_seconds=0.4))
    events = Events(session)
    await speak(session, 300)
    seen = await events.until(ResponseDone)
    audio = [e for e in seen if isinstance(e, AudioDelta)]
    assert len({e.item_id for e in audio}) == 1
    item_id = audio[0].item_id
    assert sum(len(e.audio) for e in audio) == int(0.4 * 24000) * 2
    assert any(np.frombuffer(e.audio, "<i2").any() for e in audio)
    finals = [e for e in seen if isinstance(e, Transcript) and e.final]
    assert [(e.role, e.text) for e in finals] == [
        ("user", "when do you open"), ("assistant", "We open at eight.")
    ]
    assert finals[1].item_id == item_id
    assert any(isinstance(e, AudioDone) and e.item_id == item_id for e in seen)
    done = seen[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed"
    assert done.usage is not None
    assert done.usage.output_audio == int(0.4 * TOKENS_PER_AUDIO_SECOND)
    assert done.usage.input_audio > 0 and done.usage.input_text > 0
    assert all(isinstance(m, dict) for m in server.connections[0].received)
    for message in server.connections[0].received:
        validate_client_message(message)


async def test_caller_speaking_over_an_answer_is_a_barge_in(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    long_answer = "Let me tell you about every single cake we bake today."
    server.script += [ScriptedTurn(says=long_answer, audio_seconds=120.0), ScriptedTurn(says="Sure.")]
    events = Events(session)
    await speak(session)
    first = await events.until(AudioDelta)
    item_id = first[-1].item_id
    await session.send_audio(tone(40))
    seen = await events.until(SpeechStarted)
    assert seen[-1].item_id == item_id
    rest = await events.until(Transcript, lambda e: e.role == "assistant" and e.final)
    assert any(isinstance(e, AudioDone) and e.item_id == item_id for e in rest)
    assert rest[-1].text != long_answer  # cut off where the model stopped
    # The caller finishes; the next answer is a fresh, completed response.
    for _ in range(15):
        await session.send_audio(silence(20))
    after = await events.until(ResponseDone)
    assert after[-1].status == "completed"
    finals = [e.text for e in after if isinstance(e, Transcript) and e.final and e.role == "assistant"]
    assert finals == ["Sure."]


async def test_a_tool_call_round_trip(server: GeminiLiveServer, session: GeminiLiveSession) -> None:
    server.script.append(
        ScriptedTurn(says="It shipped.", tool="order_status", tool_args={"order_id": "A7"})
    )
    events = Events(session)
    await speak(session)
    seen = await events.until(ToolCall)
    call = seen[-1]
    assert call.name == "order_status" and json.loads(call.arguments) == {"order_id": "A7"}
    await session.send_tool_result(call.call_id, call.name, '{"status": "shipped"}')
    after = await events.until(ResponseDone)
    finals = [e.text for e in after if isinstance(e, Transcript) and e.final and e.role == "assistant"]
    assert finals == ["It shipped."]
    assert server.connections[0].tool_responses == [
        {"id": call.call_id, "name": "order_status", "response": {"output": {"status": "shipped"}}}
    ]


async def test_go_away_resumes_on_a_new_connection_before_the_old_one_closes(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    server.script += [ScriptedTurn(says="Hello there."), ScriptedTurn(says="Still here.")]
    events = Events(session)
    await speak(session)
    await events.until(ResponseDone)
    await server.go_away(time_left="1s", close_after=1.0)
    seen = await events.until(SessionNotice)
    assert seen[-1].kind == "resumed" and seen[-1].detail["reason"] == "go_away"
    old, new = server.connections
    assert new.resumed_with == old.handles_sent[-1]
    await asyncio.wait_for(old.closed.wait(), WAIT)
    assert server.log.index(("setup", 1)) < server.log.index(("closed", 0))
    # The conversation carries on, on the new connection, with its past intact.
    await session.send_text("are you still there?")
    after = await events.until(ResponseDone)
    finals = [e.text for e in after if isinstance(e, Transcript) and e.final and e.role == "assistant"]
    assert finals == ["Still here."]
    assert new.history[:2] == [("user", "hello"), ("model", "Hello there.")]
    assert not any("clientContent" in m and not m["clientContent"]["turnComplete"] for m in new.received)


async def test_without_a_handle_go_away_reconnects_and_replays_the_history(
    tls: TlsPair,
) -> None:
    async with GeminiLiveServer(
        api_key=KEY, ssl_context=tls.server, speed=20, send_handles=False,
        script=[ScriptedTurn(says="Hi, bakery here.", heard="hi")],
    ) as server:
        session = GeminiLiveSession(make_setup(server, tls))
        await session.connect()
        events = Events(session)
        await speak(session)
        await events.until(ResponseDone)
        await server.go_away(time_left="0.2s")
        seen = await events.until(SessionNotice)
        assert seen[-1].kind == "reconnected"
        await session.send_text("anyone there?")
        await events.until(ResponseDone)  # the new connection has seen all we sent
        new = server.connections[1]
        assert new.setup is not None and new.setup["sessionResumption"] == {}
        replay = new.received[1]["clientContent"]
        assert replay == {
            "turns": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "Hi, bakery here."}]},
            ],
            "turnComplete": False,
        }
        await session.close()


async def test_history_given_at_setup_is_replayed_on_first_connect(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    history = [HistoryItem("user", "my name is Ada"), HistoryItem("assistant", "Hello Ada.")]
    s = GeminiLiveSession(make_setup(server, tls, history=history))
    await s.connect()
    await s.close()
    await asyncio.wait_for(server.connections[0].closed.wait(), WAIT)
    turns = server.connections[0].received[1]["clientContent"]["turns"]
    assert [t["role"] for t in turns] == ["user", "model"]


async def test_an_unexpected_drop_resumes_and_the_call_goes_on(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    events = Events(session)
    await speak(session)
    await events.until(ResponseDone)
    await server.drop()
    seen = await events.until(SessionNotice)
    assert seen[-1].kind == "resumed" and seen[-1].detail["reason"] == "dropped"
    await speak(session)
    await events.until(ResponseDone)
    assert server.connections[1].audio_bytes_in > 0


async def test_when_recovery_fails_a_fatal_error_ends_the_events(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    events = Events(session)
    server.refuse_key = True
    await server.drop()
    seen = await events.until(SessionError)
    assert seen[-1].fatal and seen[-1].code == "session_lost"
    with pytest.raises(StopAsyncIteration):
        await events.until(ResponseDone)


async def test_a_wrong_key_is_a_connect_error(server: GeminiLiveServer, tls: TlsPair) -> None:
    s = GeminiLiveSession(make_setup(server, tls, api_key="wrong"))
    with pytest.raises(ModelConnectError, match="1008"):
        await s.connect()


async def test_an_http_refusal_at_upgrade_is_a_connect_error() -> None:
    def refuse(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as srv:
        port = srv.sockets[0].getsockname()[1]
        setup = SessionSetup(model="m", instructions="", url=f"ws://127.0.0.1:{port}/", api_key=KEY)
        with pytest.raises(ModelConnectError, match="HTTP 401"):
            await GeminiLiveSession(setup).connect()


async def test_text_output_on_a_native_audio_model_is_a_connect_error(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    advanced = {"generationConfig": {"responseModalities": ["TEXT"]}}
    s = GeminiLiveSession(make_setup(server, tls, advanced=advanced))
    with pytest.raises(ModelConnectError, match="Cannot extract voices"):
        await s.connect()


async def test_no_setup_complete_in_time_is_a_connect_error() -> None:
    async def mute(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(mute, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        setup = SessionSetup(
            model="m", instructions="", url=f"ws://127.0.0.1:{port}/", api_key=KEY,
            auth="api-key", extra={"setup_timeout": 0.2},
        )
        with pytest.raises(ModelConnectError, match="setupComplete"):
            await GeminiLiveSession(setup).connect()


async def test_nothing_listening_is_a_connect_error() -> None:
    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
    setup = SessionSetup(model="m", instructions="", url=f"ws://127.0.0.1:{port}/", api_key=KEY)
    with pytest.raises(ModelConnectError):
        await GeminiLiveSession(setup).connect()


async def test_text_greeting_and_no_ops_send_what_gemini_understands(
    server: GeminiLiveServer, session: GeminiLiveSession
) -> None:
    events = Events(session)
    await session.request_response("Greet the caller: welcome to the bakery.")
    await events.until(ResponseDone)
    await session.send_text("note this", respond=False)
    await session.truncate("item", 100)
    await session.cancel_response()
    await session.send_text("what do you sell?")
    await events.until(ResponseDone)
    sent = [m["clientContent"] for m in server.connections[0].received if "clientContent" in m]
    assert sent == [
        {"turns": [{"role": "user", "parts": [{"text": "Greet the caller: welcome to the bakery."}]}], "turnComplete": True},
        {"turns": [{"role": "user", "parts": [{"text": "note this"}]}], "turnComplete": False},
        {"turns": [{"role": "user", "parts": [{"text": "what do you sell?"}]}], "turnComplete": True},
    ]
    assert len(server.connections[0].received) == 4  # setup + three turns: no-ops sent nothing


async def test_garbage_from_the_service_is_skipped_not_fatal() -> None:
    async def noisy(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send('{"setupComplete": {}}')
        await ws.recv()  # the test's cue
        for junk in ("not json", "[1, 2]", '{"somethingNew": {}}',
                     '{"serverContent": {"modelTurn": {"parts": "bad"}}}',
                     '{"toolCall": {"functionCalls": [{"id": 1}]}}',
                     '{"serverContent": {"outputTranscription": {"text": "ok"}}}',
                     '{"serverContent": {"turnComplete": true}}'):
            await ws.send(junk)
        await ws.wait_closed()

    async with serve(noisy, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        s = GeminiLiveSession(SessionSetup(
            model="m", instructions="", url=f"ws://127.0.0.1:{port}/", api_key=KEY,
        ))
        await s.connect()
        events = Events(s)
        await s.send_text("go")
        seen = await events.until(ResponseDone)
        assert [e.text for e in seen if isinstance(e, Transcript) and e.final] == ["ok"]
        await s.close()


async def test_close_ends_the_event_stream(session: GeminiLiveSession) -> None:
    events = Events(session)
    await session.close()
    with pytest.raises(StopAsyncIteration):
        await events.until(ResponseDone)
