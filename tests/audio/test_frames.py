import math

import numpy as np
import pytest

from agentplatform.audio.frames import (
    FLOOR_DBFS,
    check_rate,
    duration_ms,
    frame_bytes,
    noise,
    rms_dbfs,
    silence,
    split_frames,
    tone,
)


def test_frame_bytes_of_a_20ms_frame_at_call_rates():
    assert [frame_bytes(rate) for rate in (8000, 16000, 24000)] == [320, 640, 960]


def test_tone_has_the_asked_length_frequency_and_level():
    pcm = tone(1000, 100, 8000, amplitude=0.25)
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    assert len(x) == 800
    assert duration_ms(pcm, 8000) == pytest.approx(100.0)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(len(x), 1 / 8000)[spectrum.argmax()] == pytest.approx(1000)
    # A sine reads 3 dB below its peak against a full-scale square wave.
    assert rms_dbfs(pcm) == pytest.approx(20 * math.log10(0.25) - 3.01, abs=0.05)


def test_silence_reads_the_floor_level():
    assert rms_dbfs(silence(20, 8000)) == FLOOR_DBFS
    assert rms_dbfs(b"") == FLOOR_DBFS
    assert silence(20, 8000) == bytes(320)


def test_noise_has_the_asked_level_and_repeats_with_its_seed():
    pcm = noise(500, 16000, level_dbfs=-30.0, seed=4)
    assert rms_dbfs(pcm) == pytest.approx(-30.0, abs=0.2)
    assert pcm == noise(500, 16000, level_dbfs=-30.0, seed=4)
    assert pcm != noise(500, 16000, level_dbfs=-30.0, seed=5)


def test_split_frames_cuts_20ms_frames_and_keeps_the_remainder():
    pcm = tone(440, 50, 8000)
    sizes = [len(frame) for frame in split_frames(pcm, 8000)]
    assert sizes == [320, 320, 160]
    assert b"".join(split_frames(pcm, 8000)) == pcm


def test_odd_length_pcm_and_bad_rates_are_rejected():
    with pytest.raises(ValueError):
        rms_dbfs(b"\x00")
    for rate in (0, -8000, 8000.0, True):
        with pytest.raises(ValueError):
            check_rate(rate)
