"""Where a cascade turn's time goes: caller stopped → first agent audio, in four parts.

``vad_hangover`` is the silence the detector waits for before it calls the turn over;
``stt`` the transcription; ``llm_first_token`` the text model's first words;
``tts_first_audio`` the synthesis of the first piece. ``turn`` is their sum as the
caller feels it (end of speech → first audio handed to the carrier side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from agentplatform.bridge.metrics import Ring


@dataclass(slots=True)
class TurnTimings:
    vad_hangover_ms: float = 0.0
    stt_ms: float = 0.0
    llm_first_token_ms: float = 0.0
    tts_first_audio_ms: float = 0.0

    @property
    def turn_ms(self) -> float:
        return self.vad_hangover_ms + self.stt_ms + self.llm_first_token_ms + self.tts_first_audio_ms

    def as_dict(self) -> dict[str, float]:
        return {**{k: round(v, 1) for k, v in asdict(self).items()}, "turn_ms": round(self.turn_ms, 1)}


@dataclass(slots=True)
class CascadeMetrics:
    vad_hangover_ms: Ring = field(default_factory=lambda: Ring(size=20_000))
    stt_ms: Ring = field(default_factory=lambda: Ring(size=20_000))
    llm_first_token_ms: Ring = field(default_factory=lambda: Ring(size=20_000))
    tts_first_audio_ms: Ring = field(default_factory=lambda: Ring(size=20_000))
    turn_ms: Ring = field(default_factory=lambda: Ring(size=20_000))

    def add(self, timings: TurnTimings) -> None:
        self.vad_hangover_ms.add(timings.vad_hangover_ms)
        self.stt_ms.add(timings.stt_ms)
        self.llm_first_token_ms.add(timings.llm_first_token_ms)
        self.tts_first_audio_ms.add(timings.tts_first_audio_ms)
        self.turn_ms.add(timings.turn_ms)

    def snapshot(self) -> dict[str, object]:
        return {
            name: {"count": ring.count, **ring.percentiles(50, 90, 99)}
            for name, ring in (
                ("vad_hangover_ms", self.vad_hangover_ms), ("stt_ms", self.stt_ms),
                ("llm_first_token_ms", self.llm_first_token_ms),
                ("tts_first_audio_ms", self.tts_first_audio_ms), ("turn_ms", self.turn_ms),
            )
        }

    def reset(self) -> None:
        for ring in (self.vad_hangover_ms, self.stt_ms, self.llm_first_token_ms,
                     self.tts_first_audio_ms, self.turn_ms):
            ring.clear()


CASCADE_METRICS = CascadeMetrics()
