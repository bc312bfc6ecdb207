"""A server killed with SIGKILL mid-call: another process on the same database closes
the call's record as ``server_lost`` once its liveness lease has run out, keeping what
was recorded up to then, so the calls page stops showing it live and the day's figures
count it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, select

from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.storage.models import Call
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from .processes import ServerProcess, fleet_env

NUMBER = "+15555550400"
AGENT = f"""\
name: front-desk
prompt: You answer the phone.
greeting: Thanks for calling.
phone_numbers: ["{NUMBER}"]
"""
# Short, so the test waits seconds rather than the default half minute.
LEASE_SECONDS = 4.0
AUTH_TOKEN = "fleet-auth-token"


async def _wait_mid_call(engine, call_sid: str, timeout: float):
    """The call's row once it is well under way: the greeting's usage and transcript
    are written, and its server has renewed the call's lease at least once."""

    def state():
        call = queries.find_by_carrier_id(engine, call_sid)
        if call is None or call.output_audio_tokens == 0:
            return None
        detail = queries.get_call(engine, call.id)
        with Session(engine) as session:
            seen = session.exec(select(Call.last_seen_at).where(Call.id == call.id)).one()
        return detail if detail.turns and seen > detail.started_at else None

    async with asyncio.timeout(timeout):
        while (call := await asyncio.to_thread(state)) is None:
            await asyncio.sleep(0.05)
        return call


async def _wait_closed(engine, call_id: str, timeout: float):
    async with asyncio.timeout(timeout):
        while True:
            call = await asyncio.to_thread(queries.get_call, engine, call_id)
            if call is not None and call.ended_at is not None:
                return call
            await asyncio.sleep(0.05)


async def test_a_killed_servers_call_is_closed_as_server_lost_by_the_next_server(
    tmp_path: Path,
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front-desk.yaml").write_text(AGENT)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    engine = make_engine(database_url)
    env = fleet_env(agents_dir=agents, database_url=database_url, openai_url="",
                    CALL_LEASE_SECONDS=str(LEASE_SECONDS), TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    first = second = None
    try:
        async with OpenAIRealtimeServer(pace=1.0, reply_ms=600) as sim:
            env["OPENAI_REALTIME_URL"] = sim.url
            first = ServerProcess(env, tmp_path, "crashes")
            await first.wait_ready()
            caller = TwilioCaller(first.base_url, to=NUMBER, auth_token=AUTH_TOKEN)
            assert await caller.dial(), first.log()
            await caller.wait_for_audio(10)
            live = await _wait_mid_call(engine, caller.call_sid, 15)

            first.proc.kill()  # SIGKILL: no shutdown code runs, the record stays open
            await asyncio.to_thread(first.proc.wait, 10)
            killed_at = datetime.now(UTC)
            await caller.wait_closed(10)
            assert (await asyncio.to_thread(queries.get_call, engine, live.id)).ended_at is None

            second = ServerProcess(env, tmp_path, "notices")
            await second.wait_ready()
            ready = time.monotonic()
            closed = await _wait_closed(engine, live.id, LEASE_SECONDS + 10)
            waited = time.monotonic() - ready
            log = second.log()
    finally:
        for server in (first, second):
            if server is not None:
                await server.stop()

    try:
        assert waited <= LEASE_SECONDS, (waited, log)
        assert closed.end_reason == "server_lost"
        # Ended when its server was last known alive, not when the loss was noticed.
        assert closed.started_at < closed.ended_at <= killed_at
        assert closed.duration_seconds > 0 and closed.audio_seconds > 0
        # What was recorded before the crash is kept: usage, its cost, the transcript.
        assert closed.output_audio_tokens == live.output_audio_tokens > 0
        assert closed.cost_usd >= live.cost_usd > 0
        assert [t.text for t in closed.turns][:len(live.turns)] == [t.text for t in live.turns]
        # The calls page no longer shows it live, and the day's figures include it.
        assert queries.list_calls(engine, end_reason="live") == []
        day = closed.started_at.date()
        [figures] = queries.agent_days(engine, day, day)
        assert (figures.calls, figures.refused) == (1, 0)
        assert figures.cost_usd == closed.cost_usd
        assert figures.audio_seconds == closed.audio_seconds
    finally:
        engine.dispose()
