"""A Twilio call bridged to Amazon Nova Sonic (simulated Bedrock over TLS + HTTP/2)."""

from __future__ import annotations

import asyncio

from agentplatform.audio.frames import tone
from agentplatform.storage.database import make_engine
from agentplatform.testing.nova_sonic_server import NovaSonicServer, ScriptedTurn
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import closed_call_record

NUMBER = "+15555550123"
SPEECH = tone(440, 1200, 8000, amplitude=0.4)
AGENT = """\
name: nova-desk
model: amazon/nova-2-sonic
voice: matthew
prompt: You answer calls for a hotel.
greeting: Welcome to the hotel, how can I help?
phone_numbers: ["+15555550123"]
tools:
  - type: end_call
"""


def _platform(tmp_path, sim: NovaSonicServer):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "nova-desk.yaml").write_text(AGENT)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sim.tls.cert_pem)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    settings = simulated_settings(
        agents_dir=agents, database_url=database_url, bedrock_endpoint_url=sim.url,
        aws_access_key_id=sim.access_key, aws_secret_access_key=sim.secret_key,
        aws_region=sim.region, provider_ca_file=str(ca),
    )
    return settings, make_engine(database_url)




async def test_nova_call_greets_answers_is_interrupted_and_ends_by_tool(tmp_path):
    script = [ScriptedTurn("Welcome to the hotel, how can I help? " * 3, user="(greeting)"),
              ScriptedTurn("Sure, goodbye!", user="that is all, bye", tool="end_call")]
    async with NovaSonicServer(script=script, speed=1.0) as sim:
        settings, engine = _platform(tmp_path, sim)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(10)
                await asyncio.sleep(0.8)
                await caller.say(SPEECH)  # talk over the long greeting
                assert caller.clears, "barge-in did not clear the caller's playback"
                await caller.wait_closed(20)
            detail = await closed_call_record(server, engine)
    assert detail.model == "amazon/nova-2-sonic"
    assert detail.end_reason == "agent_ended"
    assert [t.name for t in detail.tools] == ["end_call"]
    assert any(t.role == "user" and "bye" in t.text for t in detail.turns)
    assert any(e.kind == "barge_in" for e in detail.events)
    session = sim.sessions[0]
    assert ("SYSTEM", "You answer calls for a hotel.") in session.text_blocks()


async def test_nova_connection_limit_is_crossed_mid_call_without_dropping_the_caller(tmp_path):
    async with NovaSonicServer(speed=1.0, max_connection_seconds=2.5) as sim:
        settings, engine = _platform(tmp_path, sim)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(10)
                await caller.wait_for_silence(300, 10)
                await asyncio.sleep(2.5)  # past the connection limit
                await caller.say(SPEECH)
                await caller.wait_for_audio(10)
                assert caller.close_code is None
            detail = await closed_call_record(server, engine)
    assert len(sim.sessions) >= 2
    assert any(e.kind == "recycled" for e in detail.events)
    assert detail.end_reason == "caller_hung_up"


async def test_nova_refusing_the_key_ends_the_call_with_provider_error(tmp_path):
    async with NovaSonicServer(refuse_key=True) as sim:
        settings, engine = _platform(tmp_path, sim)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_closed(10)
            detail = await closed_call_record(server, engine)
    assert detail.end_reason == "provider_error"
