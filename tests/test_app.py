"""The application's carrier wiring: every enabled carrier plug-in gets its routes,
its public paths and its start/stop, and every call is recorded under its carrier."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import APIRouter
from sqlmodel import Session, select

from agentplatform.app import create_app
from agentplatform.carriers import registry
from agentplatform.carriers.plugin import Carrier
from agentplatform.storage.models import Call
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from tests.web.conftest import agent_file, served, settings_for  # noqa: F401  (fixture)
from tests.web.test_browser_call import browser_stream, start_ticket

AGENT_NUMBER = "+15555550100"


async def _recorded_carrier(client, carrier_call_id: str) -> str:
    server = client.server
    async with asyncio.timeout(5):
        while True:
            await server.platform.writer.flush()
            with Session(server.app.state.engine) as session:
                row = session.exec(select(Call).where(
                    Call.carrier_call_id == carrier_call_id)).first()
            if row is not None:
                return row.carrier
            await asyncio.sleep(0.05)


async def test_a_twilio_call_and_a_browser_call_are_recorded_with_their_carrier(
        tmp_path, agent_file):
    async with OpenAIRealtimeServer(pace=4.0, reply_ms=300) as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            async with TwilioCaller(str(client.base_url), to=AGENT_NUMBER) as phone:
                await phone.wait_for_audio(5)
            ticket = await start_ticket(client)
            browser = await browser_stream(client, ticket)
            try:
                await browser.wait_for_audio(5)
            finally:
                await browser.hang_up()
            assert await _recorded_carrier(client, phone.call_sid) == "twilio"
            assert await _recorded_carrier(client, ticket["call_sid"]) == "browser"


async def test_malformed_frames_are_counted_under_the_carrier_that_took_the_call(
        tmp_path, agent_file):
    async with OpenAIRealtimeServer(pace=4.0, reply_ms=300) as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            ticket = await start_ticket(client)
            browser = await browser_stream(client, ticket)
            try:
                await browser.wait_for_audio(5)
                await browser.send_raw("{not json")
                await asyncio.sleep(0.2)
            finally:
                await browser.hang_up()
            await _recorded_carrier(client, ticket["call_sid"])
            async with asyncio.timeout(5):
                while True:
                    metrics = (await client.get("/metrics")).text
                    if "agentplatform_malformed_carrier_messages_total{" in metrics:
                        break
                    await asyncio.sleep(0.05)
    lines = [line for line in metrics.splitlines()
             if line.startswith("agentplatform_malformed_carrier_messages_total{")]
    assert lines and all('carrier="browser"' in line for line in lines), lines


class ListeningCarrier(Carrier):
    """A carrier with a listener and one public route, as a SIP trunk or a webhook has."""

    name = "listening"
    public_paths = ("/listening/",)
    events: list[str] = []
    fail_start = False
    switched_on = True  # stands in for a setting such as SIP_LISTEN

    @classmethod
    def enabled(cls, settings) -> bool:
        return cls.switched_on

    def routes(self) -> APIRouter:
        router = APIRouter()

        @router.get("/listening/ping")
        async def ping() -> dict[str, str]:
            return {"carrier": self.context.carrier}

        return router

    async def start(self) -> None:
        if self.fail_start:
            raise OSError("address already in use")
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append(f"stop with {len(self.context.services().calls)} calls live")


@pytest.fixture
def listening(monkeypatch):
    monkeypatch.setitem(registry.CARRIERS, "listening", f"{__name__}:ListeningCarrier")
    monkeypatch.setattr(ListeningCarrier, "events", [])
    return ListeningCarrier


async def _remote_get(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.example") as c:
        return await c.get(path)


async def test_a_registered_carrier_is_started_with_the_app_and_stopped_after_its_calls(
        tmp_path, listening):
    app = create_app(settings_for(tmp_path, allowed_hosts="admin.example"))
    async with app.router.lifespan_context(app):
        assert listening.events == ["start"]
        # Its own path is public (it checks its callers itself); the admin side is not.
        assert (await _remote_get(app, "/listening/ping")).json() == {"carrier": "listening"}
        assert (await _remote_get(app, "/api/calls")).status_code in (401, 403)
    assert listening.events == ["start", "stop with 0 calls live"]


async def test_a_carrier_the_settings_leave_off_has_no_routes_and_no_public_path(
        tmp_path, listening, monkeypatch):
    monkeypatch.setattr(ListeningCarrier, "switched_on", False)
    app = create_app(settings_for(tmp_path, allowed_hosts="admin.example"))
    async with app.router.lifespan_context(app):
        assert listening.events == []
        assert (await _remote_get(app, "/listening/ping")).status_code == 403


async def test_a_carrier_that_cannot_start_fails_the_start_up(tmp_path, listening, monkeypatch):
    monkeypatch.setattr(ListeningCarrier, "fail_start", True)
    app = create_app(settings_for(tmp_path))
    with pytest.raises(OSError, match="address already in use"):
        async with app.router.lifespan_context(app):
            pass
