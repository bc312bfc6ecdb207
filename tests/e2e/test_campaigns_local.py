"""Campaigns with no Redis: the single-process queue in the database, over the
Twilio REST simulator, across server restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, Self

import httpx

from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID,
    TwilioRestServer,
)

from .campaign_callees import CampaignCallees, script

AGENT_YAML = """\
name: reminders
model: openai/gpt-realtime
prompt: You call patients about their appointment.
greeting: Hello {{params.name}}, this is the clinic calling.
phone_numbers: ["+15555550100"]
"""
NUMBERS = [f"+1415555{200 + i:04d}" for i in range(8)]
CAMPAIGN = {"name": "reminders", "agent": "reminders", "carrier": "twilio",
            "hours_start": "00:00", "hours_end": "00:00", "calls_per_second": 2,
            "max_concurrent": 2, "retry_backoff_seconds": 10, "csv": "number,name\n" + "".join(
                f"{n},P{i}\n" for i, n in enumerate(NUMBERS))}


def _settings(tmp_path: Path, sim: OpenAIRealtimeServer, twilio: TwilioRestServer):
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "reminders.yaml").write_text(AGENT_YAML)
    return simulated_settings(agents_dir=agents, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                              openai_url=sim.url, twilio_account_sid=SIMULATED_ACCOUNT_SID,
                              twilio_api_base_url=twilio.url, redis_url="")


class _Served:
    """The server in this process, reachable by Twilio at its own address."""

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        self._cm = local_server(settings.model_copy())
        self.base_url = ""

    async def __aenter__(self) -> Self:
        server = await self._cm.__aenter__()
        server.settings.public_url = self.base_url = server.base_url
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=15) as client:
            return await client.request(method, self.base_url + path, **kwargs)

    async def until(self, campaign_id: str, predicate, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                detail = (await self.api("GET", f"/api/campaigns/{campaign_id}")).json()
                if predicate(detail):
                    return detail
                await asyncio.sleep(0.1)


async def _calls_placed(twilio: TwilioRestServer, count: int) -> None:
    async with asyncio.timeout(30):
        while len(twilio.calls) < count:
            await asyncio.sleep(0.02)


async def test_a_campaign_cut_by_a_restart_finishes_after_it_with_nobody_dialed_twice(
        tmp_path: Path) -> None:
    async with OpenAIRealtimeServer() as sim, \
            TwilioRestServer(callees=script(NUMBERS)) as twilio, \
            CampaignCallees(twilio).running() as people:
        settings = _settings(tmp_path, sim, twilio)
        async with _Served(settings) as first:
            created = await first.api("POST", "/api/campaigns", json=CAMPAIGN)
            assert created.status_code == 201, created.text
            campaign_id = created.json()["id"]
            await _calls_placed(twilio, 3)
        placed_before = len(twilio.calls)
        assert placed_before < len(NUMBERS)
        async with _Served(settings) as second:
            detail = await second.until(campaign_id, lambda d: d["status"] == "completed", 60)
    # Everyone heard the agent once. A number is dialed again only if its call was
    # still ringing when the first server stopped (its carrier cancelled it).
    assert Counter(people.heard_greeting) == dict.fromkeys(NUMBERS, 1)
    calls = {c["number"]: c["call_ids"] for c in detail["contact_list"]}
    assert people.dialed() == {n: len(ids) for n, ids in calls.items()}
    assert set(people.dialed().values()) <= {1, 2}
    assert detail["contacts"]["done"] == len(NUMBERS)


async def test_pausing_stops_new_dials_survives_a_restart_and_resume_finishes(
        tmp_path: Path) -> None:
    async with OpenAIRealtimeServer() as sim, \
            TwilioRestServer(callees=script(NUMBERS)) as twilio, \
            CampaignCallees(twilio).running() as people:
        settings = _settings(tmp_path, sim, twilio)
        async with _Served(settings) as first:
            created = await first.api("POST", "/api/campaigns", json=CAMPAIGN)
            campaign_id = created.json()["id"]
            await _calls_placed(twilio, 2)
            paused = await first.api("POST", f"/api/campaigns/{campaign_id}/pause")
            assert paused.json() == {"id": campaign_id, "status": "paused"}
            placed_at_pause = len(twilio.calls)
            await first.until(campaign_id, lambda d: d["contacts"]["dialing"] == 0, 30)
            # A dial already under way when the pause came (claimed, its REST request in
            # flight) still reaches the carrier; no new one starts after it.
            dialed_at_pause = len(twilio.calls)
            assert dialed_at_pause - placed_at_pause <= CAMPAIGN["max_concurrent"]
            await asyncio.sleep(1.5)  # six of the queue's ticks
            assert len(twilio.calls) == dialed_at_pause
            again = await first.api("POST", f"/api/campaigns/{campaign_id}/pause")
            assert again.status_code == 409
        async with _Served(settings) as second:
            detail = (await second.api("GET", f"/api/campaigns/{campaign_id}")).json()
            assert detail["status"] == "paused"
            await asyncio.sleep(1.0)
            assert len(twilio.calls) == dialed_at_pause
            resumed = await second.api("POST", f"/api/campaigns/{campaign_id}/resume")
            assert resumed.json()["status"] == "running"
            detail = await second.until(campaign_id, lambda d: d["status"] == "completed", 60)
    assert people.dialed() == dict.fromkeys(NUMBERS, 1)
    assert detail["outcomes"] == {"caller_hung_up": len(NUMBERS)}
