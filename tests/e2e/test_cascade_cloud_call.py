"""Cascade calls whose engines are cloud services, each played by a simulator.

- OpenAI agent, voice streaming off: OpenAI transcription and speech (the audio
  simulator, which really transcribes and really speaks), the realtime model in text
  modality (the realtime simulator).
- An agent whose text step is an OpenAI-compatible chat-completions endpoint (the
  chat simulator), with a tool call that ends the call, on the local speech engines.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentplatform.storage.database import make_engine
from agentplatform.testing.chat_completions_server import ChatCompletionsServer, ChatToolRule
from agentplatform.testing.openai_audio_server import OpenAIAudioServer
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, Reply
from agentplatform.testing.speech_fixtures import spoken
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import closed_call_record

NUMBER = "+15555550100"
OPENAI_CASCADE = """\
name: desk
model: openai/gpt-realtime
voice_streaming: false
cascade:
  stt: {service: openai, model: gpt-4o-mini-transcribe, language: en}
  tts: {service: openai, voice: coral, model: gpt-4o-mini-tts}
prompt: You answer the phone for a clinic.
greeting: Maple Street Dental, how can I help?
phone_numbers: ["+15555550100"]
turn_detection: {silence_duration_ms: 400}
"""
CHAT_CASCADE = """\
name: desk
model: local/offline
voice_streaming: false
cascade:
  llm: {url: "%s", model: llama3.2, api_key_env: TOOL_SECRET_DESK_LLM_KEY}
prompt: You answer the phone for a clinic.
greeting: Maple Street Dental, how can I help?
phone_numbers: ["+15555550100"]
turn_detection: {silence_duration_ms: 400}
tools:
  - type: end_call
"""


def _settings(tmp_path: Path, agent_yaml: str, **overrides):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "desk.yaml").write_text(agent_yaml)
    return simulated_settings(agents_dir=agents,
                              database_url=f"sqlite:///{tmp_path / 'calls.db'}", **overrides)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def test_openai_agent_with_voice_streaming_off_hears_thinks_and_speaks_via_cloud_services(
        tmp_path):
    answer = "We are open from nine to five on weekdays."
    async with OpenAIAudioServer() as audio, OpenAIRealtimeServer(
            script=[Reply(text="Maple Street Dental, how can I help?"), Reply(text=answer)]) as model:
        settings = _settings(tmp_path, OPENAI_CASCADE, openai_url=model.url,
                             openai_audio_url=audio.url)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(20)
                await caller.wait_for_silence(400, 20)
                before = caller.played_ms
                await caller.say(spoken("What are your hours?"))
                await caller.wait_for_audio(20)
                await caller.wait_for_silence(400, 30)
                assert caller.played_ms - before > 1500
                assert not caller.protocol_errors
            detail = await closed_call_record(server, make_engine(settings.database_url))

    # The realtime model was used as a text model: text out, no server-side turn taking.
    session = model.sessions[0]
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["input"].get("turn_detection") is None
    # Transcription and speech went to the OpenAI audio endpoints as OpenAI documents them.
    transcriptions = [r for r in audio.requests if r.path.endswith("/transcriptions")]
    assert transcriptions and transcriptions[0].fields["model"] == "gpt-4o-mini-transcribe"
    assert transcriptions[0].authorization == "Bearer test-key"
    speech = [r.fields for r in audio.requests if r.path.endswith("/speech")]
    assert {(s["model"], s["voice"], s["response_format"]) for s in speech} == {
        ("gpt-4o-mini-tts", "coral", "pcm")}
    assert any(s["input"] == answer for s in speech)
    turns = [(t.role, t.text) for t in detail.turns]
    assert turns[0] == ("assistant", "Maple Street Dental, how can I help?")
    assert turns[1][0] == "user" and "hours" in _words(turns[1][1]), turns
    assert turns[2] == ("assistant", answer)
    assert detail.end_reason == "caller_hung_up"


async def test_a_chat_completions_endpoint_answers_and_its_tool_call_ends_the_call(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TOOL_SECRET_DESK_LLM_KEY", "chat-key")
    async with ChatCompletionsServer(
            api_key="chat-key",
            script=["Maple Street Dental, how can I help?", "We are open nine to five.",
                    "Goodbye, and thanks for calling."],
            tool_rules=[ChatToolRule(contains="bye", name="end_call")]) as llm:
        settings = _settings(tmp_path, CHAT_CASCADE % llm.base_url)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(20)
                await caller.wait_for_silence(400, 20)
                await caller.say(spoken("What are your hours?"))
                await caller.wait_for_audio(20)
                await caller.wait_for_silence(400, 30)
                await caller.say(spoken("Thanks, goodbye."))
                await caller.wait_closed(30)
            detail = await closed_call_record(server, make_engine(settings.database_url))

    assert detail.end_reason == "agent_ended"
    assert [t.name for t in detail.tools] == ["end_call"]
    said = [t.text for t in detail.turns if t.role == "assistant"]
    assert said[:2] == ["Maple Street Dental, how can I help?", "We are open nine to five."]
    assert said[-1] == "Goodbye, and thanks for calling."
    posts = [body for method, path, _, body in llm.requests if method == "POST"]
    assert posts and all(body["stream"] is True for body in posts)
    assert posts[0]["messages"][0] == {"role": "system",
                                       "content": "You answer the phone for a clinic."}
    assert {t["function"]["name"] for t in posts[0]["tools"]} == {"end_call"}
    # The tool's result went back to the endpoint before the goodbye was written.
    assert any(m.get("role") == "tool" for m in posts[-1]["messages"])
