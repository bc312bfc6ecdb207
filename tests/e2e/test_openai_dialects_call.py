"""The same phone call served by Azure OpenAI and by xAI (OpenAI Realtime dialects)."""

from __future__ import annotations

import pytest

from agentplatform.audio.frames import tone
from agentplatform.storage.database import make_engine
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import closed_call_record

NUMBER = "+15555550177"
SPEECH = tone(440, 1200, 8000, amplitude=0.4)


def _agent(model: str, voice: str) -> str:
    return (f"name: dialect\nmodel: {model}\nvoice: {voice}\nprompt: Be brief.\n"
            f"greeting: Hello there.\nphone_numbers: [\"{NUMBER}\"]\n")


@pytest.mark.parametrize(("model", "voice", "flavour", "settings_for"), [
    ("azure/gpt-realtime", "marin", "openai",
     lambda sim: {"azure_openai_endpoint": sim.base_url, "azure_openai_api_key": sim.api_key}),
    ("xai/grok-voice", "eve", "xai",
     lambda sim: {"xai_realtime_url": sim.url, "xai_api_key": sim.api_key}),
])
async def test_dialect_serves_a_greeting_and_a_turn(tmp_path, model, voice, flavour, settings_for):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "dialect.yaml").write_text(_agent(model, voice))
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with OpenAIRealtimeServer(flavour=flavour, pace=1.0, reply_ms=500,
                                    caller_texts=["what are your hours?"]) as sim:
        settings = simulated_settings(agents_dir=agents, database_url=database_url,
                                      openai_api_key="", **settings_for(sim))
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
            detail = await closed_call_record(server, make_engine(database_url))
    assert detail.model == model
    assert [t.text for t in detail.turns if t.role == "user"] == ["what are your hours?"]
    voices = [s.get("voice") or s.get("audio", {}).get("output", {}).get("voice")
              for s in sim.sessions]
    assert voices[0] == voice


async def test_fallback_model_serves_when_the_first_cannot_connect(tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "dialect.yaml").write_text(
        "name: dialect\nmodel: openai/gpt-realtime\nfallback_models: [xai/grok-voice]\n"
        f"prompt: Be brief.\ngreeting: Hello there.\nphone_numbers: [\"{NUMBER}\"]\n")
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with OpenAIRealtimeServer(pace=1.0) as broken, \
            OpenAIRealtimeServer(flavour="xai", pace=1.0, reply_ms=400) as xai:
        broken.refuse_key = True
        settings = simulated_settings(agents_dir=agents, database_url=database_url,
                                      openai_url=broken.url, xai_realtime_url=xai.url,
                                      xai_api_key=xai.api_key)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(5)
            detail = await closed_call_record(server, make_engine(database_url))
    assert detail.requested_model == "openai/gpt-realtime"
    assert detail.model == "xai/grok-voice"
    unavailable = [e for e in detail.events if e.kind == "model_unavailable"]
    assert [e.detail["model"] for e in unavailable] == ["openai/gpt-realtime"]
