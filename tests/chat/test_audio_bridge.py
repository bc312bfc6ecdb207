"""Chat with a model that only speaks: the text goes as synthesized speech, the spoken
answer comes back as its transcript (Gemini Live simulator over TLS)."""

from __future__ import annotations

import httpx

from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import load_catalog
from agentplatform.chat.audio_bridge import speaks_only
from agentplatform.chat.session import ChatDelta, ChatDone, ChatToolCall, ChatToolResult, open_chat
from agentplatform.testing.gemini_live_server import GeminiLiveServer, ScriptedTurn
from agentplatform.testing.stack import simulated_settings
from agentplatform.testing.tls import make_tls_pair

AGENT = AgentSpec.model_validate({
    "name": "bakery", "model": "google/gemini-2.5-flash-native-audio", "voice": "Kore",
    "prompt": "You answer for a bakery.", "greeting": "Hello, bakery here.",
    "tools": [{"type": "end_call"}],
})


def test_only_speaking_models_chat_through_audio():
    catalog = load_catalog()
    assert speaks_only(AGENT, catalog)
    assert not speaks_only(AGENT.model_copy(update={"model": "openai/gpt-realtime"}), catalog)
    assert not speaks_only(AGENT.model_copy(update={"model": "local/offline"}), catalog)


async def test_a_text_message_is_spoken_to_the_model_and_its_answer_transcribed(tmp_path):
    tls = make_tls_pair()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls.cert_pem)
    script = [ScriptedTurn("We open at eight.", heard="when do you open"),
              ScriptedTurn("Goodbye!", heard="bye", tool="end_call")]
    async with GeminiLiveServer(script=script, ssl_context=tls.server, speed=4.0) as sim:
        settings = simulated_settings(agents_dir=tmp_path, database_url="sqlite://",
                                      gemini_live_url=sim.url, gemini_api_key=sim.api_key,
                                      provider_ca_file=str(ca))
        async with httpx.AsyncClient() as http:
            chat = await open_chat(AGENT, catalog=load_catalog(), settings=settings, http=http,
                                   conversation_id="t1")
            try:
                assert "through audio" in chat.slow_note and chat.greeting == "Hello, bakery here."
                first = [e async for e in chat.ask("When do you open?")]
                second = [e async for e in chat.ask("Bye.")]
            finally:
                await chat.close()
        connection = sim.connections[0]
    assert "".join(e.text for e in first if isinstance(e, ChatDelta)) == "We open at eight."
    assert isinstance(first[-1], ChatDone)
    assert any(isinstance(e, ChatToolCall) and e.name == "end_call" for e in second)
    result = next(e for e in second if isinstance(e, ChatToolResult))
    assert "hang up" in result.note
    # The messages reached the model as speech, never as text; the tool result went back.
    assert connection.audio_bytes_in > 16000 * 2  # over a second of 16 kHz speech
    assert not any("clientContent" in m or "text" in m.get("realtimeInput", {})
                   for m in connection.received)
    assert connection.tool_responses
