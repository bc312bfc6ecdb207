"""SIGTERM to a real server process with live simulated calls: new calls are refused
with a spoken message, live calls finish or are ended at the drain timeout, and no
call record is left open or lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agentplatform.config import Settings
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from .processes import fleet_env, servers

NUMBER = "+15555550300"
AGENT = f"""\
name: front-desk
prompt: You answer the phone.
greeting: Thanks for calling, this greeting goes on for a good while.
phone_numbers: ["{NUMBER}"]
"""
DRAIN_SECONDS = 3.0


async def _draining(base_url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(base_url + "/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "agentplatform_draining":
            return family.samples[0].value
    raise AssertionError("no agentplatform_draining in /metrics")


async def test_sigterm_refuses_new_calls_lets_live_ones_finish_and_closes_every_record(
    tmp_path: Path,
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front-desk.yaml").write_text(AGENT)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=20_000) as sim:
        env = fleet_env(agents_dir=agents, database_url=database_url, openai_url=sim.url,
                        DRAIN_TIMEOUT_SECONDS=str(DRAIN_SECONDS))
        async with servers(1, env, tmp_path) as (server,):
            leaves = TwilioCaller(server.base_url, to=NUMBER, from_="+15550000001")
            stays = TwilioCaller(server.base_url, to=NUMBER, from_="+15550000002")
            assert await leaves.dial() and await stays.dial()
            await asyncio.gather(leaves.wait_for_audio(10), stays.wait_for_audio(10))

            server.terminate()
            async with asyncio.timeout(5):
                while await _draining(server.base_url) != 1.0:
                    await asyncio.sleep(0.05)

            # A call arriving now hears why, and gets no stream.
            late = TwilioCaller(server.base_url, to=NUMBER, from_="+15550000003")
            assert not await late.dial()
            assert late.answer is not None and late.answer.hangup
            assert late.answer.said == [Settings(_env_file=None).draining_message]  # type: ignore[call-arg]

            # One live call ends by itself during the drain; the process keeps serving.
            await leaves.hang_up()
            assert server.proc.poll() is None

            # The other outlives the drain: the server ends it, then exits.
            await stays.wait_closed(DRAIN_SECONDS + 10)
            code = await server.wait_exit(15)
            log = server.log()
        assert code in (0, -15), log  # uvicorn re-raises the SIGTERM it handled

    engine = make_engine(database_url)
    try:
        calls = {c.carrier_call_id: c for c in queries.list_calls(engine)}
    finally:
        engine.dispose()
    assert set(calls) == {leaves.call_sid, stays.call_sid, late.call_sid}, log
    assert calls[leaves.call_sid].end_reason == "caller_hung_up"
    assert calls[stays.call_sid].end_reason == "server_shutdown"
    assert calls[late.call_sid].end_reason == "draining"
    assert all(c.ended_at is not None for c in calls.values())
    # The call that stayed was given the whole drain before it was ended.
    assert calls[stays.call_sid].duration_seconds >= DRAIN_SECONDS
