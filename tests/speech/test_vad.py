"""Silero VAD turn-taking, on real speech, measured in stream time."""

from __future__ import annotations

import pytest

from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from agentplatform.audio.frames import noise, rms_dbfs, silence, split_frames
from agentplatform.speech.vad import WINDOW_MS, SileroVad, SpeechEnd, SpeechPause, SpeechStart
from agentplatform.testing.speech_fixtures import spoken

from .conftest import SENTENCE

RATE = 16000
LEAD_MS = 1000


def feed(vad: SileroVad, pcm: bytes, rate: int = RATE, ms: int = 20,
         pauses: bool = False) -> list:
    """The turn edges the detector reports; its pause hints too when ``pauses``."""
    events: list = []
    for frame in split_frames(pcm, rate, ms):
        events += vad.process(frame)
    return events if pauses else [e for e in events if not isinstance(e, SpeechPause)]


def last_loud_ms(pcm: bytes, rate: int = RATE) -> float:
    """Stream time at the end of the last 10 ms frame above −45 dBFS."""
    loud = [i for i, f in enumerate(split_frames(pcm, rate, 10)) if rms_dbfs(f) > -45.0]
    return (loud[-1] + 1) * 10.0


@pytest.fixture(scope="module")
def speech() -> bytes:
    return spoken(SENTENCE, RATE)


@pytest.fixture(scope="module")
def stream(speech: bytes) -> bytes:
    return silence(LEAD_MS, RATE) + speech + silence(1500, RATE)


def test_silence_and_faint_noise_are_not_speech():
    vad = SileroVad()
    assert feed(vad, silence(2000, RATE) + noise(2000, RATE, level_dbfs=-55.0)) == []
    assert not vad.speaking


def test_a_sentence_is_one_start_then_one_end(stream: bytes):
    vad = SileroVad()
    events = feed(vad, stream)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    start, end = events
    assert LEAD_MS - 100 <= start.at_ms <= LEAD_MS + 500  # the sentence starts at 1 s
    assert end.at_ms > start.at_ms + 3000  # ...and lasts about four seconds
    assert not vad.speaking


def test_end_comes_silence_duration_after_speech_stops(stream: bytes):
    stopped = last_loud_ms(stream)
    ends = {}
    for silence_ms in (300, 800):
        events = feed(SileroVad(silence_duration_ms=silence_ms), stream)
        ends[silence_ms] = events[-1].at_ms
        lag = events[-1].at_ms - stopped
        # The model hears the end within a few windows; the hangover is then counted.
        assert silence_ms <= lag <= silence_ms + 4 * WINDOW_MS, (silence_ms, lag)
    assert ends[800] - ends[300] == pytest.approx(500, abs=WINDOW_MS)


def test_utterance_audio_starts_prefix_padding_before_the_speech(stream: bytes):
    padded = feed(SileroVad(prefix_padding_ms=300), stream)
    bare = feed(SileroVad(prefix_padding_ms=0), stream)
    start, end = padded
    assert bare[0].at_ms == start.at_ms
    assert len(end.audio) - len(bare[1].audio) == 300 * RATE // 1000 * 2
    first = int((start.at_ms - 300) * RATE / 1000) * 2
    assert end.audio == stream[first:first + len(end.audio)]
    assert end.speech_ms <= len(end.audio) / 2 / RATE * 1000 - 300


def test_a_click_shorter_than_min_speech_is_not_speech():
    yes = spoken("Yes.", RATE)
    click = silence(1000, RATE) + yes[1920:1920 + 64 * 32] + silence(1000, RATE)
    assert feed(SileroVad(min_speech_ms=150), click) == []
    # The same sound counts when no minimum applies: the model does hear it.
    assert [type(e) for e in feed(SileroVad(min_speech_ms=0), click)] == [SpeechStart, SpeechEnd]


def test_threshold_is_respected(stream: bytes):
    probe = SileroVad()
    peak = 0.0
    for frame in split_frames(stream, RATE):
        probe.process(frame)
        peak = max(peak, probe.probability)
    assert feed(SileroVad(threshold=min(peak + 0.003, 0.999)), stream) == []
    assert len(feed(SileroVad(threshold=peak - 0.05), stream)) == 2


def test_phone_audio_at_8k_is_resampled_and_detected():
    phone = ulaw_to_pcm16(pcm16_to_ulaw(silence(LEAD_MS, 8000) + spoken(SENTENCE, 8000)
                                        + silence(1500, 8000)))
    events = feed(SileroVad(rate=8000), phone, rate=8000)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert len(events[1].audio) / 2 / 16000 > 3.0  # the utterance comes out at 16 kHz


def test_chunk_size_does_not_change_the_events(stream: bytes):
    small = feed(SileroVad(), stream, ms=10)
    large = feed(SileroVad(), stream, ms=250)
    assert [(type(e), e.at_ms) for e in small] == [(type(e), e.at_ms) for e in large]
    assert small[1].audio == large[1].audio


def test_reset_restarts_the_clock_and_forgets_a_turn(stream: bytes):
    vad = SileroVad()
    half = len(stream) // 2 & ~1
    assert [type(e) for e in feed(vad, stream[:half])] == [SpeechStart]
    vad.reset()
    assert not vad.speaking
    events = feed(vad, stream)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[0].at_ms < 2 * LEAD_MS


@pytest.mark.parametrize("kwargs", [{"threshold": 0.0}, {"threshold": 1.0},
                                    {"silence_duration_ms": -1}, {"rate": 0}])
def test_bad_settings_are_refused(kwargs: dict):
    with pytest.raises(ValueError):
        SileroVad(**kwargs)


def test_odd_byte_audio_is_refused():
    with pytest.raises(ValueError, match="even number"):
        SileroVad().process(b"\x00\x01\x02")


def test_a_pause_hint_carries_the_audio_the_end_will_carry(stream: bytes):
    events = feed(SileroVad(silence_duration_ms=500), stream, pauses=True)
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStart and kinds[-1] is SpeechEnd
    pauses = [e for e in events if isinstance(e, SpeechPause)]
    # The hint comes during the hangover, before the end, with the same bytes.
    assert pauses and pauses[-1].at_ms < events[-1].at_ms
    assert pauses[-1].audio == events[-1].audio


def _until_pause(vad: SileroVad, speech: bytes) -> SpeechPause:
    """Feed speech then quiet, 20 ms at a time, until the pause hint."""
    for frame in split_frames(silence(LEAD_MS, RATE) + speech + silence(1500, RATE), RATE, 20):
        for event in vad.process(frame):
            if isinstance(event, SpeechPause):
                return event
            assert not isinstance(event, SpeechEnd), "ended before any pause hint"
    raise AssertionError("no pause hint")


def test_a_pause_judged_complete_ends_the_turn_at_once_with_the_hint_audio(speech: bytes):
    vad = SileroVad(silence_duration_ms=800)
    pause = _until_pause(vad, speech)
    end = vad.end_pause_after(pause.at_ms, 50)
    assert isinstance(end, SpeechEnd)
    assert end.audio == pause.audio
    assert not vad.speaking


def test_a_pause_judged_unfinished_outlasts_the_usual_silence(speech: bytes):
    vad = SileroVad(silence_duration_ms=300)
    pause = _until_pause(vad, speech)
    assert vad.end_pause_after(pause.at_ms, 900) is None
    ends = feed(vad, silence(600, RATE))  # past the 300 ms the detector would wait
    assert ends == [] and vad.speaking
    ends = feed(vad, silence(400, RATE))
    assert [type(e) for e in ends] == [SpeechEnd]


def test_a_verdict_on_a_pause_the_caller_spoke_past_changes_nothing(speech: bytes):
    vad = SileroVad(silence_duration_ms=400)
    pause = _until_pause(vad, speech)
    feed(vad, speech[: RATE * 2])  # the caller goes on talking
    assert vad.end_pause_after(pause.at_ms, 0) is None
    assert vad.speaking
    events = feed(vad, silence(1000, RATE))
    assert [type(e) for e in events] == [SpeechEnd]
