"""Reading what a SIP caller heard: jitter and barge-in on the caller's clock."""

from __future__ import annotations

import audioop

from agentplatform.audio.frames import tone
from agentplatform.testing.sip_caller import ReceivedRtp
from agentplatform.testing.sip_listening import barge_in_ms, is_voiced, jitter_ms
from agentplatform.testing.sip_wire import RtpPacket

VOICE = audioop.lin2ulaw(tone(440, 20, 8000, amplitude=0.4), 2)
QUIET = audioop.lin2ulaw(b"\0\0" * 160, 2)
SOURCE = ("127.0.0.1", 20000)


def _packets(arrivals: list[tuple[float, bytes]], ssrc: int = 7) -> list[ReceivedRtp]:
    return [ReceivedRtp(at, SOURCE, RtpPacket(0, n, n * 160, ssrc, payload))
            for n, (at, payload) in enumerate(arrivals)]


def test_jitter_is_each_inter_arrival_off_the_packet_duration() -> None:
    received = _packets([(0.000, VOICE), (0.020, VOICE), (0.045, VOICE), (0.060, QUIET)])
    assert [round(j, 6) for j in jitter_ms(received)] == [0.0, 5.0, 5.0]


def test_jitter_skips_pairs_across_a_lost_packet_or_a_new_stream() -> None:
    received = _packets([(0.0, VOICE), (0.02, VOICE)]) + _packets([(0.5, VOICE)], ssrc=8)
    lost = [received[0], ReceivedRtp(0.06, SOURCE, RtpPacket(0, 3, 480, 7, VOICE))]
    assert len(jitter_ms(received)) == 1
    assert jitter_ms(lost) == []


def test_barge_in_runs_to_the_agents_last_voiced_packet_before_the_line_goes_quiet() -> None:
    received = _packets([(1.00, VOICE), (1.02, VOICE), (1.04, VOICE), (1.06, QUIET), (1.08, QUIET),
                         (2.00, VOICE)])  # the answer to what the caller said
    assert round(barge_in_ms(received, spoke_at=1.01) or 0.0, 6) == 30.0


def test_barge_in_is_none_when_the_agent_was_not_speaking() -> None:
    received = _packets([(1.00, QUIET), (1.02, QUIET), (1.04, VOICE)])
    assert barge_in_ms(received, spoke_at=1.03) is None


def test_silence_and_dtmf_are_not_voiced() -> None:
    assert is_voiced(_packets([(0.0, VOICE)])[0])
    assert not is_voiced(_packets([(0.0, QUIET)])[0])
    assert not is_voiced(ReceivedRtp(0.0, SOURCE, RtpPacket(101, 0, 0, 7, VOICE)))
