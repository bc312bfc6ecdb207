"""A bad phone line for the simulated caller: noise, lost frames, uneven timing.

``TwilioCaller(line=LineImpairments(noise_db=-45, loss=0.05, jitter_ms=40))`` sends
every 20 ms frame through ``frame()``: white noise at ``noise_db`` dBFS is mixed into
the caller's audio (speech and pauses alike, as line hiss is), a ``loss`` fraction of
frames arrive as silence (the carrier's media gateway keeps the 20 ms cadence and
fills a lost packet with nothing), and each frame leaves up to ``jitter_ms`` late
(the next ones catch up, so the line keeps its average rate). Seeded, so a scenario
run with the same settings hears the same line.
"""

from __future__ import annotations

import audioop
import random
from dataclasses import dataclass, field

import numpy as np

ULAW_SILENCE = 0xFF


@dataclass(slots=True)
class LineImpairments:
    noise_db: float | None = None  # dBFS of the added white noise; None: no noise
    loss: float = 0.0  # fraction of frames lost, 0..1
    jitter_ms: float = 0.0  # each frame up to this late
    seed: int = 7
    _random: random.Random = field(init=False, repr=False)
    _noise: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss is a fraction of frames: 0 ≤ loss < 1")
        if self.jitter_ms < 0:
            raise ValueError("jitter_ms cannot be negative")
        if self.noise_db is not None and self.noise_db > 0:
            raise ValueError("noise_db is in dBFS: 0 or below")
        self._random = random.Random(self.seed)
        self._noise = np.random.default_rng(self.seed)

    @property
    def active(self) -> bool:
        return self.noise_db is not None or self.loss > 0 or self.jitter_ms > 0

    def frame(self, ulaw: bytes) -> bytes:
        """One frame of the caller's μ-law line, as it arrives at the carrier's edge."""
        if self.loss and self._random.random() < self.loss:
            return bytes([ULAW_SILENCE]) * len(ulaw)
        if self.noise_db is None:
            return ulaw
        pcm = np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype="<i2").astype(np.float64)
        # White noise whose RMS is noise_db relative to a full-scale sine's.
        rms = 32767.0 / np.sqrt(2.0) * 10.0 ** (self.noise_db / 20.0)
        noisy = pcm + self._noise.normal(0.0, rms, pcm.shape)
        out = np.clip(noisy, -32768, 32767).astype("<i2").tobytes()
        return audioop.lin2ulaw(out, 2)

    def delay_s(self) -> float:
        """How late this frame leaves, in seconds."""
        return self._random.uniform(0.0, self.jitter_ms) / 1000.0 if self.jitter_ms else 0.0
