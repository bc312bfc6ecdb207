"""The Nova Sonic adapter against the simulator over real TLS + HTTP/2 on loopback."""

import asyncio
import json
import struct

import pytest

from agentplatform.errors import ModelConnectError
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    HistoryItem,
    ResponseDone,
    SessionError,
    SessionNotice,
    SessionSetup,
    SpeechStarted,
    ToolCall,
    ToolSpec,
    Transcript,
)
from agentplatform.realtime.nova_sonic import NovaSonicSession, replay_history
from agentplatform.testing.nova_sonic_server import NovaSonicServer, ScriptedTurn

GUARD = 10  # seconds; a hang fails the test instead of stalling the suite


def loud(ms: int) -> bytes:
    n = 16 * ms
    return struct.pack(f"<{n}h", *([6000, -6000] * (n // 2)))


def quiet(ms: int) -> bytes:
    return b"\x00\x00" * 16 * ms


async def utter(session: NovaSonicSession, speech_ms: int = 320, silence_ms: int = 400) -> None:
    """Caller audio the simulator's VAD hears as one utterance, in 40 ms frames."""
    for _ in range(speech_ms // 40):
        await session.send_audio(loud(40))
    for _ in range(silence_ms // 40):
        await session.send_audio(quiet(40))


async def collect_until(session: NovaSonicSession, kind: type) -> list:
    """Events up to and including the first of ``kind``."""
    seen = []
    async with asyncio.timeout(GUARD):
        async for event in session.events():
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"events ended before {kind.__name__}: {seen}")


def setup_for(server: NovaSonicServer, **overrides) -> SessionSetup:
    values = dict(model="amazon.nova-2-sonic-v1:0", instructions="You are a helpful agent.",
                  voice="tiffany", url=server.url, api_key=server.access_key, auth="sigv4",
                  extra=server.client_extra())
    values.update(overrides)
    return SessionSetup(**values)


@pytest.fixture
async def server():
    async with NovaSonicServer(script=[
        ScriptedTurn("Hello, how can I help?", user="hi there"),
        ScriptedTurn("Goodbye now.", user="bye"),
    ]) as srv:
        yield srv


@pytest.fixture
async def session(server):
    s = NovaSonicSession(setup_for(server))
    await s.connect()
    yield s
    await s.close()


def test_capabilities_describe_nova():
    caps = NovaSonicSession.capabilities
    assert (caps.input_rate, caps.output_rate, caps.truncates, caps.text_modality) == (
        16000, 24000, False, False)


async def test_session_setup_sends_voice_system_prompt_tools_and_advanced(server):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    s = NovaSonicSession(setup_for(
        server, tools=[ToolSpec("weather", "Weather by city", schema)],
        turn_detection={"type": "semantic_vad", "eagerness": "low"},
        max_output_tokens=555,
        advanced={"sessionStart": {"inferenceConfiguration": {"topP": 0.5}},
                  "promptStart": {"textOutputConfiguration": {"mediaType": "text/plain2"}}},
    ))
    await s.connect()
    await s.close()
    (record,) = server.sessions
    assert record.model_id == "amazon.nova-2-sonic-v1:0"
    (start,) = record.bodies("sessionStart")
    assert start["inferenceConfiguration"] == {"maxTokens": 555, "topP": 0.5, "temperature": 1.0}
    assert start["turnDetectionConfiguration"] == {"endpointingSensitivity": "LOW"}
    (prompt,) = record.bodies("promptStart")
    assert prompt["audioOutputConfiguration"]["voiceId"] == "tiffany"
    assert prompt["textOutputConfiguration"] == {"mediaType": "text/plain2"}
    tool = prompt["toolConfiguration"]["tools"][0]["toolSpec"]
    assert json.loads(tool["inputSchema"]["json"]) == schema
    assert record.text_blocks() == [("SYSTEM", "You are a helpful agent.")]
    audio_start = [b for b in record.bodies("contentStart") if b["type"] == "AUDIO"]
    assert audio_start[0]["audioInputConfiguration"]["sampleRateHertz"] == 16000
    assert record.names()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert record.ended_cleanly


async def test_v1_model_gets_flat_endpointing_sensitivity(server):
    s = NovaSonicSession(setup_for(server, model="amazon.nova-sonic-v1:0",
                                   turn_detection={"type": "server_vad",
                                                   "silence_duration_ms": 200}))
    await s.connect()
    await s.close()
    (start,) = server.sessions[0].bodies("sessionStart")
    assert start["endpointingSensitivity"] == "HIGH"
    assert server.sessions[0].model_id == "amazon.nova-sonic-v1:0"


async def test_history_in_setup_is_replayed_before_audio(server):
    s = NovaSonicSession(setup_for(server, history=[
        HistoryItem("assistant", "Welcome!"), HistoryItem("user", "I need help"),
        HistoryItem("assistant", "Sure."), HistoryItem("assistant", "With what?"),
    ]))
    await s.connect()
    await s.close()
    assert server.sessions[0].text_blocks() == [
        ("SYSTEM", "You are a helpful agent."), ("USER", "I need help"),
        ("ASSISTANT", "Sure. With what?")]
    assert not server.sessions[0].errors


async def test_a_turn_yields_transcripts_audio_and_usage(server, session):
    await utter(session)
    events = await collect_until(session, ResponseDone)

    transcripts = [(e.role, e.text) for e in events if isinstance(e, Transcript)]
    assert transcripts == [("user", "hi there"), ("assistant", "Hello, how can I help?")]
    assert all(e.final for e in events if isinstance(e, Transcript))
    deltas = [e for e in events if isinstance(e, AudioDelta)]
    expected_ms = len("Hello, how can I help?") * server.reply_ms_per_char
    assert sum(len(d.audio) for d in deltas) == pytest.approx(expected_ms * 48, abs=40 * 48)
    assert len({d.item_id for d in deltas}) == 1
    done = [e for e in events if isinstance(e, AudioDone)]
    assert [d.item_id for d in done] == [deltas[0].item_id]
    response = events[-1]
    assert response.status == "completed"
    assert response.usage.output_audio > 0 and response.usage.input_audio > 0
    assert response.usage.output_text > 0
    assert server.sessions[0].audio_in_bytes == (320 + 400) * 32


async def test_caller_speech_during_answer_is_a_barge_in():
    script = [ScriptedTurn("word " * 60, user="tell me a story"), ScriptedTurn("Yes?")]
    async with NovaSonicServer(script=script, speed=4.0) as server:
        s = NovaSonicSession(setup_for(server))
        await s.connect()
        await utter(s)
        await collect_until(s, AudioDelta)
        for _ in range(4):
            await s.send_audio(loud(40))
        events = await collect_until(s, ResponseDone)
        kinds = [type(e) for e in events]
        assert SpeechStarted in kinds
        assert kinds.index(SpeechStarted) < kinds.index(AudioDone)
        assert kinds.count(AudioDone) == 1
        assert events[-1].status == "interrupted"
        heard = [e.text for e in events if isinstance(e, Transcript) and e.role == "assistant"]
        assert heard and len(heard[0]) < len("word " * 60)
        # The interrupting speech ends and is answered as the next turn.
        for _ in range(10):
            await s.send_audio(quiet(40))
        events = await collect_until(s, ResponseDone)
        assert ("assistant", "Yes?") in [(e.role, e.text) for e in events
                                         if isinstance(e, Transcript)]
        await s.close()
        assert server.sessions[0].interruptions == 1


async def test_tool_call_round_trip_uses_the_tool_use_id():
    script = [ScriptedTurn("It is {result} in Oslo.", user="weather in oslo?", tool="weather",
                           tool_args={"city": "Oslo"})]
    async with NovaSonicServer(script=script) as server:
        s = NovaSonicSession(setup_for(server, tools=[ToolSpec("weather", "", {"type": "object"})]))
        await s.connect()
        await utter(s)
        events = await collect_until(s, ToolCall)
        call = events[-1]
        assert call.name == "weather"
        assert json.loads(call.arguments) == {"city": "Oslo"}
        await s.send_tool_result(call.call_id, call.name, '"sunny"')
        events = await collect_until(s, ResponseDone)
        said = [e.text for e in events if isinstance(e, Transcript) and e.role == "assistant"]
        assert said == ['It is "sunny" in Oslo.']
        await s.close()
        assert server.sessions[0].tool_results == {call.call_id: '"sunny"'}


async def test_text_turn_is_an_interactive_user_block_that_gets_an_answer(server, session):
    await session.send_text("What are your hours?")
    events = await collect_until(session, ResponseDone)
    assert ("assistant", "Hello, how can I help?") in [
        (e.role, e.text) for e in events if isinstance(e, Transcript)]
    user_blocks = [b for b in server.sessions[0].bodies("contentStart")
                   if b.get("role") == "USER" and b["type"] == "TEXT"]
    assert user_blocks[0]["interactive"] is True
    assert ("USER", "What are your hours?") in server.sessions[0].text_blocks()


async def test_request_response_sends_the_instruction_as_a_user_turn(server, session):
    await session.request_response("Greet the caller warmly.")
    await collect_until(session, ResponseDone)
    assert ("USER", "Greet the caller warmly.") in server.sessions[0].text_blocks()


async def test_connection_limit_recycles_with_history_and_the_call_continues(server, session):
    await utter(session)
    await collect_until(session, ResponseDone)

    server.expire()
    events = await collect_until(session, SessionNotice)
    assert any(isinstance(e, SessionError) and e.code == "modelTimeoutException" and not e.fatal
               for e in events)
    assert events[-1].kind == "recycled"

    await utter(session)
    events = await collect_until(session, ResponseDone)
    assert ("assistant", "Goodbye now.") in [(e.role, e.text) for e in events
                                             if isinstance(e, Transcript)]
    assert len(server.sessions) == 2
    assert server.sessions[1].text_blocks() == [
        ("SYSTEM", "You are a helpful agent."), ("USER", "hi there"),
        ("ASSISTANT", "Hello, how can I help?")]
    assert server.sessions[1].turns_answered == 1


async def test_connection_age_recycles_proactively_and_closes_the_old_stream_cleanly(server):
    s = NovaSonicSession(setup_for(server, advanced={"recycle_after_seconds": 0.2}))
    await s.connect()
    events = await collect_until(s, SessionNotice)
    assert events[-1].kind == "recycled"
    assert events[-1].detail["reason"] == "connection age"
    assert not any(isinstance(e, SessionError) for e in events)
    await s.close()
    assert len(server.sessions) >= 2
    assert server.sessions[0].ended_cleanly


async def test_server_side_time_limit_triggers_recycling():
    async with NovaSonicServer(max_connection_seconds=0.3) as server:
        s = NovaSonicSession(setup_for(server))
        await s.connect()
        events = await collect_until(s, SessionNotice)
        assert events[-1].kind == "recycled"
        await s.close()
        assert "modelTimeoutException" in server.sessions[0].errors[0]


async def test_failed_recycle_is_a_fatal_session_error(server, session):
    server.refuse_key = True
    server.expire()
    events = await collect_until(session, SessionError)
    while not events[-1].fatal:
        events += await collect_until(session, SessionError)
    assert events[-1].code == "recycle_failed"


async def test_wrong_access_key_is_a_connect_error(server):
    s = NovaSonicSession(setup_for(server, api_key="AKIDSOMEONEELSE"))
    with pytest.raises(ModelConnectError, match="403.*UnrecognizedClientException"):
        await s.connect()
    assert server.refused == ["UnrecognizedClientException"]


async def test_wrong_secret_fails_the_signature_check(server):
    extra = server.client_extra(secret_key="not-the-secret")
    s = NovaSonicSession(setup_for(server, extra=extra))
    with pytest.raises(ModelConnectError, match="InvalidSignatureException"):
        await s.connect()


async def test_missing_secret_is_a_connect_error_before_any_socket(server):
    s = NovaSonicSession(setup_for(server, extra={"region": "us-east-1"}))
    with pytest.raises(ModelConnectError, match="secret"):
        await s.connect()
    assert server.sessions == [] and server.refused == []


def test_replay_history_merges_neighbours_and_starts_with_user():
    turns = replay_history([HistoryItem("assistant", "hi"), HistoryItem("user", "a"),
                            HistoryItem("user", "b"), HistoryItem("assistant", "c")], 10)
    assert [(t.role, t.text) for t in turns] == [("user", "a b"), ("assistant", "c")]
    last = replay_history([HistoryItem("user", "1"), HistoryItem("assistant", "2"),
                           HistoryItem("user", "3")], 2)
    assert [t.text for t in last] == ["3"]


async def test_system_prompt_and_history_are_sent_as_context_and_a_typed_turn_asks_for_an_answer(
        server):
    s = NovaSonicSession(setup_for(server, history=[HistoryItem("user", "hi"),
                                                    HistoryItem("assistant", "hello")]))
    await s.connect()
    await s.send_text("What time is it?")
    await collect_until(s, ResponseDone)
    await s.close()
    starts = [(b["role"], b["interactive"]) for b in server.sessions[0].bodies("contentStart")
              if b["type"] == "TEXT"]
    assert starts == [("SYSTEM", False), ("USER", False), ("ASSISTANT", False), ("USER", True)]
