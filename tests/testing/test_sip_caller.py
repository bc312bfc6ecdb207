"""The SIP caller simulator, proven against sipp before it referees our own server.

sipp is an independent SIP stack: if it completes its scenario (exit 0) the caller's
INVITE, ACK, CANCEL, BYE, 202 and NOTIFY read right to a second implementation.
With ``-rtp_echo`` sipp sends our RTP back unchanged, so the stream we recorded is
the stream we sent: its RFC 3550 continuity and its audio are checked byte for byte.
The RFC 4733 reader is checked on the DTMF captures Debian ships with sipp.
"""

from __future__ import annotations

import asyncio
import audioop
import struct
from pathlib import Path

import pytest

from agentplatform.testing import sip_wire as sip
from agentplatform.testing.sip_caller import CallState, SipCaller
from agentplatform.testing.sipp_peer import SippPeer, free_udp_port
from agentplatform.testing.speech_fixtures import spoken_ulaw
from tests.sip_peers import require_program

SCENARIOS = Path(__file__).parent / "sipp"
SIPP_CAPTURES = Path("/usr/share/sip-tester")


@pytest.fixture(autouse=True)
def _sipp() -> None:
    require_program("sipp")


def _scenario(name: str) -> list[str]:
    return ["-sf", str(SCENARIOS / name)]


def _echo(codec: str = "PCMU", dtmf: int = 101) -> list[str]:
    """Our UAS answering ``codec``, echoing RTP, requiring the ACK, no linger after BYE."""
    pt = {"PCMU": "0", "PCMA": "8"}[codec]
    return [*_scenario("uas_answer_echo.xml"), "-rtp_echo", "-key", "pt", pt, "-key", "codec", codec,
            "-key", "dtmf", str(dtmf)]


async def test_call_to_sipp_answers_and_the_echoed_speech_comes_back_intact() -> None:
    speech = spoken_ulaw("Hello, I would like to book a table for two.")
    async with SippPeer(_echo()) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        assert await caller.dial(timeout=5)
        assert caller.codec == "PCMU" and caller.answer is not None and caller.answer.port == uas.media_port
        await caller.say_ulaw(speech)
        await asyncio.sleep(0.3)  # the echo of the last packets is on its way back
        await caller.hang_up()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.bye_status == 200
    assert audioop.ulaw2lin(speech, 2) in caller.heard_pcm()  # μ-law has two codes for zero
    assert caller.rtp_faults(continuous=True) == []
    assert caller.received[0].packet.marker and caller.received[0].source == ("127.0.0.1", uas.media_port)
    assert caller.protocol_errors == []


async def test_rtp_is_paced_at_one_packet_per_20_ms() -> None:
    async with SippPeer(_echo()) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        assert await caller.dial(timeout=5)
        await asyncio.sleep(1.0)
        await caller.hang_up()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    # The caller's clock is absolute: about 50 packets a second, never a burst.
    assert 40 <= len(caller.received) <= 55, len(caller.received)


async def test_a_lost_ack_is_sent_again_for_the_retransmitted_200() -> None:
    async with SippPeer(_echo()) as uas:  # the ACK is required: sipp fails the call without it
        caller = SipCaller(uas.address, to="+15550100", lose_sip={"ACK": 1})
        assert await caller.dial(timeout=5)
        while caller.oks_received < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        await caller.hang_up()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.oks_received >= 2 and caller.bye_status == 200


async def test_invite_is_retransmitted_on_timer_a_until_the_server_answers() -> None:
    port = free_udp_port()
    caller = SipCaller(f"127.0.0.1:{port}", to="+15550100", t1=0.1)
    dialing = asyncio.create_task(caller.dial(timeout=8))
    await asyncio.sleep(0.35)  # INVITEs at 0, 0.1 and 0.3 s go nowhere
    async with SippPeer(_echo(), port=port) as uas:
        assert await dialing
        await caller.hang_up()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.invites_sent >= 3


async def test_cancel_while_ringing_ends_the_call_with_487() -> None:
    async with SippPeer(_scenario("uas_trying_then_cancel.xml")) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        dialing = asyncio.create_task(caller.dial(timeout=5))
        assert await caller.cancel() == 487
        assert not await dialing
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.state is CallState.ENDED


async def test_a_refused_call_is_acked_on_the_invite_branch() -> None:
    async with SippPeer(_scenario("uas_reject_404.xml")) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        assert not await caller.dial(timeout=5)
        await caller.close()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.final_status == 404


async def test_bye_from_the_server_is_answered_and_ends_the_call() -> None:
    async with SippPeer(_scenario("uas_answer_then_bye.xml")) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        assert await caller.dial(timeout=5)
        assert await caller.wait_closed(timeout=5)
        await caller.close()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert [r.method for r in caller.requests_received] == ["BYE"]


async def test_refer_gets_202_and_notify_100_then_200() -> None:
    async with SippPeer([*_scenario("uas_answer_then_refer.xml"), "-key", "refer_target", "127.0.0.1:5999"]) as uas:
        caller = SipCaller(uas.address, to="+15550100")
        assert await caller.dial(timeout=5)
        assert await caller.wait_closed(timeout=6)
        await caller.close()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.refers == ["sip:+15550199@127.0.0.1:5999"]


async def test_dtmf_goes_out_as_one_rfc_4733_event_with_three_end_packets() -> None:
    async with SippPeer(_echo(dtmf=96)) as uas:
        caller = SipCaller(uas.address, to="+15550100", dtmf_payload_type=96)
        assert await caller.dial(timeout=5)
        await caller.send_dtmf("7", duration_ms=100)
        assert await caller.wait_for_dtmf(1, timeout=2) == ["7"]
        await asyncio.sleep(0.1)
        await caller.hang_up()
    events = [r.packet for r in caller.received if r.packet.payload_type == 96]
    decoded = [sip.parse_dtmf(p.payload) for p in events]
    assert [d[1] for d in decoded] == [False] * 5 + [True] * 3
    assert [d[2] for d in decoded] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert len({p.timestamp for p in events}) == 1 and [p.marker for p in events] == [True] + [False] * 7
    assert caller.rtp_faults(continuous=True) == []  # the audio around the event stayed continuous


async def test_pcma_answer_is_sent_and_decoded_as_a_law() -> None:
    tone = b"".join(struct.pack("<h", (i % 40 - 20) * 400) for i in range(1600))
    async with SippPeer(_echo("PCMA")) as uas:
        caller = SipCaller(uas.address, to="+15550100", codecs=("PCMU", "PCMA"))
        assert await caller.dial(timeout=5)
        await caller.say(tone)
        await caller.wait_for_silence(100, timeout=3)
        await caller.hang_up()
    assert uas.result is not None and uas.result.ok, uas.result.errors
    assert caller.codec == "PCMA" and {r.packet.payload_type for r in caller.received} == {8}
    assert audioop.lin2alaw(tone, 2) in audioop.lin2alaw(caller.heard_pcm(), 2)
    assert caller.protocol_errors == []


async def test_an_answer_with_a_codec_we_did_not_offer_is_reported() -> None:
    async with SippPeer(_echo("PCMU")) as uas:  # answers PCMU whatever was offered
        caller = SipCaller(uas.address, to="+15550100", codecs=("PCMA",))
        assert await caller.dial(timeout=5)
        with pytest.raises(RuntimeError, match="none of our codecs"):
            await caller.say(b"\0\0")
        await caller.hang_up()
    assert "SDP answer has payload types we did not offer: [0]" in caller.protocol_errors


def _pcap_udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of a classic little-endian Ethernet/IPv4 pcap (what sipp ships)."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4
    payloads, offset = [], 24
    while offset + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16: offset + 16 + caplen]
        offset += 16 + caplen
        ip = frame[14:]
        if frame[12:14] == b"\x08\x00" and ip[9] == 17:
            payloads.append(ip[(ip[0] & 0x0F) * 4 + 8:])
    return payloads


@pytest.mark.parametrize(("capture", "digit"), [("dtmf_2833_1.pcap", "1"), ("dtmf_2833_pound.pcap", "#"),
                                                ("dtmf_2833_star.pcap", "*")])
def test_dtmf_reader_agrees_with_sipps_captures(capture: str, digit: str) -> None:
    path = SIPP_CAPTURES / capture
    if not path.exists():
        pytest.skip(f"{path} not shipped by this sipp")
    packets = [sip.parse_rtp(p) for p in _pcap_udp_payloads(path)]
    events = {sip.parse_dtmf(p.payload)[0] for p in packets if p.payload_type == 101}
    assert events == {digit}
    assert any(sip.parse_dtmf(p.payload)[1] for p in packets)


def test_alaw_capture_decodes_to_speech_level_audio() -> None:
    path = SIPP_CAPTURES / "g711a.pcap"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this sipp")
    packets = [sip.parse_rtp(p) for p in _pcap_udp_payloads(path)]
    assert {p.payload_type for p in packets} == {8} and {len(p.payload) for p in packets} == {240}
    pcm = audioop.alaw2lin(b"".join(p.payload for p in packets), 2)
    assert audioop.rms(pcm, 2) > 100
