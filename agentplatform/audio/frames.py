"""Small signal helpers over PCM16 mono little-endian frames.

Level measurement is used by the VAD and by tests; tone, silence and noise
synthesis is used by the simulators in ``agentplatform.testing`` (a simulated
caller or model has to say *something*) and by tests. Levels are in dBFS against
a full-scale square wave (RMS 32768), so a full-scale sine reads about −3 dBFS.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import audioop
import numpy as np

FULL_SCALE = 32768.0
FLOOR_DBFS = -120.0  # what digital silence reads; keeps levels finite and JSON-safe
FRAME_MS = 20  # the carrier's frame size


def check_pcm16(pcm: bytes) -> None:
    """Raise ``ValueError`` unless ``pcm`` is whole 16-bit samples."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")


def check_rate(rate: int) -> None:
    """Raise ``ValueError`` unless ``rate`` is a positive integer number of Hz."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {rate!r}")


def frame_bytes(rate: int, ms: int = FRAME_MS) -> int:
    """Bytes of PCM16 in ``ms`` milliseconds at ``rate`` Hz."""
    return rate * ms // 1000 * 2


def duration_ms(pcm: bytes, rate: int) -> float:
    """How long ``pcm`` plays at ``rate`` Hz, in milliseconds."""
    return len(pcm) / 2 / rate * 1000.0


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of a PCM16 frame in dBFS; ``FLOOR_DBFS`` for silence or empty input."""
    check_pcm16(pcm)
    rms = audioop.rms(pcm, 2) if pcm else 0
    if rms <= 0:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 20.0 * math.log10(rms / FULL_SCALE))


def _to_pcm16(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def tone(freq: float, ms: float, rate: int, amplitude: float = 0.5, phase: float = 0.0) -> bytes:
    """A sine of ``freq`` Hz lasting ``ms`` ms; ``amplitude`` is a fraction of full scale."""
    n = round(rate * ms / 1000.0)
    t = np.arange(n, dtype=np.float64) / rate
    return _to_pcm16(amplitude * FULL_SCALE * np.sin(2.0 * math.pi * freq * t + phase))


def silence(ms: float, rate: int) -> bytes:
    """Digital silence lasting ``ms`` ms."""
    return bytes(round(rate * ms / 1000.0) * 2)


def noise(ms: float, rate: int, level_dbfs: float = -50.0, seed: int = 0) -> bytes:
    """White Gaussian noise at an RMS of ``level_dbfs``; seeded so runs repeat."""
    n = round(rate * ms / 1000.0)
    rms = FULL_SCALE * 10.0 ** (level_dbfs / 20.0)
    return _to_pcm16(np.random.default_rng(seed).normal(0.0, rms, n))


def split_frames(pcm: bytes, rate: int, ms: int = FRAME_MS) -> Iterator[bytes]:
    """Cut ``pcm`` into ``ms``-long frames; the last one may be shorter."""
    size = frame_bytes(rate, ms)
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]
