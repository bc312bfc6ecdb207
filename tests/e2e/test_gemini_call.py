"""A Twilio call bridged to Google Gemini Live (simulated, over TLS)."""

from __future__ import annotations

import asyncio

from agentplatform.audio.frames import tone
from agentplatform.storage.database import make_engine
from agentplatform.testing.gemini_live_server import GeminiLiveServer, ScriptedTurn
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.tls import make_tls_pair
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import closed_call_record

NUMBER = "+15555550144"
SPEECH = tone(440, 1200, 8000, amplitude=0.4)
AGENT = """\
name: gemini-desk
model: google/gemini-2.5-flash-native-audio
voice: Kore
prompt: You answer calls for a bakery.
greeting: Hello, bakery here.
phone_numbers: ["+15555550144"]
tools:
  - type: end_call
"""


def _settings(tmp_path, sim: GeminiLiveServer, tls):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "gemini-desk.yaml").write_text(AGENT)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls.cert_pem)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    settings = simulated_settings(agents_dir=agents, database_url=database_url,
                                  gemini_live_url=sim.url, gemini_api_key=sim.api_key,
                                  provider_ca_file=str(ca))
    return settings, make_engine(database_url)




async def test_gemini_call_greets_is_interrupted_resumes_after_go_away_and_ends_by_tool(tmp_path):
    tls = make_tls_pair()
    script = [ScriptedTurn("Hello, bakery here. We have fresh bread today and more. " * 2),
              ScriptedTurn("Our hours are eight to six.", heard="when are you open"),
              ScriptedTurn("Goodbye!", heard="thanks, bye", tool="end_call")]
    async with GeminiLiveServer(script=script, ssl_context=tls.server, speed=1.0) as sim:
        settings, engine = _settings(tmp_path, sim, tls)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(10)
                await asyncio.sleep(0.8)
                await caller.say(SPEECH)  # barge in on the greeting
                assert caller.clears
                await caller.wait_for_audio(10)
                await caller.wait_for_silence(300, 10)
                await sim.go_away(time_left="1s", close_after=0.5)
                await asyncio.sleep(1.0)
                await caller.say(SPEECH)
                await caller.wait_closed(20)
            detail = await closed_call_record(server, engine)
    assert detail.model == "google/gemini-2.5-flash-native-audio"
    assert detail.end_reason == "agent_ended"
    assert len(sim.connections) >= 2
    kinds = {e.kind for e in detail.events}
    assert "barge_in" in kinds and kinds & {"resumed", "reconnected"}
    assert [t.text for t in detail.turns if t.role == "user"][-1] == "thanks, bye"


async def test_gemini_refusing_the_key_ends_the_call_with_provider_error(tmp_path):
    tls = make_tls_pair()
    async with GeminiLiveServer(ssl_context=tls.server) as sim:
        sim.refuse_key = True
        settings, engine = _settings(tmp_path, sim, tls)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_closed(10)
            detail = await closed_call_record(server, engine)
    assert detail.end_reason == "provider_error"
