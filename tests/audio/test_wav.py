import math
import wave

import numpy as np
import pytest

from agentplatform.audio.frames import rms_dbfs, tone
from agentplatform.audio.wav import load_wav, read_wav, write_wav


def test_written_wav_reads_back_identical_at_its_own_rate(tmp_path):
    path = tmp_path / "hello.wav"
    pcm = tone(440, 250, 16000, 0.4)
    write_wav(path, pcm, 16000)
    assert load_wav(path) == (pcm, 16000)
    assert read_wav(path, 16000) == pcm


def test_reading_at_another_rate_resamples_length_and_keeps_the_tone(tmp_path):
    path = tmp_path / "greeting.wav"
    write_wav(path, tone(1000, 500, 24000, 0.4), 24000)
    pcm = read_wav(path, 8000)
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    assert len(x) == 4000
    spectrum = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(len(x), 1 / 8000)[spectrum.argmax()] == pytest.approx(1000)
    assert rms_dbfs(pcm) == pytest.approx(20 * math.log10(0.4) - 3.01, abs=0.3)


def _write_raw(path, channels: int, width: int, frames: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        wav.writeframes(frames)


def test_stereo_and_8bit_files_are_refused_with_the_file_named(tmp_path):
    stereo = tmp_path / "stereo.wav"
    _write_raw(stereo, 2, 2, bytes(400))
    eight_bit = tmp_path / "eight.wav"
    _write_raw(eight_bit, 1, 1, bytes(200))
    for path in (stereo, eight_bit):
        with pytest.raises(ValueError, match=path.name):
            read_wav(path, 8000)


def test_a_file_that_is_not_wav_is_refused(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"this is not RIFF data at all")
    with pytest.raises(ValueError, match="not a readable PCM WAV"):
        load_wav(path)


def test_writing_odd_length_pcm_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", b"\x00", 8000)
