"""The browser test call: a minted one-call token, the Media Streams protocol on
/browser-call/media, and the same bridge a phone call uses."""

from __future__ import annotations

import asyncio

from agentplatform.audio.frames import tone
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller, TwimlAnswer
from agentplatform.web.browser_call import MEDIA_PATH

from .conftest import csrf_of, served

SPEECH = tone(440, 1000, 8000, amplitude=0.4)


async def browser_stream(client, ticket: dict, *, token: str | None = None) -> TwilioCaller:
    """A caller that skips the voice webhook: it opens the browser media route with the
    ticket the page got, speaking the same protocol the page's script speaks."""
    caller = TwilioCaller(str(client.base_url), to="browser")
    caller.call_sid, caller.stream_sid = ticket["call_sid"], ticket["stream_sid"]
    params = {"token": ticket["token"] if token is None else token, "agent": ticket["agent"]}
    await caller._open_stream(TwimlAnswer(xml="", stream_url=f"wss://x{MEDIA_PATH}",
                                          parameters=params))
    return caller


async def start_ticket(client, name: str = "front-desk") -> dict:
    token = csrf_of((await client.get(f"/agents/{name}/call")).text)
    response = await client.post(f"/agents/{name}/call/start", headers={"X-CSRF-Token": token})
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_browser_call_is_bridged_and_its_transcript_is_readable(tmp_path, agent_file):
    async with OpenAIRealtimeServer(pace=4.0, reply_ms=600,
                                    caller_texts=["Is there a slot on Monday?"]) as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            ticket = await start_ticket(client)
            assert "key" not in str(ticket).lower().replace("token", "")  # nothing secret
            caller = await browser_stream(client, ticket)
            try:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                assert caller.marks_echoed and not caller.protocol_errors
            finally:
                await caller.hang_up()
            path = f"/agents/front-desk/call/{ticket['call_sid']}/transcript"
            async with asyncio.timeout(5):
                while True:
                    await client.server.platform.writer.flush()
                    data = (await client.get(path)).json()
                    if data["ended"]:
                        break
                    await asyncio.sleep(0.05)
    roles = [t["role"] for t in data["turns"]]
    assert roles[:3] == ["assistant", "user", "assistant"], data
    assert data["turns"][1]["text"] == "Is there a slot on Monday?"
    assert data["ended"] == "caller_hung_up"


async def test_a_stream_without_a_valid_browser_token_opens_no_model_session(
        tmp_path, agent_file):
    async with OpenAIRealtimeServer() as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            ticket = await start_ticket(client)
            # A token for another call, and a Twilio stream token, are both refused.
            twilio_token = StreamTokens(b"test-secret").mint(ticket["call_sid"], "front-desk", 60)
            for token in ("", ticket["token"][:-3] + "abc", twilio_token):
                caller = await browser_stream(client, ticket, token=token)
                assert await caller.wait_closed(5) == 1008
                await caller.hang_up()
            assert not sim.connections


async def test_starting_a_browser_call_needs_the_csrf_header(tmp_path, agent_file):
    async with served(tmp_path) as client:
        await client.get("/agents/front-desk/call")
        refused = await client.post("/agents/front-desk/call/start")
        assert refused.status_code == 403
        missing = await client.post("/agents/nobody/call/start",
                                    headers={"X-CSRF-Token": csrf_of(
                                        (await client.get("/agents/front-desk/call")).text)})
        assert missing.status_code == 404


async def test_an_agent_hanging_up_closes_the_browser_socket_with_its_reason(tmp_path, agent_file):
    from agentplatform.testing.openai_realtime_server import ToolRule

    async with OpenAIRealtimeServer(pace=4.0, reply_ms=400, caller_texts=["bye now"],
                                    tool_rules=[ToolRule("bye", "end_call")]) as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            ticket = await start_ticket(client)
            caller = await browser_stream(client, ticket)
            await caller.wait_for_audio(5)
            await caller.wait_for_silence(300, 10)
            await caller.say(SPEECH)
            code = await caller.wait_closed(15)
            await caller.hang_up()
    assert code == 1000 and caller.closed_by_server


async def _records_for(client, call_sid: str) -> list:
    from sqlmodel import Session, select

    from agentplatform.storage.models import Call

    await client.server.platform.writer.flush()
    with Session(client.server.app.state.engine) as session:
        return list(session.exec(select(Call).where(Call.carrier_call_id == call_sid)).all())


async def test_a_browser_token_opens_one_stream_only(tmp_path, agent_file):
    async with OpenAIRealtimeServer(pace=4.0, reply_ms=400) as sim:
        async with served(tmp_path, openai_realtime_url=sim.url) as client:
            ticket = await start_ticket(client)
            first = await browser_stream(client, ticket)
            await first.wait_for_audio(5)
            during = await browser_stream(client, ticket)  # replayed while the call runs
            assert await during.wait_closed(5) == 1008
            await during.hang_up()
            await first.hang_up()
            after = await browser_stream(client, ticket)  # and after it ended
            assert await after.wait_closed(5) == 1008
            await after.hang_up()
            assert len(sim.sessions) == 1
            assert len(await _records_for(client, ticket["call_sid"])) == 1
