"""Spend controls end to end: two server processes sharing one database, Twilio caller
simulators dialling either one, the OpenAI Realtime simulator behind both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentplatform.config import Settings
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from .processes import fleet_env, servers

BUSY_NUMBER, BUDGET_NUMBER, CAPPED_NUMBER = "+15555550201", "+15555550202", "+15555550203"
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]

AGENTS = {
    "busy-line": f"""\
name: busy-line
prompt: You answer the phone.
greeting: Hello, busy line here.
phone_numbers: ["{BUSY_NUMBER}"]
limits:
  max_concurrent_calls: 2
""",
    "small-budget": f"""\
name: small-budget
prompt: You answer the phone.
greeting: Hello, budget line here.
phone_numbers: ["{BUDGET_NUMBER}"]
limits:
  daily_budget_usd: 0.0001
""",
    "capped": f"""\
name: capped
prompt: You answer the phone.
greeting: Hello, capped line here.
phone_numbers: ["{CAPPED_NUMBER}"]
limits:
  max_calls_per_caller_per_day: 1
""",
}


def _fleet(tmp_path: Path, sim: OpenAIRealtimeServer) -> tuple[dict[str, str], str]:
    agents = tmp_path / "agents"
    agents.mkdir()
    for name, text in AGENTS.items():
        (agents / f"{name}.yaml").write_text(text)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    return fleet_env(agents_dir=agents, database_url=database_url, openai_url=sim.url), database_url


async def _records(database_url: str, carrier_call_id: str, *, closed: bool = True,
                   timeout: float = 10.0):
    """The record of a carrier call, once another process has written (and closed) it."""
    engine = make_engine(database_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                call = await asyncio.to_thread(queries.find_by_carrier_id, engine, carrier_call_id)
                if call is not None and (call.end_reason is not None or not closed):
                    return call
                await asyncio.sleep(0.05)
    finally:
        engine.dispose()


async def _scrape(base_url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_concurrency_limit_holds_across_two_processes_and_the_busy_caller_hears_why(
    tmp_path: Path,
) -> None:
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600) as sim:
        env, database_url = _fleet(tmp_path, sim)
        async with servers(2, env, tmp_path) as (a, b):
            first = TwilioCaller(a.base_url, to=BUSY_NUMBER, from_="+15550000001")
            second = TwilioCaller(b.base_url, to=BUSY_NUMBER, from_="+15550000002")
            assert await first.dial() and await second.dial()
            await asyncio.gather(first.wait_for_audio(10), second.wait_for_audio(10))

            third = TwilioCaller(a.base_url, to=BUSY_NUMBER, from_="+15550000003")
            fourth = TwilioCaller(b.base_url, to=BUSY_NUMBER, from_="+15550000004")
            assert not await third.dial(), "a third live call was connected"
            assert not await fourth.dial(), "the other process connected a third live call"
            for refused in (third, fourth):
                assert refused.answer is not None and refused.answer.hangup
                assert refused.answer.said == [DEFAULTS.busy_message]
            assert len(sim.sessions) == 2, "a model session opened for a refused call"

            await first.hang_up()
            await _records(database_url, first.call_sid)
            fifth = TwilioCaller(b.base_url, to=BUSY_NUMBER, from_="+15550000005")
            assert await fifth.dial(), "the slot of the call that ended was not given back"
            await fifth.wait_for_audio(10)
            await asyncio.gather(second.hang_up(), fifth.hang_up())

            metrics_a = await _scrape(a.base_url)
            metrics_b = await _scrape(b.base_url)
        refused_third = await _records(database_url, third.call_sid)
        refused_fourth = await _records(database_url, fourth.call_sid)

    for record in (refused_third, refused_fourth):
        assert record.end_reason == "busy"
        assert record.agent == "busy-line" and record.cost_usd == 0.0
        assert record.model_connected_at is None
    assert "max_concurrent_calls 2" in refused_third.end_detail
    busy = (("reason", "busy"),)
    assert metrics_a["agentplatform_calls_refused_total"][busy] == 1
    assert metrics_b["agentplatform_calls_refused_total"][busy] == 1
    assert metrics_a["agentplatform_calls_started_total"][()] == 1
    assert metrics_b["agentplatform_calls_started_total"][()] == 2
    # The caller's frames were timed through the bridge (20 ms each, some per call).
    inbound = (("direction", "inbound"),)
    assert metrics_b["agentplatform_bridge_frame_seconds_count"][inbound] > 0


async def test_daily_budget_refuses_new_calls_on_any_process_once_spent(tmp_path: Path) -> None:
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600) as sim:
        env, database_url = _fleet(tmp_path, sim)
        async with servers(2, env, tmp_path) as (a, b):
            first = TwilioCaller(a.base_url, to=BUDGET_NUMBER)
            assert await first.dial()
            await first.wait_for_audio(10)
            await first.wait_for_silence(300, 10)  # the greeting's response is done: priced
            await first.hang_up()
            spent = await _records(database_url, first.call_sid)
            assert spent.cost_usd >= 0.0001, spent.cost_usd
            metrics_a = await _scrape(a.base_url)
            cost = metrics_a["agentplatform_cost_usd_total"][(("model", "openai/gpt-realtime"),)]
            assert cost == spent.cost_usd

            second = TwilioCaller(b.base_url, to=BUDGET_NUMBER, from_="+15550000009")
            assert not await second.dial(), "a call was connected over the daily budget"
            assert second.answer is not None
            assert second.answer.said == [DEFAULTS.over_budget_message]
            # The other agents still take calls: the budget is this agent's.
            other = TwilioCaller(b.base_url, to=BUSY_NUMBER)
            assert await other.dial()
            await other.wait_for_audio(10)
            await other.hang_up()
        refused = await _records(database_url, second.call_sid)
    assert refused.end_reason == "over_budget"
    assert "daily budget" in refused.end_detail
    assert len(sim.sessions) == 2  # the first call and the other agent's, not the refused one


@pytest.mark.xfail(strict=False, reason=(
    "known bug, open: now and then the second server's call-record writer commits nothing "
    "before the server is stopped (its calls ran and ended; none of their records, nor "
    "the refusal, reached the database, and no write error was logged)"))
async def test_per_caller_daily_cap_counts_calls_made_through_either_process(
    tmp_path: Path,
) -> None:
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim:
        env, database_url = _fleet(tmp_path, sim)
        async with servers(2, env, tmp_path) as (a, b):
            first = TwilioCaller(a.base_url, to=CAPPED_NUMBER, from_="+15550001111")
            assert await first.dial()
            await first.hang_up()

            again = TwilioCaller(b.base_url, to=CAPPED_NUMBER, from_="+15550001111")
            assert not await again.dial(), "the same caller got a second call today"
            assert again.answer is not None
            assert again.answer.said == [DEFAULTS.caller_cap_message]

            someone_else = TwilioCaller(b.base_url, to=CAPPED_NUMBER, from_="+15550002222")
            assert await someone_else.dial()
            await someone_else.hang_up()
        refused = await _records(database_url, again.call_sid)
    assert refused.end_reason == "caller_limit"
    assert refused.from_number == "+15550001111"


async def test_a_stream_that_starts_once_draining_began_is_refused_before_any_model_session(
        new_platform) -> None:
    """The webhook admitted the call; by the time its stream starts the server is
    draining. The stream-start check refuses it: no model session, one record."""
    from agentplatform.testing.twilio_caller import parse_twiml

    from .conftest import AGENT_NUMBER

    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            caller = TwilioCaller(server.base_url, to=AGENT_NUMBER)
            form = {"CallSid": caller.call_sid, "AccountSid": caller.account_sid,
                    "From": caller.from_, "To": caller.to, "CallStatus": "ringing"}
            answer = parse_twiml((await caller._post_form("/twilio/voice", form)).text)
            assert answer.stream_url, answer.xml
            server.platform.admission.drain.begin()
            await caller._open_stream(answer)
            assert await caller.wait_closed(5) is not None
            await caller.hang_up()
            record = await _records(platform.database_url, caller.call_sid)
    assert record.end_reason == "draining"
    assert sim.sessions == [] and sim.connections == []
