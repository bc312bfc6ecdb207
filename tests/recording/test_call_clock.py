"""The bridge side of a recording: the inbound clock it stamps every note with."""

from __future__ import annotations

from agentplatform.carriers.base import InboundAudio
from agentplatform.recording.call import CallRecording

MS = 8


def _recording(mark_lead_ms: float = 0.0):
    notes: list[tuple] = []
    clock = [100.0]
    rec = CallRecording("c", lambda _r, note: notes.append(note), clock=lambda: clock[0],
                        mark_lead_ms=mark_lead_ms)
    return rec, notes, clock


def test_now_is_the_inbound_clock_carried_by_the_least_delayed_frame():
    rec, notes, clock = _recording()
    rec.caller_audio(InboundAudio(b"\xff" * 160, 0, received_at=100.030))  # 30 ms on the way
    rec.caller_audio(InboundAudio(b"\xff" * 160, 20, received_at=100.040))  # 20 ms: the least
    rec.caller_audio(InboundAudio(b"\xff" * 160, 40, received_at=100.075))  # 35 ms: late
    clock[0] = 100.500
    assert rec.now() == 480 * MS


def test_repeated_frames_are_dropped_and_a_restarted_clock_continues_the_recording():
    rec, notes, _ = _recording()
    rec.caller_audio(InboundAudio(b"\x01" * 160, 5000, received_at=105.0))
    rec.caller_audio(InboundAudio(b"\x02" * 160, 5000, received_at=105.0))  # the same frame
    rec.caller_audio(InboundAudio(b"\x03" * 160, 0, received_at=105.02))  # a new RTP stream
    assert [(n[0], n[1]) for n in notes] == [("caller", 5000 * MS), ("caller", 5020 * MS)]


def test_a_carrier_that_reports_marks_a_frame_early_has_them_placed_a_frame_later():
    early, notes, clock = _recording(mark_lead_ms=20)
    early.caller_audio(InboundAudio(b"\xff" * 160, 0, received_at=100.0))
    clock[0] = 100.5
    early.agent_played("m")
    assert notes[-1] == ("played", "m", 520 * MS)
