"""Outbound calls over the Twilio REST simulator, bridged to the OpenAI Realtime
simulator, over real sockets: POST /api/calls → calls.create → status and AMD
callbacks → the callee's media stream → the agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from agentplatform.audio.frames import tone
from agentplatform.storage import queries
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID, Callee, SimulatedCall, TwilioRestServer,
)

SPEECH = tone(440, 1200, 8000, amplitude=0.4)
CALLEE = "+15555550142"
AGENT_NUMBER = "+15555550100"

AGENT_YAML = """\
name: reminders
model: openai/gpt-realtime
voice: marin
prompt: You call patients to remind them of appointments. This patient is {{params.name}}.
greeting: Hello {{params.name}}, this is the clinic calling about your appointment.
phone_numbers: ["+15555550100"]
tools:
  - type: end_call
  - type: transfer_call
    destinations:
      reception: "+15555550199"
"""
VOICEMAIL = "This is the clinic. Your appointment is tomorrow at nine. Goodbye."


@contextlib.asynccontextmanager
async def outbound_platform(tmp_path, sim: OpenAIRealtimeServer,
                            twilio: TwilioRestServer) -> AsyncIterator:
    from agentplatform.testing.stack import local_server, simulated_settings

    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "reminders.yaml").write_text(AGENT_YAML)
    settings = simulated_settings(
        agents_dir=agents, database_url=f"sqlite:///{tmp_path / 'calls.db'}",
        openai_url=sim.url, twilio_account_sid=SIMULATED_ACCOUNT_SID,
        twilio_api_base_url=twilio.url)
    async with local_server(settings) as server:
        # Twilio reaches the server where it listens: known once it does.
        server.settings.public_url = server.base_url
        yield server


async def dial(server, **body) -> httpx.Response:
    payload = {"agent": "reminders", "to": CALLEE, **body}
    async with httpx.AsyncClient() as client:
        return await client.post(server.base_url + "/api/calls", json=payload)


async def answered(twilio: TwilioRestServer) -> SimulatedCall:
    call = await twilio.wait_for_call()
    async with asyncio.timeout(5):
        while call.caller is None:
            await asyncio.sleep(0.02)
    return call


async def record(server, call_id: str, *, ended: bool = True, timeout: float = 10.0):
    engine = server.app.state.engine
    async with asyncio.timeout(timeout):
        while True:
            await server.platform.writer.flush()
            detail = queries.get_call(engine, call_id)
            if detail is not None and (detail.end_reason is not None or not ended):
                return detail
            await asyncio.sleep(0.05)


async def test_a_placed_call_reaches_the_greeting_after_a_human_verdict_then_converses(tmp_path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800,
                                    caller_texts=["Yes, I will be there."]) as sim, \
            TwilioRestServer(callees={CALLEE: Callee("human", amd_after_seconds=1.0)}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server, params={"name": "Ada"}, machine_detection="hangup")
        assert response.status_code == 202, response.text
        call_id = response.json()["call_id"]
        assert response.json()["status"] == "queued"
        call = await answered(twilio)
        caller = call.caller
        await caller.wait_for_audio(10)
        # Not a word before the verdict: the greeting came after the AMD callback.
        assert call.amd_posted_at is not None and caller.first_audio_at > call.amd_posted_at
        live = await record(server, call_id, ended=False)
        assert live.status == "in_progress" and live.carrier_call_id == call.sid
        await caller.wait_for_silence(300, 10)
        greeting_ms = caller.played_ms
        await caller.say(SPEECH)
        await caller.wait_for_audio(5)
        await caller.wait_for_silence(300, 10)
        assert caller.played_ms > greeting_ms + 500
        await caller.hang_up()
        detail = await record(server, call_id)
    # One record, under the platform's id, carrying the call's facts.
    calls = queries.list_calls(server.app.state.engine)
    assert [c.id for c in calls] == [call_id]
    assert (detail.direction, detail.status, detail.end_reason) == (
        "outbound", "ended", "caller_hung_up")
    assert (detail.to_number, detail.from_number, detail.carrier) == (
        CALLEE, AGENT_NUMBER, "twilio")
    assert detail.parameters == {"name": "Ada"} and detail.machine_detection == "hangup"
    assert [t.role for t in detail.turns][:3] == ["assistant", "user", "assistant"]
    # params filled the prompt and the greeting.
    assert sim.sessions[0]["instructions"].endswith("This patient is Ada.")
    assert any("Hello Ada, this is the clinic" in (i or "") for i in sim.response_instructions)
    verdicts = [e.detail for e in detail.events if e.kind == "answering_machine"]
    assert verdicts == [{"verdict": "human", "greeting_ended": False, "detail": "human"}]
    # What Twilio was asked for: the stream TwiML, status events, asynchronous AMD.
    assert call.fields("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert (call.field("MachineDetection"), call.field("AsyncAmd")) == ("DetectMessageEnd", "true")
    assert call.field("AsyncAmdStatusCallback") == server.base_url + "/twilio/amd"
    assert all(c.status == 204 for c in call.callbacks), call.callbacks


async def test_a_machine_with_leave_message_hears_the_voicemail_after_its_beep_then_hang_up(
        tmp_path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=1500) as sim, \
            TwilioRestServer(callees={CALLEE: Callee("machine")}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server, params={"name": "Ada"}, machine_detection="leave_message",
                              voicemail_message=VOICEMAIL)
        assert response.status_code == 202, response.text
        call_id = response.json()["call_id"]
        call = await answered(twilio)
        machine = call.caller
        await machine.wait_closed(20)
        detail = await record(server, call_id)
    # The machine heard nothing during its greeting, then the message in full.
    assert call.greeting_done_at is not None and machine.first_audio_at > call.greeting_done_at
    assert machine.played_ms >= 1400, machine.played_ms
    assert detail.end_reason == "voicemail_left"
    said = [i or "" for i in sim.response_instructions]
    assert len(said) == 1 and VOICEMAIL in said[0]  # no greeting went to the machine
    # The machine's greeting never reached the model.
    assert not [e for e in sim.received if e["type"] == "input_audio_buffer.append"]
    # Hung up over REST once the message had played.
    assert call.updates == [{"Status": "completed"}]


async def test_a_machine_with_hangup_ends_the_call_machine_detected_without_a_word(tmp_path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800) as sim, \
            TwilioRestServer(callees={CALLEE: Callee("machine")}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server, machine_detection="hangup")
        call_id = response.json()["call_id"]
        call = await answered(twilio)
        await call.caller.wait_closed(20)
        detail = await record(server, call_id)
    assert detail.end_reason == "machine_detected"
    assert "machine_end_beep" in detail.end_detail
    assert call.caller.first_audio_at is None
    assert sim.response_instructions == []


async def _unanswered(tmp_path, kind: str) -> tuple[object, SimulatedCall]:
    async with OpenAIRealtimeServer() as sim, \
            TwilioRestServer(callees={CALLEE: Callee(kind)}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server)
        assert response.status_code == 202, response.text
        call = await twilio.wait_for_call()
        detail = await record(server, response.json()["call_id"])
        async with httpx.AsyncClient() as client:
            shown = (await client.get(f"{server.base_url}/api/calls/{detail.id}")).json()
    assert not sim.sessions  # no model session for a call nobody answered
    assert (shown["status"], shown["end_reason"], shown["direction"]) == (
        "ended", detail.end_reason, "outbound")
    return detail, call


async def test_a_busy_callee_closes_the_record_busy_with_the_twilio_call_sid(tmp_path):
    detail, call = await _unanswered(tmp_path, "busy")
    assert (detail.end_reason, detail.status) == ("busy", "ended")
    assert detail.carrier_call_id == call.sid
    assert call.statuses() == ["initiated", "ringing", "busy"]


async def test_a_callee_who_never_answers_closes_the_record_no_answer(tmp_path):
    detail, _ = await _unanswered(tmp_path, "no_answer")
    assert detail.end_reason == "no_answer"


async def test_a_failed_call_closes_the_record_failed(tmp_path):
    detail, _ = await _unanswered(tmp_path, "failed")
    assert detail.end_reason == "failed"


async def test_transfer_call_on_a_placed_call_dials_the_target_and_records_transferred(tmp_path):
    rules = [ToolRule(contains="reception", name="transfer_call",
                      arguments='{"destination": "reception"}')]
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, tool_rules=rules,
                                    caller_texts=["Put me through to reception"]) as sim, \
            TwilioRestServer(callees={CALLEE: Callee("human")}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server, params={"name": "Ada"})
        call_id = response.json()["call_id"]
        call = await answered(twilio)
        caller = call.caller
        await caller.wait_for_audio(8)
        await caller.wait_for_silence(300, 10)
        await caller.say(SPEECH)
        await caller.wait_closed(20)
        detail = await record(server, call_id)
    assert call.transferred_to == "+15555550199"
    assert detail.end_reason == "transferred" and "reception" in detail.end_detail
    assert [t.name for t in detail.tools] == ["transfer_call"]


DTMF_AGENT_YAML = AGENT_YAML.replace("  - type: end_call\n",
                                     "  - type: end_call\n  - type: send_dtmf\n")


async def test_send_dtmf_plays_the_digits_and_the_call_goes_on_over_the_reconnected_stream(
        tmp_path):
    """Twilio's DTMF costs a stream reconnect: the same call, model session and record
    carry on over the new stream once the tones have played."""
    rules = [ToolRule(contains="press", name="send_dtmf", arguments='{"digits": "1w2"}')]
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, tool_rules=rules,
                                    caller_texts=["For sales, press one then two",
                                                  "Sales, how can I help?"]) as sim, \
            TwilioRestServer(callees={CALLEE: Callee("human")}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        (tmp_path / "agents" / "reminders.yaml").write_text(DTMF_AGENT_YAML)
        response = await dial(server, params={"name": "Ada"})
        call_id = response.json()["call_id"]
        call = await answered(twilio)
        menu = call.caller
        await menu.wait_for_audio(8)
        await menu.wait_for_silence(300, 10)
        await menu.say(SPEECH)  # the IVR reads its menu; the agent presses keys
        async with asyncio.timeout(10):
            while len(call.streams) < 2:
                await asyncio.sleep(0.05)
        sales = call.streams[1]
        await sales.wait_for_audio(8)  # the agent speaks on over the new stream
        await sales.wait_for_silence(300, 10)
        await sales.say(SPEECH)
        await sales.wait_for_audio(8)
        await sales.wait_for_silence(300, 10)
        await sales.hang_up()
        detail = await record(server, call_id)
    assert call.digits_played == ["1w2"]
    assert menu.closed_by_server is False and not sales.protocol_errors
    assert len(sim.sessions) == 1  # one model session for the whole call
    assert [c.id for c in queries.list_calls(server.app.state.engine)] == [call_id]
    assert detail.end_reason == "caller_hung_up"
    [tool] = detail.tools
    assert (tool.name, tool.ok) == ("send_dtmf", True)
    users = [t.text for t in detail.turns if t.role == "user"]
    assert users == ["For sales, press one then two", "Sales, how can I help?"]


async def test_a_resumed_stream_for_no_live_call_here_is_refused_1008(tmp_path):
    from agentplatform.carriers.tokens import StreamTokens
    from agentplatform.testing.twilio_caller import TwilioCaller, TwimlAnswer

    async with OpenAIRealtimeServer() as sim, TwilioRestServer() as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        stray = TwilioCaller(server.base_url, to=CALLEE)
        token = StreamTokens.from_settings(server.settings).mint(stray.call_sid, "reminders", 60)
        host = server.base_url.split("://", 1)[1]
        await stray.stream(TwimlAnswer(xml="", stream_url=f"wss://{host}/twilio/media",
                                       parameters={"token": token, "resume": "1"}))
        code = await stray.wait_closed(5)
        await stray.hang_up()
    assert code == 1008 and not sim.sessions


async def test_a_machine_verdict_after_the_hold_stops_the_greeting_and_leaves_the_message(
        tmp_path):
    """A long machine greeting: the hold runs out (4 s) and the agent greets; when the
    verdict comes at the beep, the greeting is cut and the voicemail left instead."""
    callee = Callee("machine", greeting=tone(300, 6000, 8000, amplitude=0.3))
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=4000) as sim, \
            TwilioRestServer(callees={CALLEE: callee}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        response = await dial(server, params={"name": "Ada"}, machine_detection="leave_message",
                              voicemail_message=VOICEMAIL)
        call_id = response.json()["call_id"]
        call = await answered(twilio)
        machine = call.caller
        await machine.wait_closed(30)
        detail = await record(server, call_id)
    said = [i or "" for i in sim.response_instructions]
    assert len(said) == 2 and "Hello Ada" in said[0] and VOICEMAIL in said[1]
    assert machine.first_audio_at < call.greeting_done_at  # the hold ran out first
    assert machine.clears, "the greeting to the machine was not cut"
    assert detail.end_reason == "voicemail_left"
    kinds = [e.kind for e in detail.events]
    assert kinds.count("answering_machine") == 2  # none within the hold, then the machine


async def test_the_call_a_number_form_places_the_call_and_opens_its_page(tmp_path):
    import re

    async with OpenAIRealtimeServer() as sim, \
            TwilioRestServer(callees={CALLEE: Callee("busy")}) as twilio, \
            outbound_platform(tmp_path, sim, twilio) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            page = await client.get("/agents/reminders")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            placed = await client.post("/agents/reminders/dial", data={
                "csrf_token": token, "to": CALLEE, "params": "name=Ada",
                "machine_detection": "hangup"})
            assert placed.status_code == 303, placed.text
            call_id = placed.headers["location"].removeprefix("/calls/")
            detail = await record(server, call_id)
            shown = await client.get(placed.headers["location"])
    assert shown.status_code == 200 and call_id in shown.text
    assert (detail.end_reason, detail.parameters, detail.machine_detection) == (
        "busy", {"name": "Ada"}, "hangup")
    call = next(iter(twilio.calls.values()))
    assert call.field("To") == CALLEE


async def test_a_call_still_ringing_when_the_server_stops_is_canceled_and_recorded_server_shutdown(
        tmp_path):
    from agentplatform.storage.database import make_engine

    async with OpenAIRealtimeServer() as sim, \
            TwilioRestServer(callees={CALLEE: Callee("human", ring_seconds=30)}) as twilio:
        async with outbound_platform(tmp_path, sim, twilio) as server:
            call_id = (await dial(server)).json()["call_id"]
            call = await twilio.wait_for_call()
            async with asyncio.timeout(5):
                while "ringing" not in call.statuses():
                    await asyncio.sleep(0.02)
        engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
        detail = queries.get_call(engine, call_id)
        engine.dispose()
    assert {"Status": "canceled"} in call.updates and call.status == "canceled"
    assert call.caller is None and not sim.sessions
    assert (detail.end_reason, detail.status) == ("server_shutdown", "ended")
    assert "stopped while the call rang" in detail.end_detail
