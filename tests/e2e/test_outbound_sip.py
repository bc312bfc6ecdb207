"""Outbound calls over the SIP trunk end to end: POST /api/calls → our INVITE → a
simulated callee (``testing/sip_callee.py``, its own SIP code) that rings, answers
and speaks a real greeting rendered by the local TTS → the local answering-machine
detector → the agent on the OpenAI Realtime simulator, over real UDP/RTP."""

from __future__ import annotations

import asyncio
import audioop
import contextlib
from collections.abc import AsyncIterator

import httpx
import numpy as np

from agentplatform.testing.baresip_peer import BaresipPeer, wav_bytes
from agentplatform.audio.frames import tone
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
from agentplatform.testing.sip_callee import SipCallee
from agentplatform.testing.sipp_peer import SippPeer, free_udp_port
from agentplatform.testing.speech_fixtures import spoken

from tests.carriers.sip.test_sipp_scenarios import UAC as SIPP_SCENARIOS
from tests.sip_peers import require_program

from .test_outbound_twilio import AGENT_YAML, VOICEMAIL, record

CALLEE = "15555550142"
SPEECH = tone(440, 1200, 8000, amplitude=0.4)
IVR_AGENT_YAML = AGENT_YAML + "  - type: send_dtmf\n"
MACHINE_GREETING = ("Hi, you've reached Sarah. I can't come to the phone right now, "
                    "please leave a message after the tone.")


def beep(ms: int = 400, hz: float = 1000.0) -> bytes:
    t = np.arange(ms * 8) / 8000
    return (9000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


@contextlib.asynccontextmanager
async def sip_platform(tmp_path, sim: OpenAIRealtimeServer, callee: SipCallee | str,
                       **extra: object) -> AsyncIterator:
    from agentplatform.testing.stack import local_server, simulated_settings

    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "reminders.yaml").write_text(IVR_AGENT_YAML)
    rtp = free_udp_port(even=True, span=40)
    settings = simulated_settings(
        agents_dir=agents, database_url=f"sqlite:///{tmp_path / 'calls.db'}", openai_url=sim.url,
        sip_listen=f"127.0.0.1:{free_udp_port()}", sip_rtp_ports=f"{rtp}-{rtp + 39}",
        sip_allowed_peers="",  # the callee's BYE is taken because we dialed it
        sip_outbound_uri=f"sip:{{number}}@{callee if isinstance(callee, str) else callee.address}",
        sip_from_number="15555550100", **extra)
    async with local_server(settings) as server:
        yield server


async def dial(server, **body) -> httpx.Response:
    payload = {"agent": "reminders", "to": CALLEE, "carrier": "sip", **body}
    async with httpx.AsyncClient() as client:
        return await client.post(server.base_url + "/api/calls", json=payload)


async def test_a_placed_sip_call_to_a_person_reaches_the_greeting_after_the_human_verdict(tmp_path):
    hello = spoken("Hello?")
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800) as sim, \
            SipCallee(greeting=hello, ring_ms=300) as callee, \
            sip_platform(tmp_path, sim, callee) as server:
        response = await dial(server, params={"name": "Ada"}, machine_detection="hangup")
        assert response.status_code == 202, response.text
        call_id = response.json()["call_id"]
        await callee.wait_answered(5)
        await callee.wait_for_audio(10)  # the agent's greeting
        assert callee.first_audio_at is not None and callee.greeting_done_at is not None
        # Not a word over the callee's "Hello?": the greeting came after it.
        assert callee.first_audio_at > callee.greeting_done_at
        live = await record(server, call_id, ended=False)
        assert live.carrier_call_id == callee.invites[0].get("call-id")
        await asyncio.sleep(2.0)
        await callee.hang_up()
        detail = await record(server, call_id)
    heard = callee.heard_pcm()
    voiced = sum(audioop.rms(heard[i:i + 320], 2) > 300 for i in range(0, len(heard), 320))
    assert voiced * 20 >= 500, "the callee heard no greeting"
    assert (detail.direction, detail.carrier, detail.end_reason) == ("outbound", "sip", "caller_hung_up")
    assert detail.carrier_call_id == callee.invites[0].get("call-id")
    assert detail.to_number == CALLEE
    verdicts = [e.detail for e in detail.events if e.kind == "answering_machine"]
    assert [v["verdict"] for v in verdicts] == ["human"]
    assert any("Hello Ada, this is the clinic" in (i or "") for i in sim.response_instructions)
    assert callee.protocol_errors == []


async def test_a_machine_with_leave_message_gets_the_voicemail_after_its_beep(tmp_path):
    greeting = spoken(MACHINE_GREETING) + bytes(6400) + beep()
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=1500) as sim, \
            SipCallee(greeting=greeting, ring_ms=300) as callee, \
            sip_platform(tmp_path, sim, callee) as server:
        response = await dial(server, machine_detection="leave_message", voicemail_message=VOICEMAIL)
        assert response.status_code == 202, response.text
        call_id = response.json()["call_id"]
        await callee.wait_answered(5)
        async with asyncio.timeout(30):
            await callee.bye_received.wait()  # we hang up once the message has played
        detail = await record(server, call_id)
    # The machine heard nothing during its greeting and beep, then the message.
    assert callee.first_audio_at is not None and callee.greeting_done_at is not None
    assert callee.first_audio_at > callee.greeting_done_at
    heard = callee.heard_pcm()
    voiced = sum(audioop.rms(heard[i:i + 320], 2) > 300 for i in range(0, len(heard), 320))
    assert voiced * 20 >= 1400, voiced
    assert detail.end_reason == "voicemail_left", (detail.end_reason, detail.end_detail)
    verdicts = [(e.detail["verdict"], e.detail["greeting_ended"]) for e in detail.events
                if e.kind == "answering_machine"]
    assert verdicts[0] == ("machine", False) and ("machine", True) in verdicts
    said = [i or "" for i in sim.response_instructions]
    assert len(said) == 1 and VOICEMAIL in said[0]


async def test_a_busy_sip_callee_closes_the_record_busy_with_no_model_session(tmp_path):
    async with OpenAIRealtimeServer() as sim, SipCallee(answer="busy") as callee, \
            sip_platform(tmp_path, sim, callee) as server:
        response = await dial(server)
        assert response.status_code == 202, response.text
        detail = await record(server, response.json()["call_id"])
    assert (detail.end_reason, detail.carrier) == ("busy", "sip")
    assert detail.carrier_call_id == callee.invites[0].get("call-id")
    assert not sim.sessions


async def test_a_trunk_asking_for_credentials_gets_them_and_the_call_connects(tmp_path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800) as sim, \
            SipCallee(challenge=407, username="acct", password="pw", greeting=spoken("Hello?")) as callee, \
            sip_platform(tmp_path, sim, callee, sip_username="acct", sip_password="pw") as server:
        response = await dial(server)
        call_id = response.json()["call_id"]
        await callee.wait_answered(5)
        await callee.wait_for_audio(10)
        await callee.hang_up()
        detail = await record(server, call_id)
    assert len(callee.invites) == 2 and callee.auth_failures == []
    assert detail.end_reason == "caller_hung_up"


async def test_baresip_as_the_callee_answers_and_hears_the_agent_greeting(tmp_path):
    require_program("baresip")
    # baresip's microphone: it answers with "Hello?", then listens; it hangs up at the WAV's end.
    microphone = wav_bytes(bytes(4000) + spoken("Hello?") + bytes(16000 * 7))
    peer = BaresipPeer(microphone=microphone, user=CALLEE)  # it answers only its own user
    try:
        async with OpenAIRealtimeServer(pace=1.0, reply_ms=800) as sim, \
                sip_platform(tmp_path, sim, f"{peer.host}:{peer.port}") as server:
            answering = asyncio.ensure_future(peer.answer(seconds=14))
            await asyncio.sleep(1.0)  # baresip is listening
            response = await dial(server, params={"name": "Ada"}, machine_detection="hangup")
            assert response.status_code == 202, response.text
            detail = await record(server, response.json()["call_id"], timeout=20)
            result = await answering
    finally:
        peer.close()
    assert "Call established" in result.log, result.log[-2000:]
    heard = result.heard_pcm()
    voiced = sum(audioop.rms(heard[i:i + 320], 2) > 300 for i in range(0, len(heard), 320))
    assert voiced * 20 >= 500, "baresip heard no greeting"
    assert (detail.carrier, detail.direction, detail.end_reason) == ("sip", "outbound", "caller_hung_up")
    verdicts = [e.detail["verdict"] for e in detail.events if e.kind == "answering_machine"]
    assert verdicts == ["human"]


async def _greeted(callee: SipCallee) -> None:
    """The callee said hello, the agent greeted it, and the greeting is over."""
    await callee.wait_answered(5)
    await callee.wait_for_audio(10)
    await asyncio.sleep(3.5)


async def test_the_agent_presses_keys_on_a_placed_sip_call_and_the_callee_hears_rfc4733(tmp_path):
    rules = [ToolRule(contains="press one", name="send_dtmf", arguments='{"digits": "1w2#"}')]
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, tool_rules=rules,
                                    caller_texts=["For billing press one"]) as sim, \
            SipCallee(greeting=spoken("Hello?")) as callee, \
            sip_platform(tmp_path, sim, callee) as server:
        response = await dial(server, params={"name": "Ada"})
        call_id = response.json()["call_id"]
        await _greeted(callee)
        callee.say(SPEECH)
        async with asyncio.timeout(15):
            while callee.digits_heard() != "12#":
                await asyncio.sleep(0.05)
        await callee.hang_up()
        detail = await record(server, call_id)
    events = [e for e in callee.dtmf if e.digit == "1"]
    assert events[0].marker and len({e.timestamp for e in events}) == 1
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert [(t.name, t.ok) for t in detail.tools] == [("send_dtmf", True)]


async def test_transfer_on_a_placed_sip_call_refers_the_callee_and_records_the_target(tmp_path):
    rules = [ToolRule(contains="reception", name="transfer_call", arguments='{"destination": "reception"}')]
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, tool_rules=rules,
                                    caller_texts=["Put me through to reception"]) as sim, \
            SipCallee(greeting=spoken("Hello?")) as callee, \
            sip_platform(tmp_path, sim, callee) as server:
        response = await dial(server, params={"name": "Ada"})
        call_id = response.json()["call_id"]
        await _greeted(callee)
        callee.say(SPEECH)
        async with asyncio.timeout(20):
            await callee.bye_received.wait()  # after the NOTIFY 200, our BYE
        detail = await record(server, call_id)
    assert callee.refer_to == [f"sip:+15555550199@{callee.address}"]
    assert detail.end_reason == "transferred" and "reception" in detail.end_detail
    assert [t.name for t in detail.tools] == ["transfer_call"]


async def test_sipp_as_an_answering_machine_gets_the_voicemail_and_our_bye(tmp_path):
    require_program("sipp")
    greeting = audioop.lin2ulaw(spoken(MACHINE_GREETING) + bytes(6400) + beep(), 2)
    sipp = SippPeer(["-sf", str(SIPP_SCENARIOS / "uas_voicemail.xml")], timeout=30,
                    files={"greeting.ulaw": greeting})
    async with sipp, OpenAIRealtimeServer(pace=1.0, reply_ms=1500) as sim, \
            sip_platform(tmp_path, sim, sipp.address) as server:
        response = await dial(server, machine_detection="leave_message", voicemail_message=VOICEMAIL)
        assert response.status_code == 202, response.text
        detail = await record(server, response.json()["call_id"], timeout=30)
        result = await sipp.wait()
    assert result.ok, result.errors or result.output[-2000:]  # sipp got our ACK, then our BYE
    assert (detail.end_reason, detail.carrier) == ("voicemail_left", "sip")
    said = [i or "" for i in sim.response_instructions]
    assert len(said) == 1 and VOICEMAIL in said[0]


async def test_a_busy_sipp_callee_closes_the_record_busy(tmp_path):
    require_program("sipp")
    sipp = SippPeer(["-sf", str(SIPP_SCENARIOS / "uas_busy.xml")])
    async with sipp, OpenAIRealtimeServer() as sim, sip_platform(tmp_path, sim, sipp.address) as server:
        response = await dial(server)
        detail = await record(server, response.json()["call_id"])
        result = await sipp.wait()
    assert result.ok, result.errors or result.output[-2000:]  # our ACK for the 486 arrived
    assert detail.end_reason == "busy" and not sim.sessions
