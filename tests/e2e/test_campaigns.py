"""Campaigns end to end over the Twilio REST simulator, with the OpenAI Realtime
simulator as the model: two server processes sharing PostgreSQL and Redis (the arq
queue), and one process on its own database queue across a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine

from agentplatform.campaigns.arq_queue import QUEUE_NAME
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID,
    TwilioRestServer,
)
from tests.services import REDIS_URL

from .campaign_callees import CampaignCallees, script
from .processes import ServerProcess, fleet_env

AGENT_NUMBER = "+15555550100"
AGENT_YAML = f"""\
name: reminders
model: openai/gpt-realtime
prompt: You call patients about their appointment. This patient is {{{{params.name}}}}.
greeting: Hello {{{{params.name}}}}, this is the clinic calling about your appointment.
phone_numbers: ["{AGENT_NUMBER}"]
limits:
  max_concurrent_calls: 8
"""
NUMBERS = [f"+1415555{100 + i:04d}" for i in range(20)]
BUSY_FIRST = NUMBERS[3:5]  # busy, then answer when tried again
NO_ANSWER = NUMBERS[7:9]  # ring out every time: given up after max_attempts
MACHINES = NUMBERS[11:13]  # an answering machine: hung up on (machine_detected)
FAILED = NUMBERS[15:16]  # the carrier cannot place it


def _csv() -> str:
    return "number,name\n" + "".join(f"{n},Patient {i}\n" for i, n in enumerate(NUMBERS))


async def _api(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.request(method, base_url + path, **kwargs)


async def _campaign(base_url: str, campaign_id: str) -> dict[str, Any]:
    response = await _api(base_url, "GET", f"/api/campaigns/{campaign_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _until(base_url: str, campaign_id: str, predicate, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            detail = await _campaign(base_url, campaign_id)
            if predicate(detail):
                return detail
            await asyncio.sleep(0.2)


def _expected_dials() -> Counter[str]:
    expected = Counter(dict.fromkeys(NUMBERS, 1))
    for number in [*BUSY_FIRST, *NO_ANSWER]:
        expected[number] = 2
    return expected


def _fleet_env(tmp_path: Path, sim: OpenAIRealtimeServer, twilio: TwilioRestServer,
               database_url: str, **extra: str) -> dict[str, str]:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "reminders.yaml").write_text(AGENT_YAML)
    return fleet_env(agents_dir=agents, database_url=database_url, openai_url=sim.url,
                     TWILIO_ACCOUNT_SID=SIMULATED_ACCOUNT_SID,
                     TWILIO_API_BASE_URL=twilio.url, **extra)


CAMPAIGN = {"name": "June reminders", "agent": "reminders", "carrier": "twilio",
            "machine_detection": "hangup", "hours_start": "00:00", "hours_end": "00:00",
            "calls_per_second": 4, "max_concurrent": 4, "max_attempts": 2,
            "retry_backoff_seconds": 10}


async def test_a_campaign_of_20_numbers_completes_across_two_processes_dialing_none_twice(
        tmp_path: Path, postgres_engine: Engine, redis_available: None) -> None:
    redis.Redis.from_url(REDIS_URL).delete(QUEUE_NAME)  # no jobs left by an earlier run
    database_url = postgres_engine.url.render_as_string(hide_password=False)
    callees = script(NUMBERS, busy=BUSY_FIRST, no_answer=NO_ANSWER, machine=MACHINES,
                     failed=FAILED)
    async with OpenAIRealtimeServer() as sim, TwilioRestServer(callees=callees) as twilio:
        env = _fleet_env(tmp_path, sim, twilio, database_url, REDIS_URL=REDIS_URL)
        procs = [ServerProcess(env, tmp_path, f"server{i}", public_url_is_own=True) for i in range(2)]
        try:
            await asyncio.gather(*(p.wait_ready() for p in procs))
            a, b = procs
            async with CampaignCallees(twilio, busy_first=set(BUSY_FIRST)).running() as people:
                created = await _api(a.base_url, "POST", "/api/campaigns",
                                     json={**CAMPAIGN, "csv": _csv()})
                assert created.status_code == 201, created.text
                campaign_id = created.json()["id"]
                assert created.json() == {"id": campaign_id, "status": "running",
                                          "contacts": 20}

                # Pause from the other process once a few calls went out.
                async with asyncio.timeout(30):
                    while len(twilio.calls) < 6:
                        await asyncio.sleep(0.05)
                paused = await _api(b.base_url, "POST", f"/api/campaigns/{campaign_id}/pause")
                assert paused.json()["status"] == "paused"
                placed_at_pause = len(twilio.calls)
                # Calls on the line finish, and a dial already under way when the pause
                # came (its REST request in flight) still reaches the carrier; nothing
                # new is dialed, on either process, over several of the queue's ticks.
                await _until(a.base_url, campaign_id, lambda d: d["contacts"]["dialing"] == 0,
                             30)
                dialed_at_pause = len(twilio.calls)
                assert dialed_at_pause - placed_at_pause <= 4  # two processes' in-flight dials
                await asyncio.sleep(3)
                assert len(twilio.calls) == dialed_at_pause
                assert (await _campaign(b.base_url, campaign_id))["status"] == "paused"

                resumed = await _api(a.base_url, "POST", f"/api/campaigns/{campaign_id}/resume")
                assert resumed.json()["status"] == "running"
                detail = await _until(b.base_url, campaign_id,
                                      lambda d: d["status"] == "completed", 120)
        finally:
            for p in procs:
                await p.stop()

    # Every number dialed exactly as often as its callee called for: once, or twice
    # for a busy line and an unanswered one (max_attempts 2) — never more.
    assert people.dialed() == _expected_dials()
    # The fleet placed every call. Which process takes each job is the queue's choice
    # (the first to claim it), so on a busy machine one may take them all; the sharing
    # shows above, where a pause from the other process held both.
    hosts = people.placed_by()
    assert set(hosts) <= {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}, hosts
    assert sum(hosts.values()) == sum(people.dialed().values()), hosts
    assert detail["contacts"] == {"total": 20, "pending": 0, "dialing": 0, "done": 17,
                                  "failed": 3}
    outcomes = dict(detail["outcomes"])
    # A person hanging up reaches the server twice (the stream stops, Twilio's status
    # callback says completed): whichever lands first names the end.
    reached = outcomes.pop("caller_hung_up", 0) + outcomes.pop("completed", 0)
    assert (reached, outcomes) == (15, {"machine_detected": 2, "no_answer": 2, "failed": 1})
    assert detail["attempts"] == 24
    assert sorted(people.heard_greeting) == sorted(
        n for n in NUMBERS if n not in (*NO_ANSWER, *MACHINES, *FAILED))
