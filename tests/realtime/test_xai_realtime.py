"""The xAI dialect: its own greeting event and session shape, over the same adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentplatform.audio.codecs import pcm16_to_ulaw
from agentplatform.audio.frames import silence, tone
from agentplatform.errors import ModelConnectError
from agentplatform.realtime.base import (
    AudioDelta,
    ResponseDone,
    SessionSetup,
    SpeechStarted,
    ToolSpec,
    Transcript,
)
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession
from agentplatform.realtime.xai_realtime import XaiRealtimeSession, build_xai_session
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer

KEY = "xai-sim"


@pytest.fixture
async def server() -> AsyncIterator[OpenAIRealtimeServer]:
    async with OpenAIRealtimeServer(api_key=KEY, flavour="xai",
                                    caller_texts=["hello grok"]) as srv:
        yield srv


def make_setup(url: str = "wss://api.x.ai/v1/realtime", **kw: Any) -> SessionSetup:
    base: dict[str, Any] = {"model": "grok-voice-latest", "instructions": "Be brief.",
                            "voice": "eve", "url": url, "api_key": KEY,
                            "audio_format": "g711_ulaw"}
    base.update(kw)
    return SessionSetup(**base)


def test_xai_session_has_top_level_voice_and_turn_detection_and_no_type() -> None:
    session = build_xai_session(make_setup(
        turn_detection={"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 400,
                        "prefix_padding_ms": 100, "eagerness": "auto"},
        tools=[ToolSpec("lookup", "Find.", {"type": "object"})], temperature=0.8))
    assert "type" not in session and "temperature" not in session
    assert session["voice"] == "eve"
    assert session["instructions"] == "Be brief."
    assert session["turn_detection"] == {"type": "server_vad", "threshold": 0.7,
                                         "prefix_padding_ms": 100, "silence_duration_ms": 400}
    assert session["audio"] == {"input": {"format": {"type": "audio/pcmu"}},
                                "output": {"format": {"type": "audio/pcmu"}}}
    assert session["tools"][0] == {"type": "function", "name": "lookup",
                                   "description": "Find.", "parameters": {"type": "object"}}


def test_xai_semantic_vad_falls_back_to_server_vad_and_advanced_merges_last() -> None:
    session = build_xai_session(make_setup(
        turn_detection={"type": "semantic_vad", "eagerness": "high"},
        advanced={"xai_realtime": {"voice": "rex"}}))
    assert session["turn_detection"] == {"type": "server_vad"}
    assert session["voice"] == "rex"


def test_xai_capabilities_pass_ulaw_through_and_have_no_text_modality() -> None:
    caps = XaiRealtimeSession(make_setup()).capabilities
    assert (caps.input_rate, caps.output_rate, caps.g711, caps.text_modality) == \
        (8000, 8000, True, False)


async def test_xai_connects_on_conversation_created_and_answers_a_caller(
        server: OpenAIRealtimeServer) -> None:
    session = XaiRealtimeSession(make_setup(server.url))
    await session.connect()
    try:
        (sent,) = server.sessions
        assert sent["voice"] == "eve" and "type" not in sent
        assert server.connections[0].sent[0]["type"] == "conversation.created"
        voiced, quiet = pcm16_to_ulaw(tone(300, 20, 8000, 0.3)), pcm16_to_ulaw(silence(20, 8000))
        for frame in [voiced] * 20 + [quiet] * 30:
            await session.send_audio(frame)
        seen: list[Any] = []
        async for event in session.events():
            seen.append(event)
            if isinstance(event, ResponseDone):
                break
        assert any(isinstance(e, SpeechStarted) for e in seen)
        assert sum(len(e.audio) for e in seen if isinstance(e, AudioDelta)) == \
            server.reply_ms * 8
        finals = [(e.role, e.text) for e in seen if isinstance(e, Transcript) and e.final]
        assert finals[0] == ("user", "hello grok") and finals[-1][0] == "assistant"
    finally:
        await session.close()


async def test_the_openai_dialect_cannot_open_an_xai_session(
        server: OpenAIRealtimeServer) -> None:
    session = OpenAIRealtimeSession(make_setup(server.url, voice="marin"), connect_timeout=0.5)
    with pytest.raises(ModelConnectError):
        await session.connect()
