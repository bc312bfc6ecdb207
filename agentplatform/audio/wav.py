"""Mono 16-bit PCM WAV files: greetings, hold music, fixtures and recordings.

Files are read whole and converted to the wanted rate in one go (soxr at high
quality: latency does not matter off the call path, quality does). Only plain
integer PCM is accepted; anything else raises ``ValueError`` naming the file, so a
bad asset fails at load time, not mid-call.
"""

from __future__ import annotations

import os
import wave

import numpy as np
import soxr

from agentplatform.audio.frames import check_pcm16, check_rate

SAMPLE_WIDTH = 2


def load_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """PCM16 samples of a mono 16-bit WAV file and its sample rate."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable PCM WAV file: {exc}") from exc
    if channels != 1 or width != SAMPLE_WIDTH:
        raise ValueError(
            f"{path}: expected mono 16-bit PCM, got {channels} channel(s) of {width * 8}-bit"
        )
    return pcm, rate


def resample_whole(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Convert a complete PCM16 signal between rates (not for streaming)."""
    check_pcm16(pcm)
    check_rate(in_rate)
    check_rate(out_rate)
    if in_rate == out_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    return soxr.resample(samples, in_rate, out_rate, quality="HQ").astype("<i2").tobytes()


def read_wav(path: str | os.PathLike[str], rate: int) -> bytes:
    """PCM16 samples of a mono 16-bit WAV file, converted to ``rate`` Hz."""
    pcm, file_rate = load_wav(path)
    return resample_whole(pcm, file_rate, rate)


def write_wav(path: str | os.PathLike[str], pcm: bytes, rate: int) -> None:
    """Write PCM16 samples as a mono 16-bit WAV file at ``rate`` Hz."""
    check_pcm16(pcm)
    check_rate(rate)
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(rate)
        wav.writeframes(pcm)
