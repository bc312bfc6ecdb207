"""The hang-up route refuses what it cannot do, saying why; the live part of a call's
page and the calls list's self-refresh part render on their own."""

from __future__ import annotations

from agentplatform.records import CallStart, EndReason

from .conftest import csrf_of, served


async def test_hang_up_refuses_an_unknown_and_an_ended_call_and_asks_for_another_s(tmp_path):
    async with served(tmp_path) as client:
        writer = client.server.platform.writer
        writer.call_started(CallStart("e" * 32, "CAended", "front-desk", "openai/gpt-realtime",
                                      "twilio"))
        writer.call_ended("e" * 32, EndReason.CALLER_HUNG_UP, "caller hung up")
        # Open in the record, but no session of this process serves it.
        writer.call_started(CallStart("f" * 32, "CAother", "front-desk", "openai/gpt-realtime",
                                      "twilio"))
        writer.turn("f" * 32, "assistant", "Hello from elsewhere.")
        await writer.flush()
        token = csrf_of((await client.get("/")).text)
        unknown = await client.post("/calls/nope/hangup", data={"csrf_token": token})
        ended = await client.post(f"/calls/{'e' * 32}/hangup", data={"csrf_token": token})
        elsewhere = await client.post(f"/calls/{'f' * 32}/hangup", data={"csrf_token": token})
        forged = await client.post(f"/calls/{'f' * 32}/hangup", data={"csrf_token": "x"})
        live_part = await client.get(f"/calls/{'f' * 32}/live")
        list_part = await client.get("/calls", params={"part": "list"})
        bad_part = await client.get("/calls", params={"part": "charts"})
    assert unknown.status_code == 404
    assert ended.status_code == 409 and "already ended" in ended.text
    # Served elsewhere: asked through the database, for that process to act on.
    assert elsewhere.status_code == 303
    assert forged.status_code == 403
    assert "Hello from elsewhere." in live_part.text and "data-final" not in live_part.text
    assert 'id="calls"' in list_part.text and "<nav" not in list_part.text
    assert "Daily cost" not in list_part.text
    assert bad_part.status_code == 400


async def test_an_admin_on_one_server_process_hangs_up_a_call_another_serves(tmp_path):
    """Two processes on one database: the call is on the first, the admin's hang-up
    reaches the second, and the first ends the call."""
    from agentplatform.storage.database import make_engine
    from agentplatform.storage.queries import get_call
    from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
    from agentplatform.testing.stack import local_server
    from agentplatform.testing.twilio_caller import TwilioCaller

    from .conftest import settings_for, write_agent

    write_agent(tmp_path / "agents")
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim, \
            local_server(settings_for(tmp_path, openai_url=sim.url)) as serving, \
            served(tmp_path, openai_url=sim.url) as other:
        async with TwilioCaller(serving.base_url, to="+15555550100") as caller:
            await caller.wait_for_audio(10)
            call_id = next(iter(serving.platform.live))
            await serving.platform.writer.flush()  # the record the admin's page shows
            token = csrf_of((await other.get("/")).text)
            asked = await other.post(f"/calls/{call_id}/hangup", data={"csrf_token": token})
            assert asked.status_code == 303, asked.text
            code = await caller.wait_closed(10)
        await serving.platform.writer.flush()
        detail = get_call(make_engine(serving.settings.database_url), call_id)
    assert asked.status_code == 303 and code is not None
    assert detail is not None and detail.end_reason == "admin_hung_up"
