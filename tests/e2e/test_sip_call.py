"""SIP trunk calls to an agent end to end: our SIP caller, sipp and baresip dial the
platform's SIP carrier over real UDP/RTP, bridged live to the OpenAI Realtime simulator.

Each peer is an independent SIP implementation (our caller is written from the RFCs
without the carrier's modules; sipp and baresip are Debian's), so a call that
completes here is one a trunk would complete. The simulator transcribes the caller
with fixed text, so "the transcript matches" is the record holding that text.
"""

from __future__ import annotations

import asyncio
import audioop

from agentplatform.audio.frames import tone
from agentplatform.storage import queries
from agentplatform.testing.baresip_peer import BaresipPeer, wav_bytes
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
from agentplatform.testing.sip_caller import SipCaller
from agentplatform.testing.sipp_peer import SippPeer, free_udp_port
from tests.carriers.sip.test_sipp_scenarios import UAC
from tests.sip_peers import require_program

from .conftest import AGENT_NUMBER, closed_call_record

SPEECH = tone(440, 1200, 8000, amplitude=0.4)
CALLER_TEXT = "Do you have a slot on Monday?"


def _sip_settings() -> dict[str, object]:
    port = free_udp_port()
    rtp = free_udp_port(even=True, span=40)
    return {"sip_listen": f"127.0.0.1:{port}", "sip_allowed_peers": "127.0.0.1/32",
            "sip_rtp_ports": f"{rtp}-{rtp + 39}"}


async def test_sip_caller_hears_greeting_then_an_answer_and_the_call_is_recorded(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800, caller_texts=[CALLER_TEXT]) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            async with SipCaller(sip["sip_listen"], to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                greeting = len(caller.heard_pcm())
                await caller.say(SPEECH)
                await caller.wait_for_audio(5, since=greeting)  # the answer
                await caller.wait_for_silence(300, 10)
                assert caller.rtp_faults() == []
                assert caller.protocol_errors == []
            assert caller.bye_status == 200
            await asyncio.sleep(0.3)  # the hang-up reaches the record asynchronously
            detail = await closed_call_record(server, platform.engine())
    assert len(caller.heard_pcm()) > greeting
    assert detail.carrier == "sip" and detail.carrier_call_id == caller.call_id
    assert detail.end_reason == "caller_hung_up"
    assert [t.role for t in detail.turns][:3] == ["assistant", "user", "assistant"]
    assert detail.turns[1].text == CALLER_TEXT


async def test_sipp_calls_the_agent_with_rtp_stream_audio(new_platform):
    require_program("sipp")
    # sipp sends RTP only while the file plays: silence under the greeting, the speech,
    # then silence long enough for the turn to end and the answer to come back.
    caller_audio = audioop.lin2ulaw(b"\0\0" * 20000 + SPEECH + b"\0\0" * 8000 * 3, 2)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800, caller_texts=[CALLER_TEXT]) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            sipp = SippPeer(["-sf", str(UAC / "uac_call_rtp_stream.xml"), "-s", AGENT_NUMBER, "-d", "7000"],
                            remote=str(sip["sip_listen"]), files={"caller.ulaw": caller_audio})
            async with sipp:
                result = await sipp.wait()
            await asyncio.sleep(0.3)  # the hang-up reaches the record asynchronously
            detail = await closed_call_record(server, platform.engine())
    assert result.ok, result.errors or result.output[-2000:]
    assert detail.carrier == "sip" and detail.end_reason == "caller_hung_up"
    assert [t.role for t in detail.turns][:3] == ["assistant", "user", "assistant"]
    assert detail.turns[1].text == CALLER_TEXT


async def test_baresip_calls_the_agent_and_hears_the_greeting_and_an_answer(new_platform):
    require_program("sipp")
    require_program("baresip")
    silence = b"\0\0" * 8000 * 2  # two seconds for the greeting, then the caller speaks
    microphone = wav_bytes(silence + SPEECH + b"\0\0" * 8000 * 4)  # baresip hangs up at its end
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800, caller_texts=[CALLER_TEXT]) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            peer = BaresipPeer(microphone=microphone)
            try:
                result = await peer.call(f"sip:{AGENT_NUMBER}@{sip['sip_listen']}", seconds=11)
            finally:
                peer.close()
            await asyncio.sleep(0.3)  # the hang-up reaches the record asynchronously
            detail = await closed_call_record(server, platform.engine())
    assert "Call established" in result.log, result.log[-2000:]
    heard = result.heard_pcm()
    voiced = [audioop.rms(heard[i:i + 320], 2) > 300 for i in range(0, len(heard), 320)]
    bursts = sum(1 for a, b in zip([False, *voiced], voiced, strict=False) if b and not a)
    assert bursts >= 2, "baresip did not hear a greeting and then an answer"
    assert detail.carrier == "sip" and detail.end_reason == "caller_hung_up", detail.end_reason
    assert [t.role for t in detail.turns][:3] == ["assistant", "user", "assistant"]
    assert detail.turns[1].text == CALLER_TEXT



async def _call_recorded(server, engine, timeout: float = 5.0) -> None:
    """Wait until the call has a record (it is written once the ACK arrives)."""
    async with asyncio.timeout(timeout):
        while True:
            await server.platform.writer.flush()
            if queries.list_calls(engine):
                return
            await asyncio.sleep(0.05)


def _sipp_uac(scenario: str, sip: dict[str, object], *, caller_audio: bytes = b"", pause_ms: int = 500,
              timeout: float = 12.0) -> SippPeer:
    return SippPeer(["-sf", str(UAC / scenario), "-s", AGENT_NUMBER, "-d", str(pause_ms)],
                    remote=str(sip["sip_listen"]), files={"caller.ulaw": caller_audio or b"\xff" * 160},
                    timeout=timeout)


async def test_sip_dtmf_reaches_the_model_once_per_press(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=300) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip):
            async with SipCaller(sip["sip_listen"], to=AGENT_NUMBER, dtmf_payload_type=96) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(200, 10)
                heard = len(caller.heard_pcm())
                await caller.send_dtmf("7")  # five packets, then the end packet three times
                await caller.wait_for_audio(5, since=heard)
    texts = [str(e["item"]) for e in sim.received if e["type"] == "conversation.item.create"]
    assert sum("pressed 7" in t for t in texts) == 1, texts


async def test_sip_barge_in_truncates_the_greeting_at_what_went_out(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=4000) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            async with SipCaller(sip["sip_listen"], to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await asyncio.sleep(1.0)  # about a second of the greeting...
                await caller.say(SPEECH)  # ...then the caller talks over it
                await caller.wait_for_silence(300, 10)
            await asyncio.sleep(0.3)
            detail = await closed_call_record(server, platform.engine())
    assert sim.truncates, "no conversation.item.truncate reached the model"
    item_id, audio_end_ms = sim.truncates[0]
    assert audio_end_ms <= sim.connections[0].item_audio_ms[item_id]
    assert 700 <= audio_end_ms <= 2000, audio_end_ms
    assert detail.turns[0].role == "assistant" and detail.turns[0].interrupted


async def test_sipp_options_gets_200(new_platform):
    require_program("sipp")
    async with OpenAIRealtimeServer() as sim:
        sip = _sip_settings()
        async with new_platform(sim).server(**sip):
            async with _sipp_uac("uac_options.xml", sip) as sipp:
                result = await sipp.wait()
    assert result.ok, result.errors or result.output[-2000:]


async def test_sipp_call_with_lost_invites_and_acks_completes(new_platform):
    require_program("sipp")
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=300) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            # Random loss: a run of lost INVITEs costs seconds of timer A (see the scenario).
            async with _sipp_uac("uac_retransmissions.xml", sip, pause_ms=3000,
                                 timeout=40.0) as sipp:
                result = await sipp.wait()
            await _call_recorded(server, platform.engine())
            detail = await closed_call_record(server, platform.engine())
    assert result.ok, result.errors or result.output[-2000:]
    assert detail.carrier == "sip" and detail.end_reason == "caller_hung_up"


async def test_sipp_cancel_before_the_answer_gets_487(new_platform):
    require_program("sipp")
    async with OpenAIRealtimeServer() as sim:
        sip = _sip_settings()
        async with new_platform(sim).server(**sip):
            async with _sipp_uac("uac_cancel.xml", sip) as sipp:
                result = await sipp.wait()
    assert result.ok, result.errors or result.output[-2000:]


async def test_agent_end_call_sends_bye_that_sipp_answers(new_platform):
    require_program("sipp")
    rules = [ToolRule(contains="bye", name="end_call", arguments="{}")]
    speech = audioop.lin2ulaw(b"\0\0" * 20000 + SPEECH + b"\0\0" * 8000 * 4, 2)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=500, tool_rules=rules, caller_texts=["Great, bye!"]) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            async with _sipp_uac("uac_wait_for_bye.xml", sip, caller_audio=speech) as sipp:
                result = await sipp.wait()
            detail = await closed_call_record(server, platform.engine())
    assert result.ok, result.errors or result.output[-2000:]
    assert detail.end_reason == "agent_ended"


async def test_agent_transfer_refers_sipp_which_notifies_200(new_platform):
    require_program("sipp")
    rules = [ToolRule(contains="someone", name="transfer_call", arguments='{"destination": "reception"}')]
    speech = audioop.lin2ulaw(b"\0\0" * 20000 + SPEECH + b"\0\0" * 8000 * 4, 2)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=500, tool_rules=rules,
                                    caller_texts=["Can I talk to someone?"]) as sim:
        platform = new_platform(sim)
        sip = _sip_settings()
        async with platform.server(**sip) as server:
            async with _sipp_uac("uac_answer_refer.xml", sip, caller_audio=speech) as sipp:
                result = await sipp.wait()
            detail = await closed_call_record(server, platform.engine())
    assert result.ok, result.errors or result.output[-2000:]
    assert detail.end_reason == "transferred"
    assert "reception" in detail.end_detail  # the record names the target
    assert [t.name for t in detail.tools] == ["transfer_call"]
