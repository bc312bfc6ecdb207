import pytest

from agentplatform.audio.frames import noise, silence, split_frames, tone
from agentplatform.audio.vad import EnergyVad

RATE = 8000


def run(vad: EnergyVad, pcm: bytes) -> list[tuple[int, str]]:
    """(frame start in ms, event) for every edge the VAD reports."""
    events = []
    for index, frame in enumerate(split_frames(pcm, RATE)):
        event = vad.process(frame)
        if event is not None:
            events.append((index * 20, event))
    return events


def test_a_tone_burst_starts_after_start_ms_and_stops_after_stop_ms():
    pcm = silence(200, RATE) + tone(440, 1000, RATE, 0.3) + silence(1000, RATE)
    events = run(EnergyVad(RATE, threshold_dbfs=-40, start_ms=60, stop_ms=500), pcm)
    # Loud frames begin at 200 ms; the third one (at 240 ms) completes 60 ms.
    # Quiet frames begin at 1200 ms; the 25th (at 1680 ms) completes 500 ms.
    assert events == [(240, "start"), (1680, "stop")]


def test_silence_and_low_noise_raise_no_events():
    vad = EnergyVad(RATE, threshold_dbfs=-40)
    assert run(vad, silence(1000, RATE) + noise(2000, RATE, level_dbfs=-55.0)) == []
    assert not vad.speaking


def test_a_click_shorter_than_start_ms_is_ignored():
    pcm = silence(100, RATE) + tone(440, 40, RATE, 0.5) + silence(500, RATE)
    assert run(EnergyVad(RATE, start_ms=60), pcm) == []


def test_a_pause_shorter_than_stop_ms_keeps_the_turn_going():
    pcm = tone(440, 300, RATE, 0.3) + silence(300, RATE) + tone(440, 300, RATE, 0.3)
    vad = EnergyVad(RATE, start_ms=60, stop_ms=500)
    assert [event for _, event in run(vad, pcm)] == ["start"]
    assert vad.speaking


def test_reset_returns_to_silence():
    vad = EnergyVad(RATE, start_ms=20)
    assert vad.process(tone(440, 20, RATE, 0.3)) == "start"
    vad.reset()
    assert not vad.speaking
    assert vad.process(silence(20, RATE)) is None


def test_empty_frame_is_ignored_and_odd_frame_rejected():
    vad = EnergyVad(RATE)
    assert vad.process(b"") is None
    with pytest.raises(ValueError):
        vad.process(b"\x00\x00\x00")
