"""A telephone line for test speech: 8 kHz, line noise at a chosen SNR, μ-law both ways.

What the recognizer hears on a real call is not the clean voice a TTS renders: the
carrier band-limits it to 8 kHz, the line adds hiss, and G.711 μ-law quantizes it.
The recognition table in ``make bench`` runs every test utterance through this, then
up to 16 kHz the way the call path does, so word error rates are phone figures.
"""

from __future__ import annotations

import numpy as np

from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from agentplatform.audio.wav import resample_whole

LINE_RATE = 8000
VOICED_DBFS = -45.0  # 20 ms frames above this level count as speech for the SNR


def speech_power(samples: np.ndarray, rate: int) -> float:
    """Mean power of the voiced 20 ms frames (silence would flatter the SNR)."""
    frame = rate // 50
    usable = len(samples) // frame * frame
    if usable == 0:
        return 0.0
    frames = samples[:usable].reshape(-1, frame).astype(np.float64)
    power = (frames ** 2).mean(axis=1)
    floor = (32768.0 * 10 ** (VOICED_DBFS / 20)) ** 2
    voiced = power[power > floor]
    return float(voiced.mean()) if voiced.size else float(power.mean())


def phone_line(pcm16: bytes, rate: int, *, snr_db: float = 20.0, seed: int = 0) -> bytes:
    """``pcm16`` at ``rate`` as a caller's phone delivers it: PCM16 8 kHz after μ-law."""
    narrow = np.frombuffer(resample_whole(pcm16, rate, LINE_RATE), dtype="<i2").astype(np.float64)
    power = speech_power(narrow, LINE_RATE)
    rng = np.random.default_rng(seed)
    hiss = rng.standard_normal(len(narrow)) * np.sqrt(power / 10 ** (snr_db / 10))
    noisy = np.clip(narrow + hiss, -32768, 32767).astype("<i2").tobytes()
    return ulaw_to_pcm16(pcm16_to_ulaw(noisy))
